package render

import (
	"fmt"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

func TestTemplateValue(t *testing.T) {
	data := templateData(TemplateContext{
		ClusterName:   "c1",
		ClusterLabels: map[string]string{"env": "prod"},
		ClusterValues: map[string]any{"replicas": 3, "zones": []any{"a", "b"}},
	})
	tests := []struct {
		in      any
		want    string
		wantErr string
	}{
		{in: "${ .ClusterName }", want: "c1"},
		{in: "${ .ClusterValues.replicas }", want: "3 (float64)"},
		{in: "replicas-${ .ClusterValues.replicas }", want: "replicas-3 (string)"},
		{in: `${ index .ClusterLabels "tier" | default "standard" }`, want: "standard"},
		{in: `${ if hasKey .ClusterLabels "env" }yes${ else }no${ end }`, want: "yes"},
		{in: "${ .ClusterValues.zones | toJson }", want: "[a b] ([]interface {})"},
		{in: "no template, $HOME and {braces}", want: "no template, $HOME and {braces}"},
		{in: map[string]any{"${ .ClusterName }-key": []any{"${ .ClusterLabels.env }", 1}}, want: "map[c1-key:[prod 1]]"},
		{in: `${ env "HOME" }`, wantErr: `function "env" not defined`},
		{in: "${ .ClusterLabels.tier }", wantErr: `map has no entry for key "tier"`},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.in), func(t *testing.T) {
			got, err := templateValue(tt.in, "helm.values.x", data)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "helm.values.x") {
					t.Fatalf("error = %v, want one naming helm.values.x and %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			s := fmt.Sprint(got)
			if strings.Contains(tt.want, " (") {
				s = fmt.Sprintf("%v (%T)", got, got)
			}
			if s != tt.want {
				t.Errorf("got %s, want %s", s, tt.want)
			}
		})
	}
}

func TestMergeValuesDoesNotModifyInputs(t *testing.T) {
	dst := map[string]any{"a": map[string]any{"x": 1, "y": 2}, "b": 1}
	src := map[string]any{"a": map[string]any{"y": 3}, "c": 4}
	got := mergeValues(dst, src)
	if fmt.Sprint(got) != "map[a:map[x:1 y:3] b:1 c:4]" {
		t.Errorf("merged = %v", got)
	}
	if fmt.Sprint(dst) != "map[a:map[x:1 y:2] b:1]" {
		t.Errorf("dst changed: %v", dst)
	}
}

// TestPlainWordAgreesWithYAML: the fast path of typedResult gives what
// parsing the output as YAML gives.
func TestPlainWordAgreesWithYAML(t *testing.T) {
	for _, s := range []string{"prod", "eu-west_1", "value-0", "yes", "No", "ON", "off", "y", "N", "true", "False", "null", "NULL", "~", "1", "1e3", "0x1F", "-1", ".5", "a b", "a:b", "a#b", "", "x1", "Null"} {
		var v any
		if err := yaml.Unmarshal([]byte(s), &v); err != nil {
			t.Fatal(err)
		}
		str, isString := v.(string)
		if plainWord(s) && (!isString || str != s) {
			t.Errorf("plainWord(%q) but YAML reads %#v", s, v)
		}
		if got := typedResult("${ x }", s); fmt.Sprint(got) != fmt.Sprint(v) && !(v == nil && got == nil) {
			t.Errorf("typedResult(%q) = %#v, YAML reads %#v", s, got, v)
		}
	}
}
