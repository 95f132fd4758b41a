package nodeplan

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, plan string
		// wantErr fragments; none means the plan is valid.
		wantErr []string
	}{
		{"empty", ``, nil},
		{"empty object", `{}`, nil},
		{"system-agent plan", `{"files":[{"path":"/etc/x.conf","content":"aGk=","permissions":"0644"},{"path":"/var/lib/x","directory":true}],
			"instructions":[{"name":"install","command":"sh","args":["-c","true"],"env":["A=b"],"saveOutput":true},{"image":"example.com/installer:v1"}],
			"periodicInstructions":[{"name":"sync","command":"true","periodSeconds":60,"saveStderrOutput":true}],
			"probes":{"api":{"httpGet":{"url":"https://127.0.0.1:6443/healthz","insecure":true},"failureThreshold":2}}}`, nil},
		{"unknown field", `{"instructions":[{"comand":"true"}]}`, []string{`unknown field "comand"`}},
		{"trailing data", `{} {}`, []string{"data after"}},
		{"relative path", `{"files":[{"path":"etc/x"}]}`, []string{`files[0].path: "etc/x" is not absolute`}},
		{"dot-dot path", `{"files":[{"path":"/etc/../../x"}]}`, []string{"not clean", `write "/x"`}},
		{"root path", `{"files":[{"path":"/"}]}`, []string{`"/" itself`}},
		{"duplicate path", `{"files":[{"path":"/a"},{"path":"/a"}]}`, []string{"also files[0].path"}},
		{"bad mode", `{"files":[{"path":"/a","permissions":"rw-r--r--"}]}`, []string{"files[0].permissions", "octal"}},
		{"mode too large", `{"files":[{"path":"/a","permissions":"17777"}]}`, []string{"octal"}},
		{"bad base64", `{"files":[{"path":"/a","content":"not base64!"}]}`, []string{"files[0].content is not base64"}},
		{"directory with content", `{"files":[{"path":"/a","directory":true,"content":"aGk="}]}`, []string{"no content"}},
		{"negative uid", `{"files":[{"path":"/a","uid":-5}]}`, []string{"numeric ids"}},
		{"no command", `{"instructions":[{"name":"x"}]}`, []string{"instructions[0]: set command"}},
		{"bad env", `{"instructions":[{"command":"true","env":["NOEQUALS"]}]}`, []string{`env[0] "NOEQUALS" is not KEY=value`}},
		{"periodic without name", `{"periodicInstructions":[{"command":"true"}]}`, []string{"periodicInstructions[0].name is required"}},
		{"duplicate names", `{"instructions":[{"name":"a","command":"true"}],"periodicInstructions":[{"name":"a","command":"true"}]}`, []string{`name "a" is also the name of instructions[0]`}},
		{"negative timeout", `{"instructions":[{"command":"true","timeoutSeconds":-1}]}`, []string{"timeoutSeconds"}},
		{"probe url", `{"probes":{"p":{"httpGet":{"url":"file:///etc/shadow"}}}}`, []string{"not an http(s) URL"}},
		{"probe threshold", `{"probes":{"p":{"httpGet":{"url":"http://x"},"failureThreshold":-1}}}`, []string{"failureThreshold is -1"}},
		{"probe timeout too long", `{"probes":{"p":{"httpGet":{"url":"http://x"},"timeoutSeconds":3600}}}`, []string{"timeoutSeconds is 3600"}},
		{"probe cert relative", `{"probes":{"p":{"httpGet":{"url":"https://x","caCert":"ca.pem"}}}}`, []string{"absolute path"}},
		{"several problems at once", `{"files":[{"path":"x"}],"instructions":[{}]}`, []string{"files[0].path", "instructions[0]"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.plan))
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("valid plan refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("plan accepted, want an error saying %q", tc.wantErr)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestParseRefusesOversizedPlan(t *testing.T) {
	if _, err := Parse(make([]byte, MaxPlanBytes+1)); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("oversized plan: %v", err)
	}
}

func TestChecksumIsSHA256OfRawBytes(t *testing.T) {
	// echo -n '{}' | sha256sum
	if got := Checksum([]byte("{}")); got != "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a" {
		t.Fatal(got)
	}
}

func TestDefaults(t *testing.T) {
	f := File{Path: "/a"}
	if m, _ := f.Mode(); m != 0o600 {
		t.Errorf("file default mode %o", m)
	}
	f.Directory = true
	if m, _ := f.Mode(); m != 0o755 {
		t.Errorf("directory default mode %o", m)
	}
	pr := Probe{}
	period, timeout, s, fl := pr.Thresholds()
	if period != DefaultProbePeriod || timeout.Seconds() != 1 || s != 1 || fl != 3 {
		t.Errorf("probe defaults %v %v %d %d", period, timeout, s, fl)
	}
}
