// Package render turns a bundle manifest plus the options for one cluster
// into what that cluster receives: a Helm chart with values (installed as a
// real Helm release), or the final objects of raw YAML and Kustomize bundles.
// The agent and `edgefleet test` both call it, so what a user previews is what
// a cluster gets.
package render

import (
	"context"
	"errors"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/content"
)

// TemplateContext is what per-cluster templating of Helm values sees, with
// the names Fleet users know: .ClusterName, .ClusterNamespace,
// .ClusterLabels, .ClusterAnnotations, .ClusterValues.
type TemplateContext struct {
	ClusterName        string
	ClusterNamespace   string
	ClusterLabels      map[string]string
	ClusterAnnotations map[string]string
	ClusterValues      map[string]any
}

// Kind says how a bundle is deployed.
type Kind string

const (
	KindHelm      Kind = "Helm"
	KindKustomize Kind = "Kustomize"
	KindRawYAML   Kind = "RawYAML"
)

// Result is a bundle rendered for one cluster.
type Result struct {
	Kind Kind
	// Namespace is where namespaced objects without one go.
	Namespace string
	// ReleaseName names the Helm release (Helm bundles only).
	ReleaseName string
	// Chart and Values are installed as a Helm release (Helm bundles only).
	Chart  any
	Values map[string]any
	// Objects are the final objects: what is applied for raw YAML and
	// Kustomize bundles, and the rendered release manifest for Helm bundles.
	Objects []*unstructured.Unstructured
}

// ErrNotImplemented is returned until the renderer lands.
var ErrNotImplemented = errors.New("render: not implemented yet")

// Render renders manifest m with opts for the cluster described by tc.
func Render(ctx context.Context, m *content.Manifest, opts fleetv1.BundleDeploymentOptions, tc TemplateContext) (*Result, error) {
	return nil, ErrNotImplemented
}
