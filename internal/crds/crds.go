/*
Copyright 2026 The edgefleet Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

// Package crds installs and upgrades edgefleet's CustomResourceDefinitions.
package crds

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/go-logr/logr"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/edgefleet/edgefleet/config/crd"
)

// FieldOwner is the server-side apply field manager used for the CRDs.
const FieldOwner = "edgefleet"

// DefaultTimeout bounds the wait for the CRDs to become established when the
// context passed to Install has no deadline.
const DefaultTimeout = 2 * time.Minute

// pollInterval is how often Install checks whether the CRDs are established.
var pollInterval = 250 * time.Millisecond

var crdGVK = apiextensionsv1.SchemeGroupVersion.WithKind("CustomResourceDefinition")

// Names returns the names of the embedded CRDs, sorted, e.g.
// "bundles.fleet.edgefleet.io". It returns nil if the embedded manifests
// cannot be parsed, which the package's tests rule out.
func Names() []string {
	crds, err := crd.CustomResourceDefinitions()
	if err != nil {
		return nil
	}
	names := make([]string, 0, len(crds))
	for _, c := range crds {
		names = append(names, c.Name)
	}
	sort.Strings(names)
	return names
}

// Install server-side applies every embedded CRD with field owner
// "edgefleet", forcing ownership, so it both installs missing CRDs and
// upgrades existing ones. It then waits until every CRD is Established and
// its names are accepted, polling until ctx is done (or DefaultTimeout if
// ctx has no deadline). The error names the CRDs that failed.
//
// c only needs to reach the API server: objects are sent and read as
// unstructured, so c's scheme need not include apiextensions.k8s.io.
func Install(ctx context.Context, c client.Client, log logr.Logger) error {
	crds, err := crd.CustomResourceDefinitions()
	if err != nil {
		return fmt.Errorf("loading embedded CRDs: %w", err)
	}

	log.Info("Applying CustomResourceDefinitions", "count", len(crds))
	for _, def := range crds {
		obj, err := applyObject(def)
		if err != nil {
			return err
		}
		log.V(4).Info("Applying CustomResourceDefinition", "CustomResourceDefinition", def.Name)
		if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj), client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
			return fmt.Errorf("applying CustomResourceDefinition %s: %w", def.Name, err)
		}
	}

	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}

	log.Info("Waiting for CustomResourceDefinitions to be established", "count", len(crds))
	pending := make(map[string]string, len(crds)) // name -> why it is not ready
	for _, def := range crds {
		pending[def.Name] = "not checked yet"
	}
	pollErr := wait.PollUntilContextCancel(ctx, pollInterval, true, func(ctx context.Context) (bool, error) {
		for name := range pending {
			current, err := get(ctx, c, name)
			if err != nil {
				// Keep polling: the CRD may not be visible yet, or the error
				// may be transient. The last reason is reported on timeout.
				pending[name] = err.Error()
				continue
			}
			if ok, why := established(current); ok {
				delete(pending, name)
			} else {
				pending[name] = why
			}
		}
		return len(pending) == 0, nil
	})
	if pollErr == nil {
		log.Info("CustomResourceDefinitions established", "count", len(crds))
		return nil
	}

	names := make([]string, 0, len(pending))
	for name := range pending {
		names = append(names, name)
	}
	sort.Strings(names)
	msgs := make([]string, 0, len(names))
	for _, name := range names {
		msgs = append(msgs, fmt.Sprintf("%s: %s", name, pending[name]))
	}
	return fmt.Errorf("waiting for CustomResourceDefinitions to be established: %s: %w",
		strings.Join(msgs, "; "), pollErr)
}

// applyObject converts a CRD to the unstructured object sent with server-side
// apply. Status is dropped: it is owned by the API server.
func applyObject(def *apiextensionsv1.CustomResourceDefinition) (*unstructured.Unstructured, error) {
	content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(def)
	if err != nil {
		return nil, fmt.Errorf("converting CustomResourceDefinition %s: %w", def.Name, err)
	}
	obj := &unstructured.Unstructured{Object: content}
	unstructured.RemoveNestedField(obj.Object, "status")
	unstructured.RemoveNestedField(obj.Object, "metadata", "creationTimestamp")
	obj.SetGroupVersionKind(crdGVK)
	return obj, nil
}

// get reads a CRD as unstructured, so the client's scheme need not know the
// type, and converts it.
func get(ctx context.Context, c client.Client, name string) (*apiextensionsv1.CustomResourceDefinition, error) {
	obj := &unstructured.Unstructured{}
	obj.SetGroupVersionKind(crdGVK)
	if err := c.Get(ctx, types.NamespacedName{Name: name}, obj); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, errors.New("not found")
		}
		return nil, fmt.Errorf("getting CustomResourceDefinition: %w", err)
	}
	def := &apiextensionsv1.CustomResourceDefinition{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, def); err != nil {
		return nil, fmt.Errorf("converting CustomResourceDefinition: %w", err)
	}
	return def, nil
}

// established reports whether the API server serves the CRD: Established and
// NamesAccepted are True and the accepted names are the desired ones. When it
// is not, the second result says why.
func established(def *apiextensionsv1.CustomResourceDefinition) (bool, string) {
	if def.DeletionTimestamp != nil {
		return false, "being deleted"
	}
	conds := map[apiextensionsv1.CustomResourceDefinitionConditionType]*apiextensionsv1.CustomResourceDefinitionCondition{}
	for i := range def.Status.Conditions {
		conds[def.Status.Conditions[i].Type] = &def.Status.Conditions[i]
	}
	for _, t := range []apiextensionsv1.CustomResourceDefinitionConditionType{apiextensionsv1.NamesAccepted, apiextensionsv1.Established} {
		cond, ok := conds[t]
		switch {
		case !ok:
			return false, fmt.Sprintf("condition %s not reported yet", t)
		case cond.Status != apiextensionsv1.ConditionTrue:
			return false, fmt.Sprintf("condition %s is %s (reason %q: %s)", t, cond.Status, cond.Reason, cond.Message)
		}
	}
	if def.Status.AcceptedNames.Plural != def.Spec.Names.Plural || def.Status.AcceptedNames.Kind != def.Spec.Names.Kind {
		return false, fmt.Sprintf("accepted names %s/%s do not match %s/%s yet",
			def.Status.AcceptedNames.Plural, def.Status.AcceptedNames.Kind, def.Spec.Names.Plural, def.Spec.Names.Kind)
	}
	return true, ""
}
