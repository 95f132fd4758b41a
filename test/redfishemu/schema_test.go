package redfishemu

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

const schemaBase = "http://redfish.dmtf.org/schemas/v1/"

// dmtf checks JSON values against DMTF's published Redfish JSON schemas
// (testdata/dmtf): properties not defined by the schema where it forbids
// others (additionalProperties false), values outside enums, wrong types
// and missing required properties. References to schema files not vendored
// are counted as unchecked, not passed silently.
type dmtf struct {
	t         *testing.T
	files     map[string]map[string]any
	unchecked map[string]int
}

func (d *dmtf) file(name string) map[string]any {
	if f, ok := d.files[name]; ok {
		return f
	}
	data, err := os.ReadFile(filepath.Join("testdata", "dmtf", name))
	if err != nil {
		d.files[name] = nil
		return nil
	}
	var f map[string]any
	if err := json.Unmarshal(data, &f); err != nil {
		d.t.Fatalf("%s: %v", name, err)
	}
	d.files[name] = f
	return f
}

// resolve follows ref from file; nil when the file is not vendored.
func (d *dmtf) resolve(file, ref string) (string, map[string]any) {
	target, frag, _ := strings.Cut(ref, "#")
	if target != "" {
		file = strings.TrimPrefix(target, schemaBase)
	}
	f := d.file(file)
	if f == nil {
		d.unchecked[ref]++
		return file, nil
	}
	var node any = f
	for _, p := range strings.Split(strings.Trim(frag, "/"), "/") {
		if p == "" {
			continue
		}
		m, _ := node.(map[string]any)
		node = m[p]
	}
	s, _ := node.(map[string]any)
	if s == nil {
		d.t.Fatalf("%s: %s does not resolve", file, ref)
	}
	return file, s
}

func (d *dmtf) check(path string, v any, file string, s map[string]any) []string {
	if ref, ok := s["$ref"].(string); ok {
		f, rs := d.resolve(file, ref)
		if rs == nil {
			return nil
		}
		return d.check(path, v, f, rs)
	}
	if branches, ok := s["anyOf"].([]any); ok {
		var errs []string
		for _, b := range branches {
			e := d.check(path, v, file, b.(map[string]any))
			if len(e) == 0 {
				return nil
			}
			errs = append(errs, e...)
		}
		return errs
	}
	var errs []string
	if t, ok := s["type"]; ok && !typeOK(v, t) {
		return []string{fmt.Sprintf("%s: %v is not of type %v", path, v, t)}
	}
	if enum, ok := s["enum"].([]any); ok && v != nil && !slices.Contains(enum, v) {
		errs = append(errs, fmt.Sprintf("%s: %v is not one of %v", path, v, enum))
	}
	switch x := v.(type) {
	case map[string]any:
		props, _ := s["properties"].(map[string]any)
		for _, r := range asStrings(s["required"]) {
			if _, ok := x[r]; !ok {
				errs = append(errs, fmt.Sprintf("%s: required property %s missing", path, r))
			}
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if ps, ok := props[k].(map[string]any); ok {
				errs = append(errs, d.check(path+"."+k, x[k], file, ps)...)
				continue
			}
			matched := false
			pp, _ := s["patternProperties"].(map[string]any)
			for re := range pp {
				if regexp.MustCompile(re).MatchString(k) {
					matched = true
				}
			}
			if !matched && s["additionalProperties"] == false {
				errs = append(errs, fmt.Sprintf("%s: property %s is not defined by the schema", path, k))
			}
		}
	case []any:
		if items, ok := s["items"].(map[string]any); ok {
			for i, it := range x {
				errs = append(errs, d.check(fmt.Sprintf("%s[%d]", path, i), it, file, items)...)
			}
		}
	}
	return errs
}

func asStrings(v any) []string {
	var out []string
	for _, x := range asSlice(v) {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func asSlice(v any) []any { s, _ := v.([]any); return s }

func typeOK(v any, t any) bool {
	types := asStrings(t)
	if s, ok := t.(string); ok {
		types = []string{s}
	}
	for _, ty := range types {
		switch ty {
		case "null":
			if v == nil {
				return true
			}
		case "string":
			if _, ok := v.(string); ok {
				return true
			}
		case "boolean":
			if _, ok := v.(bool); ok {
				return true
			}
		case "integer":
			if f, ok := v.(float64); ok && f == float64(int64(f)) {
				return true
			}
		case "number":
			if _, ok := v.(float64); ok {
				return true
			}
		case "array":
			if _, ok := v.([]any); ok {
				return true
			}
		case "object":
			if _, ok := v.(map[string]any); ok {
				return true
			}
		}
	}
	return false
}

// Every resource the emulator serves validates against DMTF's schema for
// its @odata.type, in every state a test drives it into.
func TestResourcesMatchDMTFSchemas(t *testing.T) {
	iso := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ISO")) }))
	defer iso.Close()
	b, err := Start(Options{Username: "u", Password: "p", Manufacturer: "ACME", Model: "R1", SerialNumber: "S1", UUID: "4c4c4544-0042-0000-0000-000000000001", MediaClient: iso.Client()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b.CA.CertPEM)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	do := func(method, path, body string) (*http.Response, map[string]any) {
		t.Helper()
		req, _ := http.NewRequestWithContext(context.Background(), method, b.URL+path, strings.NewReader(body))
		req.SetBasicAuth("u", "p")
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var v map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&v)
		return resp, v
	}
	d := &dmtf{t: t, files: map[string]map[string]any{}, unchecked: map[string]int{}}
	validate := func(state, path string) {
		t.Helper()
		resp, v := do("GET", path, "")
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %s", path, resp.Status)
		}
		if resp.Header.Get("OData-Version") != "4.0" {
			t.Errorf("GET %s: OData-Version %q", path, resp.Header.Get("OData-Version"))
		}
		typ, _ := v["@odata.type"].(string)
		// #ComputerSystem.v1_20_0.ComputerSystem → ComputerSystem.v1_20_0.json
		parts := strings.Split(strings.TrimPrefix(typ, "#"), ".")
		file := parts[0] + ".json"
		if len(parts) == 3 {
			file = parts[0] + "." + parts[1] + ".json"
		}
		f := d.file(file)
		if f == nil {
			t.Errorf("GET %s: no DMTF schema vendored for %s", path, typ)
			return
		}
		def := parts[len(parts)-1]
		_, s := d.resolve(file, "#/definitions/"+def)
		for _, e := range d.check(strings.TrimPrefix(typ, "#"), v, file, s) {
			t.Errorf("%s (%s): %s", path, state, e)
		}
	}
	paths := []string{"/redfish/v1/", "/redfish/v1/Systems", systemP, "/redfish/v1/Managers", managerP, vmediaP, cdP, "/redfish/v1/SessionService", sessionsP}
	for _, p := range paths {
		validate("initial", p)
	}
	// A session, an inserted image, a boot override, power on.
	if resp, _ := do("POST", sessionsP, `{"UserName":"u","Password":"p"}`); resp.StatusCode != 201 || resp.Header.Get("X-Auth-Token") == "" {
		t.Fatalf("login: %s", resp.Status)
	} else {
		validate("session", resp.Header.Get("Location"))
	}
	if resp, _ := do("POST", insertP, `{"Image":"`+iso.URL+`/a.iso"}`); resp.StatusCode != 204 {
		t.Fatalf("insert: %s", resp.Status)
	}
	if resp, _ := do("PATCH", systemP, `{"Boot":{"BootSourceOverrideTarget":"Cd","BootSourceOverrideEnabled":"Once"}}`); resp.StatusCode != 204 {
		t.Fatalf("boot override: %s", resp.Status)
	}
	if resp, _ := do("POST", resetP, `{"ResetType":"On"}`); resp.StatusCode != 200 {
		t.Fatalf("reset: %s", resp.Status)
	}
	validate("inserted, on", systemP)
	validate("inserted, on", cdP)
	// Errors have DSP0266's shape with Message objects DMTF defines.
	resp, v := do("POST", resetP, `{"ResetType":"Explode"}`)
	if resp.StatusCode != 400 {
		t.Errorf("bad ResetType: %s", resp.Status)
	}
	errObj, _ := v["error"].(map[string]any)
	if errObj == nil || errObj["code"] == nil || errObj["message"] == nil {
		t.Fatalf("error body %v", v)
	}
	_, msg := d.resolve("Message.v1_1_2.json", "#/definitions/Message")
	for i, m := range asSlice(errObj["@Message.ExtendedInfo"]) {
		for _, e := range d.check(fmt.Sprintf("error.@Message.ExtendedInfo[%d]", i), m, "Message.v1_1_2.json", msg) {
			t.Error(e)
		}
	}
	t.Logf("references to schema files not vendored (not checked): %v", d.unchecked)

	// The checker itself fails on what it should catch.
	_, sys := d.resolve("ComputerSystem.v1_20_0.json", "#/definitions/ComputerSystem")
	for _, tc := range []struct {
		name string
		bad  map[string]any
	}{
		{"unknown property", map[string]any{"@odata.id": systemP, "@odata.type": "#ComputerSystem.v1_20_0.ComputerSystem", "Id": "1", "Name": "S", "PowerStat": "On"}},
		{"enum", map[string]any{"@odata.id": systemP, "@odata.type": "#ComputerSystem.v1_20_0.ComputerSystem", "Id": "1", "Name": "S", "PowerState": "Sleeping"}},
		{"nested typo", map[string]any{"@odata.id": systemP, "@odata.type": "#ComputerSystem.v1_20_0.ComputerSystem", "Id": "1", "Name": "S", "Status": map[string]any{"HealthRollUp": "OK"}}},
		{"boot target", map[string]any{"@odata.id": systemP, "@odata.type": "#ComputerSystem.v1_20_0.ComputerSystem", "Id": "1", "Name": "S", "Boot": map[string]any{"BootSourceOverrideTarget": "CD"}}},
	} {
		if errs := d.check("bad", tc.bad, "ComputerSystem.v1_20_0.json", sys); len(errs) == 0 {
			t.Errorf("%s: the schema check accepted %v", tc.name, tc.bad)
		}
	}
}
