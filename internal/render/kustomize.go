package render

import (
	"bytes"
	"fmt"
	"path"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// helmOutputFile is where a Helm chart's output is placed for a
// kustomization that post-renders it; the name is Fleet's, so existing
// kustomizations that list it keep working.
const helmOutputFile = "fleet-manifests.yaml"

// kustomizeBuild runs `kustomize build dir` over the bundle's files held in
// memory. Plugins, exec functions and Helm inflation are off, and loading is
// restricted to the bundle, so a bundle cannot run programs on the agent.
func kustomizeBuild(fs files, dir string) ([]byte, error) {
	mem := filesys.MakeFsInMemory()
	for _, n := range fs.sortedNames() {
		if err := mem.WriteFile("/"+n, fs[n]); err != nil {
			return nil, &Error{File: n, Err: err}
		}
	}
	opts := krusty.MakeDefaultOptions()
	opts.LoadRestrictions = types.LoadRestrictionsRootOnly
	opts.PluginConfig = types.DisabledPluginConfig()
	k := krusty.MakeKustomizer(opts)
	resMap, err := k.Run(mem, "/"+dir)
	if err != nil {
		file, _ := fs.kustomizationIn(dir)
		if file == "" {
			file = joinPath(dir, "kustomization.yaml")
		}
		return nil, &Error{File: file, Err: fmt.Errorf("kustomize build %s: %w", displayDir(dir), err)}
	}
	out, err := resMap.AsYaml()
	if err != nil {
		return nil, &Error{File: joinPath(dir, "kustomization.yaml"), Err: fmt.Errorf("kustomize build %s: %w", displayDir(dir), err)}
	}
	return out, nil
}

func displayDir(dir string) string {
	if dir == "" {
		return "."
	}
	return dir
}

// withHelmOutput returns fs with the Helm output written next to the
// kustomization in dir and listed first in its resources, as Fleet does.
func withHelmOutput(fs files, dir string, manifests []byte) (files, error) {
	kfile, ok := fs.kustomizationIn(dir)
	if !ok {
		return nil, &Error{File: joinPath(dir, "kustomization.yaml"), Err: errNoFile}
	}
	var k map[string]any
	if err := yaml.Unmarshal(fs[kfile], &k); err != nil {
		return nil, yamlError(kfile, 1, err)
	}
	if k == nil {
		k = map[string]any{}
	}
	var resources []any
	if r, ok := k["resources"].([]any); ok {
		resources = r
	}
	listed := false
	for _, r := range resources {
		if r == helmOutputFile {
			listed = true
		}
	}
	if !listed {
		k["resources"] = append([]any{helmOutputFile}, resources...)
	}
	kdata, err := yaml.Marshal(k)
	if err != nil {
		return nil, &Error{File: kfile, Err: err}
	}
	out := make(files, len(fs)+1)
	for n, d := range fs {
		out[n] = d
	}
	out[kfile] = kdata
	out[path.Join(dir, helmOutputFile)] = manifests
	return out, nil
}

// postRenderer runs a bundle's kustomization over a Helm chart's output
// (when the bundle has one), then applies the bundle's namespace rules. The
// agent's real Helm install uses the same one, so what is previewed is
// what is installed.
type postRenderer struct {
	fs              files
	kustomizeDir    string
	kustomize       bool
	chartDir        string
	namespace       string
	forced          bool
	isClusterScoped func(schema.GroupVersionKind) bool
}

// helmFilenameAnnotation is set by Helm v4 on each document it passes to a
// post-renderer; it names the template the object came from.
const helmFilenameAnnotation = "postrenderer.helm.sh/postrender-filename"

// Run implements Helm's postrenderer.PostRenderer.
func (p *postRenderer) Run(rendered *bytes.Buffer) (*bytes.Buffer, error) {
	data := rendered.Bytes()
	if p.kustomize {
		fs, err := withHelmOutput(p.fs, p.kustomizeDir, bytes.Clone(data))
		if err != nil {
			return nil, err
		}
		data, err = kustomizeBuild(fs, p.kustomizeDir)
		if err != nil {
			return nil, err
		}
	}
	objs, srcs, err := parseObjects(joinPath(p.kustomizeDir, helmOutputFile), data)
	if err != nil {
		return nil, err
	}
	for i, o := range objs {
		if f := o.GetAnnotations()[helmFilenameAnnotation]; f != "" {
			srcs[i] = source{file: chartFile(p.chartDir, f)}
		}
	}
	s := newScoper(p.isClusterScoped, objs)
	if err := setNamespaces(objs, srcs, p.namespace, p.forced, s); err != nil {
		return nil, err
	}
	var out bytes.Buffer
	for _, o := range objs {
		y, err := yaml.Marshal(o.Object)
		if err != nil {
			return nil, fmt.Errorf("encoding %s %q: %w", o.GetKind(), o.GetName(), err)
		}
		out.WriteString("---\n")
		out.Write(y)
	}
	return &out, nil
}
