package apply

import (
	"encoding/json"
	"reflect"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
)

// serverManagedMeta are metadata fields the API server sets, which differ
// between a live object and a dry-run result without anyone changing them.
var serverManagedMeta = []string{"resourceVersion", "generation", "managedFields", "uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"}

// normalize returns a copy of obj's content without status and without
// server-managed metadata, the parts drift detection ignores.
func normalize(obj *unstructured.Unstructured) map[string]any {
	c := obj.DeepCopy().Object
	delete(c, "status")
	if m, ok := c["metadata"].(map[string]any); ok {
		for _, f := range serverManagedMeta {
			delete(m, f)
		}
	}
	return c
}

// ignoreRules selects the comparePatches that apply to ref.
func ignoreRules(diff *fleetv1.DiffOptions, ref Ref) (pointers []string, ignoreObject bool) {
	if diff == nil {
		return nil, false
	}
	for _, p := range diff.ComparePatches {
		if !matches(p.APIVersion, ref.APIVersion) || !matches(p.Kind, ref.Kind) || !matches(p.Name, ref.Name) || !matches(p.Namespace, ref.Namespace) {
			continue
		}
		pointers = append(pointers, p.JSONPointers...)
		for _, op := range p.Operations {
			switch op.Op {
			case "ignore":
				ignoreObject = true
			case "remove":
				pointers = append(pointers, op.Path)
			}
		}
	}
	return pointers, ignoreObject
}

// matches treats an empty selector field as matching anything.
func matches(want, got string) bool { return want == "" || want == got }

// removePointer deletes the field at JSON pointer ptr (RFC 6901) from doc, if
// it exists.
func removePointer(doc any, ptr string) {
	if ptr == "" || ptr == "/" {
		return
	}
	tokens := strings.Split(strings.TrimPrefix(ptr, "/"), "/")
	for i, t := range tokens {
		tokens[i] = strings.ReplaceAll(strings.ReplaceAll(t, "~1", "/"), "~0", "~")
	}
	cur := doc
	for i, t := range tokens {
		last := i == len(tokens)-1
		switch v := cur.(type) {
		case map[string]any:
			if last {
				delete(v, t)
				return
			}
			cur = v[t]
		case []any:
			n, err := strconv.Atoi(t)
			if err != nil || n < 0 || n >= len(v) {
				return
			}
			if last {
				// Blank the element instead of shifting, so both sides
				// stay aligned index by index.
				v[n] = nil
				return
			}
			cur = v[n]
		default:
			return
		}
	}
}

// mergePatch returns the JSON merge patch (RFC 7386) that turns from into to.
func mergePatch(from, to map[string]any) map[string]any {
	patch := map[string]any{}
	for k, tv := range to {
		fv, ok := from[k]
		if !ok {
			patch[k] = tv
			continue
		}
		if reflect.DeepEqual(fv, tv) {
			continue
		}
		fm, fok := fv.(map[string]any)
		tm, tok := tv.(map[string]any)
		if fok && tok {
			patch[k] = mergePatch(fm, tm)
			continue
		}
		patch[k] = tv
	}
	for k := range from {
		if _, ok := to[k]; !ok {
			patch[k] = nil
		}
	}
	return patch
}

// compare reports whether live differs from want (a dry-run result) after
// normalization and diff options, and the merge patch from live to want.
func compare(live, want *unstructured.Unstructured, diff *fleetv1.DiffOptions) (modified bool, patch string) {
	pointers, ignore := ignoreRules(diff, RefOf(want))
	if ignore {
		return false, ""
	}
	l, w := normalize(live), normalize(want)
	for _, p := range pointers {
		removePointer(l, p)
		removePointer(w, p)
	}
	if reflect.DeepEqual(l, w) {
		return false, ""
	}
	data, err := json.Marshal(mergePatch(l, w))
	if err != nil {
		return true, ""
	}
	return true, string(data)
}
