package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgefleet/edgefleet/internal/wire/nodeplan"
)

func TestReadPlanFile(t *testing.T) {
	for _, tc := range []struct {
		name, content, wantJSON, wantErr string
	}{
		{"yaml", "instructions:\n- name: a\n  command: /bin/true\n", `{"instructions":[{"command":"/bin/true","name":"a"}]}`, ""},
		{"json", `{"files":[{"path":"/etc/x","content":"eA=="}]}`, `{"files":[{"content":"eA==","path":"/etc/x"}]}`, ""},
		{"empty plan", "{}", "{}", ""},
		{"invalid", "files:\n- path: etc/x\n", "", `files[0].path: "etc/x" is not absolute`},
		{"typo", "instructions:\n- comand: ls\n", "", `unknown field "comand"`},
		{"not yaml", "a: [b\n", "", "is not YAML or JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "plan.yaml")
			if err := os.WriteFile(f, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			raw, err := readPlanFile(f, nil)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || string(raw) != tc.wantJSON {
				t.Fatalf("got %s (%v), want %s", raw, err, tc.wantJSON)
			}
			if _, err := nodeplan.Parse(raw); err != nil {
				t.Fatalf("the written plan does not parse: %v", err)
			}
		})
	}
}
