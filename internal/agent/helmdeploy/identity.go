package helmdeploy

import (
	"context"
	"fmt"

	"helm.sh/helm/v4/pkg/action"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

// releaseOwnership is the JSON merge patch that removes Helm's ownership
// marks: Helm's uninstall deletes only objects that carry them for the
// release.
const releaseOwnership = `{"metadata":{"annotations":{"meta.helm.sh/release-name":null,"meta.helm.sh/release-namespace":null},"labels":{"app.kubernetes.io/managed-by":null}}}`

// releaseCRDs removes the ownership marks of release namespace/name from
// the CustomResourceDefinitions in its manifest, so uninstalling the
// release keeps them (and every custom resource of their kinds).
func (d *Deployer) releaseCRDs(ctx context.Context, cfg *action.Configuration, namespace, name string) error {
	rel, err := last(cfg, namespace, name)
	if err != nil || rel == nil {
		return err
	}
	objs, err := rel.Objects()
	if err != nil {
		return err
	}
	var dc dynamic.Interface
	for _, o := range objs {
		if o.GetKind() != "CustomResourceDefinition" || o.GroupVersionKind().Group != crdResource.Group {
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
