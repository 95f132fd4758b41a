package render

import (
	"encoding/json"
	"fmt"
	"path"
	"strings"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

const overlaysDir = "overlays"

// applyOverlays applies yaml.overlays in order (Fleet semantics): a file
// overlays/<name>/<path> replaces <path>, and overlays/<name>/<dir>/<f>_patch.<ext>
// patches <dir>/<f>.<ext> (or the same base name with another YAML/JSON
// extension). Within one overlay, replacements come before patches, each in
// lexical order, so the result does not depend on map order.
func applyOverlays(fs files, overlays []string) (files, error) {
	if len(overlays) == 0 {
		return fs, nil
	}
	out := make(files, len(fs))
	for n, d := range fs {
		out[n] = d
	}
	for _, name := range overlays {
		dir, err := cleanPath(name)
		if err != nil || dir == "" || strings.Contains(dir, "/") {
			return nil, &Error{File: "fleet.yaml", Err: fmt.Errorf("yaml.overlays: %q is not the name of a directory under overlays/", name)}
		}
		prefix := overlaysDir + "/" + dir + "/"
		var replaces, patches []string
		for _, n := range fs.sortedNames() {
			rel, ok := strings.CutPrefix(n, prefix)
			if !ok {
				continue
			}
			if _, ok := patchTarget(rel); ok {
				patches = append(patches, rel)
			} else {
				replaces = append(replaces, rel)
			}
		}
		if len(replaces)+len(patches) == 0 {
			return nil, &Error{File: "fleet.yaml", Err: fmt.Errorf("yaml.overlays: overlay %q has no files: expected them under %s", name, prefix)}
		}
		for _, rel := range replaces {
			out[rel] = fs[prefix+rel]
		}
		for _, rel := range patches {
			base, _ := patchTarget(rel)
			target, ok := findPatchTarget(out, base)
			if !ok {
				return nil, &Error{File: prefix + rel, Err: fmt.Errorf("nothing to patch: the bundle has no file %s", base)}
			}
			patched, err := patchFile(target, out[target], prefix+rel, fs[prefix+rel])
			if err != nil {
				return nil, err
			}
			out[target] = patched
		}
	}
	return out, nil
}

// patchTarget maps "dir/app_patch.yaml" to "dir/app.yaml".
func patchTarget(rel string) (string, bool) {
	dir, file := path.Split(rel)
	i := strings.LastIndex(file, "_patch.")
	if i < 0 {
		return "", false
	}
	return dir + file[:i] + file[i+len("_patch"):], true
}

var yamlExts = []string{".yaml", ".yml", ".json"}

func findPatchTarget(fs files, base string) (string, bool) {
	if _, ok := fs[base]; ok {
		return base, true
	}
	stem := strings.TrimSuffix(base, path.Ext(base))
	for _, ext := range yamlExts {
		if _, ok := fs[stem+ext]; ok {
			return stem + ext, true
		}
	}
	return "", false
}

// patchFile patches the objects of target with the patch document(s) in
// patchName. A single-object file is patched whatever the patch names; in a
// multi-object file the patch applies to the objects whose kind and name it
// matches.
func patchFile(target string, data []byte, patchName string, patchData []byte) ([]byte, error) {
	objs, _, err := parseObjects(target, data)
	if err != nil {
		return nil, err
	}
	for _, doc := range splitDocuments(patchData) {
		if isBlank(doc.data) {
			continue
		}
		pj, err := yaml.YAMLToJSON(doc.data)
		if err != nil {
			return nil, yamlError(patchName, doc.line, err)
		}
		var p any
		if err := json.Unmarshal(pj, &p); err != nil {
			return nil, &Error{File: patchName, Line: doc.contentLine(), Err: err}
		}
		matched := 0
		for i, o := range objs {
			if len(objs) > 1 && !patchMatches(p, o) {
				continue
			}
			patched, err := applyPatch(o, pj, p)
			if err != nil {
				return nil, &Error{File: patchName, Line: doc.contentLine(), Err: fmt.Errorf("patching %s: %w", target, err)}
			}
			objs[i] = patched
			matched++
		}
		if matched == 0 {
			return nil, &Error{File: patchName, Line: doc.contentLine(), Err: fmt.Errorf(
				"%s holds several objects and none has the kind and metadata.name this patch names", target)}
		}
	}
	var out []byte
	for i, o := range objs {
		y, err := yaml.Marshal(o.Object)
		if err != nil {
			return nil, &Error{File: target, Err: err}
		}
		if i > 0 {
			out = append(out, "---\n"...)
		}
		out = append(out, y...)
	}
	return out, nil
}

func patchMatches(p any, o *unstructured.Unstructured) bool {
	m, ok := p.(map[string]any)
	if !ok {
		return false
	}
	pu := unstructured.Unstructured{Object: m}
	return pu.GetName() == o.GetName() && (pu.GetKind() == "" || pu.GetKind() == o.GetKind())
}

// applyPatch picks the patch type as Fleet does: a JSON list is an RFC 6902
// JSON patch, a kind built into Kubernetes gets a strategic merge patch, and
// anything else (custom resources) an RFC 7386 JSON merge patch.
func applyPatch(o *unstructured.Unstructured, pj []byte, p any) (*unstructured.Unstructured, error) {
	orig, err := o.MarshalJSON()
	if err != nil {
		return nil, err
	}
	var result []byte
	switch p.(type) {
	case []any:
		jp, err := jsonpatch.DecodePatch(pj)
		if err != nil {
			return nil, fmt.Errorf("invalid JSON patch: %w", err)
		}
		result, err = jp.Apply(orig)
		if err != nil {
			return nil, err
		}
	case map[string]any:
		if typed, err := scheme.Scheme.New(o.GroupVersionKind()); err == nil {
			result, err = strategicpatch.StrategicMergePatch(orig, pj, typed)
			if err != nil {
				return nil, err
			}
		} else {
			result, err = jsonpatch.MergePatch(orig, pj)
			if err != nil {
				return nil, err
			}
		}
	default:
		return nil, fmt.Errorf("a patch must be a map (merge patch) or a list (JSON patch), not a %s", typeName(p))
	}
	out := &unstructured.Unstructured{}
	if err := out.UnmarshalJSON(result); err != nil {
		return nil, fmt.Errorf("patched object is invalid: %w", err)
	}
	return out, nil
}
