package logging

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestLevelsAndFormats(t *testing.T) {
	tests := []struct {
		name      string
		opts      Options
		wantErr   string
		wantInfo  bool
		wantDebug bool
		wantJSON  bool
	}{
		{name: "default is info text", opts: Options{}, wantInfo: true},
		{name: "debug shows V(1)", opts: Options{Level: "debug"}, wantInfo: true, wantDebug: true},
		{name: "error hides info", opts: Options{Level: "error"}},
		{name: "numeric verbosity", opts: Options{Level: "1"}, wantInfo: true, wantDebug: true},
		{name: "json", opts: Options{Format: "json"}, wantInfo: true, wantJSON: true},
		{name: "bad level", opts: Options{Level: "loud"}, wantErr: "--log-level"},
		{name: "bad format", opts: Options{Format: "xml"}, wantErr: "--log-format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			log, err := New(tt.opts, &buf)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want error mentioning %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			log.Info("Info line", "Cluster", "c1")
			log.V(1).Info("Debug line")
			out := buf.String()
			if got := strings.Contains(out, "Info line"); got != tt.wantInfo {
				t.Errorf("info shown = %v, want %v: %q", got, tt.wantInfo, out)
			}
			if got := strings.Contains(out, "Debug line"); got != tt.wantDebug {
				t.Errorf("debug shown = %v, want %v: %q", got, tt.wantDebug, out)
			}
			if tt.wantJSON {
				var m map[string]any
				if err := json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &m); err != nil || m["Cluster"] != "c1" {
					t.Errorf("not structured JSON with keys: %q (%v)", out, err)
				}
			}
		})
	}
}
