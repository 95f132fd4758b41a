package helmdeploy

import (
	"context"
	"fmt"

	"helm.sh/helm/v4/pkg/action"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
)

// As returns a Deployer whose Helm operations run as user (Kubernetes
// impersonation), e.g. "system:serviceaccount:edgefleet-system:deployer";
// empty user returns d. What the agent does for itself (releasing CRDs from
// a release before an uninstall) keeps d's identity.
func (d *Deployer) As(user string) *Deployer {
	if user == "" {
		return d
	}
	cfg := rest.CopyConfig(d.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	return &Deployer{Config: cfg, agent: d.agentConfig()}
}

func (d *Deployer) agentConfig() *rest.Config {
	if d.agent != nil {
		return d.agent
	}
	return d.Config
}

var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// releaseOwnership is the JSON merge patch that lets a CRD outlive its
// release: Helm's uninstall deletes only objects that carry the release's
// ownership marks, and an upgrade keeps a dropped object whose live
// resource policy is "keep".
const releaseOwnership = `{"metadata":{"annotations":{"helm.sh/resource-policy":"keep","meta.helm.sh/release-name":null,"meta.helm.sh/release-namespace":null},"labels":{"app.kubernetes.io/managed-by":null}}}`

// releaseCRDs releases the CustomResourceDefinitions in the manifest of
// release namespace/name from it, except those still in keep (nil: all),
// so neither an uninstall nor an upgrade that drops them deletes them (and
// every custom resource of their kinds).
func (d *Deployer) releaseCRDs(ctx context.Context, cfg *action.Configuration, namespace, name string, keep []*unstructured.Unstructured) error {
	rel, err := last(cfg, namespace, name)
	if err != nil || rel == nil {
		return err
	}
	objs, err := rel.Objects()
	if err != nil {
		return err
	}
	staying := map[string]bool{}
	for _, o := range keep {
		if isCRD(o) {
			staying[o.GetName()] = true
		}
	}
	var dc dynamic.Interface
	for _, o := range objs {
		if !isCRD(o) || staying[o.GetName()] {
			continue
		}
		if dc == nil {
			if dc, err = dynamic.NewForConfig(d.agentConfig()); err != nil {
				return fmt.Errorf("creating a client for CustomResourceDefinitions: %w", err)
			}
		}
		ctrl.LoggerFrom(ctx).Info("Keeping CustomResourceDefinition of the release (deleteCRDResources is false)", "crd", o.GetName(), "release", namespace+"/"+name)
		_, err := dc.Resource(crdResource).Patch(ctx, o.GetName(), types.MergePatchType, []byte(releaseOwnership), metav1.PatchOptions{FieldManager: "edgefleet-agent"})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("keeping CustomResourceDefinition %s of Helm release %s/%s: %w", o.GetName(), namespace, name, err)
		}
	}
	return nil
}

func isCRD(o *unstructured.Unstructured) bool {
	return o.GetKind() == "CustomResourceDefinition" && o.GroupVersionKind().Group == crdResource.Group
}
