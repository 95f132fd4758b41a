package jsonvalue

import (
	"encoding/json"
	"testing"
)

func TestEqual(t *testing.T) {
	type pair struct{ A, B int }
	tests := []struct {
		name string
		a, b any
		want bool
	}{
		{"key order", json.RawMessage(`{"a":1,"b":2}`), json.RawMessage(`{"b":2,"a":1}`), true},
		{"number formatting", json.RawMessage(`{"a":1.0}`), json.RawMessage(`{"a":1}`), true},
		{"struct and map", pair{1, 2}, map[string]any{"A": 1, "B": 2}, true},
		{"different values", json.RawMessage(`{"a":1}`), json.RawMessage(`{"a":2}`), false},
		{"missing key", map[string]any{"a": nil}, map[string]any{}, false},
		{"both nil", nil, nil, true},
		{"not JSON falls back to DeepEqual", func() {}, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Equal(tt.a, tt.b); got != tt.want {
				t.Errorf("Equal = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCanonical(t *testing.T) {
	tests := []struct {
		name string
		in   any
		want string
	}{
		{"sorted at every level", json.RawMessage(`{"b":{"d":1,"c":2},"a":[{"y":1,"x":2}]}`), `{"a":[{"x":2,"y":1}],"b":{"c":2,"d":1}}`},
		{"struct", struct{ B, A int }{1, 2}, `{"A":2,"B":1}`},
		{"not marshalable", func() {}, ``},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(Canonical(tt.in)); got != tt.want {
				t.Errorf("Canonical = %s, want %s", got, tt.want)
			}
		})
	}
}
