// Package jsonvalue compares and canonicalizes values by their JSON, the
// form the API server stores: Helm values it re-encoded (numbers, key order)
// must compare and hash as what was written.
package jsonvalue

import (
	"encoding/json"
	"reflect"
)

// Generic is v as generic JSON (maps, slices, float64, string, bool, nil);
// v itself when it does not round-trip through JSON.
func Generic(v any) any {
	data, err := json.Marshal(v)
	if err != nil {
		return v
	}
	var out any
	if err := json.Unmarshal(data, &out); err != nil {
		return v
	}
	return out
}

// Equal reports whether a and b have the same JSON value, whatever their
// Go types, number formatting or key order.
func Equal(a, b any) bool {
	return reflect.DeepEqual(Generic(a), Generic(b))
}

// Canonical is v's JSON with object keys sorted at every level, for
// hashing: values that differ only in key order give the same bytes. When
// v does not marshal it is nil; when its JSON does not round-trip, that
// JSON as marshalled.
func Canonical(v any) []byte {
	data, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	var generic any
	if json.Unmarshal(data, &generic) == nil {
		if canonical, err := json.Marshal(generic); err == nil {
			return canonical
		}
	}
	return data
}
