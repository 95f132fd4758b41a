package render

import (
	"bufio"
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/yaml"
)

// Error is a rendering failure in a user's file, for `edgefleet apply` and
// deployment status to show as "file:line: message".
type Error struct {
	// File is the path inside the bundle ("fleet.yaml" for options).
	File string
	// Line is 1-based; 0 when unknown.
	Line int
	Err  error
}

func (e *Error) Error() string {
	switch {
	case e.File == "":
		return e.Err.Error()
	case e.Line > 0:
		return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err)
	default:
		return fmt.Sprintf("%s: %v", e.File, e.Err)
	}
}

func (e *Error) Unwrap() error { return e.Err }

// source records where an object came from, for error messages.
type source struct {
	file string
	line int
}

// document is one YAML document of a file and the line it starts on.
type document struct {
	data []byte
	line int
}

// contentLine is the line of the document's first line that is neither
// blank nor a comment: where a reader sees the object begin.
func (d document) contentLine() int {
	for i, l := range bytes.Split(d.data, []byte("\n")) {
		if t := bytes.TrimSpace(l); len(t) > 0 && t[0] != '#' {
			return d.line + i
		}
	}
	return d.line
}

// splitDocuments splits a multi-document YAML stream on "---" lines,
// remembering the line each document starts on so parse errors can name it.
func splitDocuments(data []byte) []document {
	var docs []document
	var cur bytes.Buffer
	start, lineNo := 1, 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), len(data)+1)
	for sc.Scan() {
		lineNo++
		line := sc.Bytes()
		if bytes.HasPrefix(line, []byte("---")) && strings.TrimSpace(string(line[3:])) == "" || bytes.Equal(line, []byte("...")) {
			docs = append(docs, document{data: bytes.Clone(cur.Bytes()), line: start})
			cur.Reset()
			start = lineNo + 1
			continue
		}
		cur.Write(line)
		cur.WriteByte('\n')
	}
	docs = append(docs, document{data: cur.Bytes(), line: start})
	return docs
}

var yamlLineRE = regexp.MustCompile(`line (\d+):\s*`)

// parseDocument converts one YAML document to an object (nil when the
// document is empty or only comments). Parse errors carry the absolute line.
func parseDocument(file string, doc document) (map[string]any, error) {
	if isBlank(doc.data) {
		return nil, nil
	}
	j, err := yaml.YAMLToJSON(doc.data)
	if err != nil {
		return nil, yamlError(file, doc.line, err)
	}
	if bytes.Equal(bytes.TrimSpace(j), []byte("null")) {
		return nil, nil
	}
	var obj any
	if err := utiljson.Unmarshal(j, &obj); err != nil {
		return nil, &Error{File: file, Line: doc.line, Err: fmt.Errorf("invalid YAML: %w", err)}
	}
	m, ok := obj.(map[string]any)
	if !ok {
		return nil, &Error{File: file, Line: doc.contentLine(), Err: fmt.Errorf("document is a %s, not a Kubernetes object", typeName(obj))}
	}
	return m, nil
}

// yamlError turns "yaml: line 3: ..." into an Error whose line is counted
// from the start of the file.
func yamlError(file string, docLine int, err error) error {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "error converting YAML to JSON: ")
	line := docLine
	if m := yamlLineRE.FindStringSubmatchIndex(msg); m != nil {
		n, _ := strconv.Atoi(msg[m[2]:m[3]])
		line = docLine + n - 1
		msg = msg[:m[0]] + msg[m[1]:]
	}
	msg = strings.TrimPrefix(strings.TrimSpace(msg), "yaml: ")
	return &Error{File: file, Line: line, Err: fmt.Errorf("invalid YAML: %s", msg)}
}

func isBlank(data []byte) bool {
	for _, line := range bytes.Split(data, []byte("\n")) {
		t := bytes.TrimSpace(line)
		if len(t) > 0 && t[0] != '#' {
			return false
		}
	}
	return true
}

func typeName(v any) string {
	switch v.(type) {
	case []any:
		return "list"
	case string:
		return "string"
	case float64, int64:
		return "number"
	case bool:
		return "boolean"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// parseObjects reads every object of a (multi-document) YAML or JSON file.
// "List" kinds are expanded, as kubectl does.
func parseObjects(file string, data []byte) ([]*unstructured.Unstructured, []source, error) {
	var objs []*unstructured.Unstructured
	var srcs []source
	for _, doc := range splitDocuments(data) {
		m, err := parseDocument(file, doc)
		if err != nil {
			return nil, nil, err
		}
		if m == nil {
			continue
		}
		line := doc.contentLine()
		u := &unstructured.Unstructured{Object: m}
		items := []*unstructured.Unstructured{u}
		if u.IsList() {
			list, err := u.ToList()
			if err != nil {
				return nil, nil, &Error{File: file, Line: line, Err: err}
			}
			items = items[:0]
			for i := range list.Items {
				items = append(items, &list.Items[i])
			}
		}
		for _, it := range items {
			if err := checkIdentity(it); err != nil {
				return nil, nil, &Error{File: file, Line: line, Err: err}
			}
			objs = append(objs, it)
			srcs = append(srcs, source{file: file, line: line})
		}
	}
	return objs, srcs, nil
}

func checkIdentity(u *unstructured.Unstructured) error {
	var missing []string
	if u.GetAPIVersion() == "" {
		missing = append(missing, "apiVersion")
	}
	if u.GetKind() == "" {
		missing = append(missing, "kind")
	}
	if u.GetName() == "" && u.GetGenerateName() == "" {
		missing = append(missing, "metadata.name")
	}
	if len(missing) > 0 {
		what := u.GetKind()
		if what == "" {
			what = "object"
		}
		return fmt.Errorf("%s has no %s: every object needs apiVersion, kind and metadata.name", what, strings.Join(missing, ", "))
	}
	return nil
}
