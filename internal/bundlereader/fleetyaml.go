package bundlereader

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
)

// FleetYAML is the content of a fleet.yaml, in Rancher Fleet's format: the
// bundle's name and labels, the bundle options inline, per-target
// customizations, and targets that replace the GitRepo's.
type FleetYAML struct {
	Name   string            `json:"name,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`

	fleetv1.BundleSpec `json:",inline"`

	TargetCustomizations []fleetv1.BundleTarget `json:"targetCustomizations,omitempty"`
	OverrideTargets      []fleetv1.GitTarget    `json:"overrideTargets,omitempty"`
}

// notInFleetYAML are BundleSpec fields edgefleet fills in itself.
var notInFleetYAML = map[string]bool{"resources": true, "contentsID": true, "targetRestrictions": true}

// unsupportedFleetFields are Fleet fields edgefleet does not implement; the
// warning (or, strict, the error) says so instead of calling them unknown.
var unsupportedFleetFields = map[string]string{
	"imageScans":    "image scanning is not supported by edgefleet",
	"helmOpOptions": "HelmOps are not supported",
}

// Warning is a problem in a fleet.yaml that does not stop the bundle: an
// unknown or unsupported key, ignored as Fleet ignores it. Strict reading
// (Options.Strict) turns warnings into errors.
type Warning struct {
	File    string
	Line    int
	Message string
}

func (w Warning) String() string {
	return yamlFileError(w.File, w.Line, "%s", w.Message).Error()
}

// maxWarningsAnnotation bounds the warnings kept on a Bundle: a fleet.yaml
// full of unknown keys must not make the object large.
const maxWarningsAnnotation = 4096

// warningsText is the warnings one per line, at most max bytes (the rest
// is counted, not listed).
func warningsText(ws []Warning, max int) string {
	var b strings.Builder
	for i, w := range ws {
		line := w.String()
		if b.Len()+len(line)+1 > max {
			fmt.Fprintf(&b, "… and %d more", len(ws)-i)
			break
		}
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(line)
	}
	return b.String()
}

// yamlFileError is an error at a line of a file.
func yamlFileError(file string, line int, format string, args ...any) error {
	// Wrapped, so a caller can tell a chart download's network error (it
	// retries) from a broken file.
	if line <= 0 {
		return fmt.Errorf("%s: %w", file, fmt.Errorf(format, args...))
	}
	return fmt.Errorf("%s:%d: %w", file, line, fmt.Errorf(format, args...))
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlSyntaxError rewrites yaml.v3's "yaml: line N: msg" as "file:N: msg".
func yamlSyntaxError(file string, err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return fmt.Errorf("%s: %s", file, strings.Join(te.Errors, "; "))
	}
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		return yamlFileError(file, line, "invalid YAML: %s", m[2])
	}
	return fmt.Errorf("%s: invalid YAML: %s", file, strings.TrimPrefix(err.Error(), "yaml: "))
}

// parseYAMLDocument parses data as a single YAML document. An empty document
// yields nil.
func parseYAMLDocument(file string, data []byte) (*yaml.Node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, yamlSyntaxError(file, err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, nil
	}
	return resolveAlias(doc.Content[0]), nil
}

// validateYAMLStream checks that every document of a (multi-document) YAML
// file parses, so a typo is reported with its line before anything is
// written.
func validateYAMLStream(file string, data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return yamlSyntaxError(file, err)
		}
	}
}

// ParseFleetYAML strictly parses a fleet.yaml: unknown fields, values of the
// wrong type and non-map documents are errors naming file and line. The
// returned node lets later checks report lines too.
func ParseFleetYAML(file string, data []byte) (*FleetYAML, *yaml.Node, error) {
	fy, root, _, err := parseFleetYAML(file, data, true)
	return fy, root, err
}

// ParseFleetYAMLLenient parses a fleet.yaml as Fleet does: unknown and
// unsupported keys are ignored and returned as warnings (file:line, with
// "did you mean" when a known key is close); values of the wrong type and
// invalid YAML are still errors.
func ParseFleetYAMLLenient(file string, data []byte) (*FleetYAML, *yaml.Node, []Warning, error) {
	return parseFleetYAML(file, data, false)
}

func parseFleetYAML(file string, data []byte, strict bool) (*FleetYAML, *yaml.Node, []Warning, error) {
	fy := &FleetYAML{}
	root, err := parseYAMLDocument(file, data)
	if err != nil || root == nil {
		return fy, root, nil, err
	}
	warnings, err := decode(file, root, fy, notInFleetYAML, strict)
	if err != nil {
		return nil, nil, nil, err
	}
	return fy, root, warnings, nil
}

// decodeStrict checks node against out's type (by JSON field names) and
// then decodes it through JSON, so custom JSON types keep their semantics.
func decodeStrict(file string, node *yaml.Node, out any, deny map[string]bool) error {
	_, err := decode(file, node, out, deny, true)
	return err
}

// decode is decodeStrict that, when not strict, drops unknown keys from
// node with a warning each instead of failing.
func decode(file string, node *yaml.Node, out any, deny map[string]bool, strict bool) ([]Warning, error) {
	c := &typeChecker{file: file, deny: deny, lenient: !strict}
	if err := c.check(node, reflect.TypeOf(out).Elem(), "", true); err != nil {
		return nil, err
	}
	var v any
	if err := node.Decode(&v); err != nil {
		return nil, yamlSyntaxError(file, err)
	}
	data, err := json.Marshal(jsonable(v))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return c.warnings, nil
}

// jsonable converts what yaml.v3 decodes into something encoding/json
// accepts (maps with non-string keys).
func jsonable(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			t[k] = jsonable(e)
		}
		return t
	case map[any]any:
		m := make(map[string]any, len(t))
		for k, e := range t {
			m[fmt.Sprint(k)] = jsonable(e)
		}
		return m
	case []any:
		for i, e := range t {
			t[i] = jsonable(e)
		}
		return t
	default:
		return v
	}
}

func resolveAlias(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

var (
	rawJSONType  = reflect.TypeOf(runtime.RawExtension{})
	intOrStrType = reflect.TypeOf(intstr.IntOrString{})
)

type typeChecker struct {
	file string
	deny map[string]bool
	// lenient removes unknown keys from the node, recording a warning each.
	lenient  bool
	warnings []Warning
}

func (c *typeChecker) errorf(n *yaml.Node, format string, args ...any) error {
	return yamlFileError(c.file, n.Line, format, args...)
}

func (c *typeChecker) check(n *yaml.Node, t reflect.Type, path string, top bool) error {
	n = resolveAlias(n)
	if n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null") {
		return nil
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t {
	case rawJSONType:
		// Every free-form field of fleet.yaml (helm.values) is a map of values.
		if n.Kind != yaml.MappingNode {
			return c.errorf(n, "%s: expected a map of values, got %s", fieldName(path), describe(n))
		}
		return nil
	case intOrStrType:
		if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!str") {
			return c.errorf(n, "%s: expected a number or a percentage string, got %s", fieldName(path), describe(n))
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			if top {
				return c.errorf(n, "expected a map of settings, got %s", describe(n))
			}
			return c.errorf(n, "%s: expected a map, got %s", fieldName(path), describe(n))
		}
		fields := jsonFields(t)
		kept := n.Content[:0:0]
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Tag == "!!merge" {
				if err := c.check(v, t, path, top); err != nil {
					return err
				}
				kept = append(kept, k, v)
				continue
			}
			ft, ok := fields[k.Value]
			if top && c.deny[k.Value] {
				ok = false
			}
			if !ok {
				err := c.unknownField(k, path, fields, top)
				if !c.lenient {
					return err
				}
				c.warnings = append(c.warnings, Warning{File: c.file, Line: k.Line, Message: strings.TrimPrefix(err.Error(), yamlFileError(c.file, k.Line, "").Error()) + "; ignored"})
				continue
			}
			if err := c.check(v, ft, join(path, k.Value), false); err != nil {
				return err
			}
			kept = append(kept, k, v)
		}
		if c.lenient {
			n.Content = kept
		}
		return nil
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return c.errorf(n, "%s: expected a map, got %s", fieldName(path), describe(n))
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Tag == "!!merge" {
				if err := c.check(v, t, path, false); err != nil {
					return err
				}
				continue
			}
			if err := c.check(v, t.Elem(), join(path, k.Value), false); err != nil {
				return err
			}
		}
		return nil
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return c.errorf(n, "%s: expected a list, got %s", fieldName(path), describe(n))
		}
		for i, e := range n.Content {
			if err := c.check(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i), false); err != nil {
				return err
			}
		}
		return nil
	case reflect.String:
		return c.scalar(n, path, "a string", "!!str")
	case reflect.Bool:
		return c.scalar(n, path, "true or false", "!!bool")
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return c.scalar(n, path, "a whole number", "!!int")
	case reflect.Float32, reflect.Float64:
		return c.scalar(n, path, "a number", "!!int", "!!float")
	default:
		return nil
	}
}

func (c *typeChecker) scalar(n *yaml.Node, path, want string, tags ...string) error {
	if n.Kind == yaml.ScalarNode {
		for _, tag := range tags {
			if n.Tag == tag {
				return nil
			}
		}
	}
	hint := ""
	if want == "a string" && n.Kind == yaml.ScalarNode {
		hint = " (quote the value to make it a string)"
	}
	return c.errorf(n, "%s: expected %s, got %s%s", fieldName(path), want, describe(n), hint)
}

func (c *typeChecker) unknownField(k *yaml.Node, path string, fields map[string]reflect.Type, top bool) error {
	where := ""
	if path != "" {
		where = " in " + path
	}
	if reason, ok := unsupportedFleetFields[k.Value]; ok {
		return c.errorf(k, "unknown field %q%s: %s", k.Value, where, reason)
	}
	var names []string
	for name := range fields {
		if !(top && c.deny[name]) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	if best := closest(k.Value, names); best != "" {
		return c.errorf(k, "unknown field %q%s (did you mean %q?)", k.Value, where, best)
	}
	return c.errorf(k, "unknown field %q%s (known fields: %s)", k.Value, where, strings.Join(names, ", "))
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func fieldName(path string) string {
	if path == "" {
		return "value"
	}
	return path
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a map"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!int", "!!float":
			return "number " + n.Value
		case "!!bool":
			return "boolean " + n.Value
		case "!!str":
			return strconv.Quote(n.Value)
		default:
			return n.Value
		}
	default:
		return "an unsupported YAML value"
	}
}

// jsonFields maps the JSON names of t's fields, including inlined embedded
// structs, to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && (name == "" || strings.Contains(opts, "inline")) {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range jsonFields(ft) {
					out[k] = v
				}
			}
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

// closest returns the candidate within edit distance 2 of s, if any.
func closest(s string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if d := editDistance(strings.ToLower(s), strings.ToLower(c)); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// lineOf returns the line of the value at path (map keys and list indexes)
// below n, or of the deepest node found, or 0.
func lineOf(n *yaml.Node, path ...any) int {
	n = resolveAlias(n)
	if n == nil {
		return 0
	}
	line := n.Line
	for _, p := range path {
		var next *yaml.Node
		nextLine := 0
		switch key := p.(type) {
		case string:
			if n.Kind == yaml.MappingNode {
				for i := 0; i+1 < len(n.Content); i += 2 {
					if n.Content[i].Value == key {
						// The key's line: a block value starts below it.
						next, nextLine = resolveAlias(n.Content[i+1]), n.Content[i].Line
					}
				}
			}
		case int:
			if n.Kind == yaml.SequenceNode && key < len(n.Content) {
				next = resolveAlias(n.Content[key])
				nextLine = next.Line
			}
		}
		if next == nil {
			return line
		}
		n, line = next, nextLine
	}
	return line
}
