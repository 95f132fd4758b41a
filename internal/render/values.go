package render

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/template"

	"github.com/Masterminds/sprig/v3"
	"sigs.k8s.io/yaml"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
)

// clusterLabelPrefix marks a values string that Fleet replaces with the
// value of a cluster label: "global.fleet.clusterLabels.env" → "prod".
const clusterLabelPrefix = "global.fleet.clusterLabels."

// helmValues computes the values the release is installed with: helm.values,
// then helm.valuesFiles found in the bundle merged over them in order, then
// cluster-label references and ${ } templates resolved for this cluster,
// with global.fleet.clusterLabels injected underneath.
func helmValues(fs files, chartDir string, h *fleetv1.HelmOptions, tc TemplateContext) (map[string]any, error) {
	values := map[string]any{}
	if h == nil {
		return injectLabels(values, tc.ClusterLabels), nil
	}
	if h.Values != nil && len(h.Values.Raw) > 0 {
		var v any
		if err := json.Unmarshal(h.Values.Raw, &v); err != nil {
			return nil, &Error{File: "fleet.yaml", Err: fmt.Errorf("helm.values: %w", err)}
		}
		switch m := v.(type) {
		case nil:
		case map[string]any:
			values = m
		default:
			return nil, &Error{File: "fleet.yaml", Err: fmt.Errorf("helm.values must be a map of values (key: value), not a %s", typeName(v))}
		}
	}
	for _, vf := range h.ValuesFiles {
		name, data, ok := findValuesFile(fs, chartDir, vf)
		if !ok {
			// `edgefleet apply` already merged files it read into values.
			continue
		}
		var v any
		if err := yaml.Unmarshal(data, &v); err != nil {
			return nil, yamlError(name, 1, err)
		}
		switch m := v.(type) {
		case nil:
		case map[string]any:
			values = mergeValues(values, m)
		default:
			return nil, &Error{File: name, Err: fmt.Errorf("a values file must hold a map of values (key: value), not a %s", typeName(v))}
		}
	}
	if h.ValuesResolved {
		// The manager already resolved them for this cluster
		// (ResolveForCluster); a second pass could change its output.
		return values, nil
	}
	replaceLabelRefs(values, tc.ClusterLabels)
	if !h.DisablePreProcess {
		t, err := templateValue(values, "helm.values", templateData(tc))
		if err != nil {
			return nil, err
		}
		values = t.(map[string]any)
	}
	if err := applyTemplateValues(values, h.TemplateValues, templateData(tc)); err != nil {
		return nil, err
	}
	return injectLabels(values, tc.ClusterLabels), nil
}

// applyTemplateValues sets each helm.templateValues key to its template's
// output read as YAML (a whole map or list can be computed per cluster);
// it replaces that key of values. Templates run even with
// disablePreProcess: templateValues exist only to be templated.
func applyTemplateValues(values map[string]any, tv map[string]string, data map[string]any) error {
	keys := make([]string, 0, len(tv))
	for k := range tv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out, err := execute(tv[k], "helm.templateValues."+k, data)
		if err != nil {
			return err
		}
		var v any
		if err := yaml.Unmarshal([]byte(out), &v); err != nil {
			return &Error{File: "fleet.yaml", Err: fmt.Errorf("helm.templateValues.%s: the template's output is not YAML: %v (output: %q)", k, err, out)}
		}
		values[k] = v
	}
	return nil
}

// findValuesFile looks a valuesFiles entry up relative to the bundle root,
// then to the chart.
func findValuesFile(fs files, chartDir, name string) (string, []byte, bool) {
	p, err := cleanPath(name)
	if err != nil || p == "" {
		return "", nil, false
	}
	for _, c := range []string{p, joinPath(chartDir, p)} {
		if d, ok := fs[c]; ok {
			return c, d, true
		}
	}
	return "", nil, false
}

// mergeValues merges src over dst as Helm does for -f files: maps merge
// recursively, anything else replaces.
func mergeValues(dst, src map[string]any) map[string]any {
	out := make(map[string]any, len(dst)+len(src))
	for k, v := range dst {
		out[k] = v
	}
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := out[k].(map[string]any); ok {
				out[k] = mergeValues(dm, sm)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// injectLabels puts the cluster's labels at global.fleet.clusterLabels,
// under any values the user set there. The map is there even when empty, so
// charts can read .Values.global.fleet.clusterLabels.<label> on any cluster.
func injectLabels(values map[string]any, labels map[string]string) map[string]any {
	l := make(map[string]any, len(labels))
	for k, v := range labels {
		l[k] = v
	}
	base := map[string]any{"global": map[string]any{"fleet": map[string]any{"clusterLabels": l}}}
	return mergeValues(base, values)
}

// replaceLabelRefs replaces strings "global.fleet.clusterLabels.<label>"
// with the label's value ("" when the cluster lacks it), as Fleet does even
// with disablePreProcess.
func replaceLabelRefs(v any, labels map[string]string) {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			if s, ok := e.(string); ok {
				if label, ok := strings.CutPrefix(s, clusterLabelPrefix); ok {
					t[k] = labels[label]
				}
				continue
			}
			replaceLabelRefs(e, labels)
		}
	case []any:
		for _, e := range t {
			replaceLabelRefs(e, labels)
		}
	}
}

func templateData(tc TemplateContext) map[string]any {
	values := tc.ClusterValues
	if values == nil {
		values = map[string]any{}
	}
	return map[string]any{
		"ClusterName":        tc.ClusterName,
		"ClusterNamespace":   tc.ClusterNamespace,
		"ClusterLabels":      toDict(tc.ClusterLabels),
		"ClusterAnnotations": toDict(tc.ClusterAnnotations),
		"ClusterValues":      values,
	}
}

// sprig's dict functions (hasKey, default, get) want map[string]any.
func toDict(m map[string]string) map[string]any {
	d := make(map[string]any, len(m))
	for k, v := range m {
		d[k] = v
	}
	return d
}

// funcMap is sprig without functions that read the environment of the
// process rendering (the agent), as in Fleet.
var funcMap = func() template.FuncMap {
	f := sprig.TxtFuncMap()
	delete(f, "env")
	delete(f, "expandenv")
	return f
}()

// templateValue evaluates ${ } templates in every string (and map key) of v.
// Each string is its own template, so an error names the value's path.
func templateValue(v any, path string, data map[string]any) (any, error) {
	switch t := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		out := make(map[string]any, len(t))
		for _, k := range keys {
			p := path + "." + k
			nk := k
			if strings.Contains(k, "${") {
				s, err := execute(k, p, data)
				if err != nil {
					return nil, err
				}
				nk = s
			}
			e, err := templateValue(t[k], p, data)
			if err != nil {
				return nil, err
			}
			out[nk] = e
		}
		return out, nil
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			r, err := templateValue(e, path+"["+strconv.Itoa(i)+"]", data)
			if err != nil {
				return nil, err
			}
			out[i] = r
		}
		return out, nil
	case string:
		if !strings.Contains(t, "${") {
			return t, nil
		}
		s, err := execute(t, path, data)
		if err != nil {
			return nil, err
		}
		return typedResult(t, s), nil
	default:
		return v, nil
	}
}

func execute(text, path string, data map[string]any) (string, error) {
	tmpl, err := parseTemplate(text, path)
	if err != nil {
		return "", &Error{File: "fleet.yaml", Err: fmt.Errorf("%s: invalid template %q: %v (set helm.disablePreProcess: true to pass ${ } through to the chart unchanged)", path, text, trimTemplateErr(err, path))}
	}
	var b bytes.Buffer
	if err := tmpl.Execute(&b, data); err != nil {
		return "", &Error{File: "fleet.yaml", Err: fmt.Errorf("%s: %v in %q (as in Fleet, a missing key is an error; for an optional one write ${ index .ClusterLabels \"key\" | default \"value\" })", path, trimTemplateErr(err, path), text)}
	}
	return b.String(), nil
}

// parsedTemplates caches parsed templates by path and text: parsing, mostly
// copying sprig's functions into every template, was most of the cost of
// resolving values, which the manager does per (bundle, cluster) pair. A
// parsed template may be executed concurrently. The cache is emptied when
// full, so hostile values cannot grow it without bound.
var parsedTemplates = struct {
	sync.Mutex
	m map[string]*template.Template
}{m: map[string]*template.Template{}}

const maxParsedTemplates = 4096

func parseTemplate(text, path string) (*template.Template, error) {
	key := path + "\x00" + text
	parsedTemplates.Lock()
	tmpl, ok := parsedTemplates.m[key]
	parsedTemplates.Unlock()
	if ok {
		return tmpl, nil
	}
	tmpl, err := template.New(path).Delims("${", "}").Option("missingkey=error").Funcs(funcMap).Parse(text)
	if err != nil {
		return nil, err
	}
	parsedTemplates.Lock()
	if len(parsedTemplates.m) >= maxParsedTemplates {
		clear(parsedTemplates.m)
	}
	parsedTemplates.m[key] = tmpl
	parsedTemplates.Unlock()
	return tmpl, nil
}

// trimTemplateErr drops the "template: <path>:1:2: " prefix, which only
// repeats the path.
func trimTemplateErr(err error, path string) string {
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, "template: "+path+":"); ok {
		if i := strings.Index(rest, ": "); i >= 0 {
			return rest[i+2:]
		}
	}
	return msg
}

// typedResult keeps Fleet's behaviour for a value that is nothing but a
// template, "replicas: ${ .ClusterValues.replicas }": the output is read as
// YAML, so numbers, booleans, lists and maps keep their type. A template
// embedded in text always yields a string.
func typedResult(text, out string) any {
	tt := strings.TrimSpace(text)
	if !strings.HasPrefix(tt, "${") || !strings.HasSuffix(tt, "}") || strings.Count(tt, "${") != 1 {
		return out
	}
	if plainWord(out) {
		return out // what YAML would read it as, without parsing
	}
	var v any
	if err := yaml.Unmarshal([]byte(out), &v); err != nil {
		return out
	}
	return v
}

// yamlWords are the plain words YAML 1.1 (sigs.k8s.io/yaml) reads as
// booleans or null.
var yamlWords = map[string]bool{"y": true, "yes": true, "n": true, "no": true, "true": true, "false": true, "on": true, "off": true, "null": true}

// plainWord reports whether YAML reads s as the string s itself: a letter,
// then letters, digits, '-' and '_', and not a YAML boolean or null word.
func plainWord(s string) bool {
	if s == "" || yamlWords[strings.ToLower(s)] {
		return false
	}
	for i, r := range s {
		letter := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
		if !letter && (i == 0 || !(r >= '0' && r <= '9' || r == '-' || r == '_')) {
			return false
		}
	}
	return true
}
