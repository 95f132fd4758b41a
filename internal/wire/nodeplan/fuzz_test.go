package nodeplan

import (
	"encoding/json"
	"strings"
	"testing"
)

// FuzzParse: any bytes from the network either parse into a plan whose
// paths are all absolute and clean and that parses again after a round
// trip, or are refused; never a panic.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{}`, ``, `{"files":[{"path":"/etc/x","content":"aGk=","permissions":"0644"}]}`,
		`{"instructions":[{"name":"a","command":"/bin/true","args":["x"],"env":["A=b"],"timeoutSeconds":5}]}`,
		`{"periodicInstructions":[{"name":"p","command":"true","periodSeconds":60}],"probes":{"x":{"httpGet":{"url":"http://127.0.0.1:1/"}}}}`,
		`{"files":[{"path":"/a/../b"}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		p, err := Parse(raw)
		if err != nil {
			return
		}
		for _, file := range p.Files {
			if CheckPath(file.Path) != nil || strings.Contains(file.Path, "..") && strings.Contains("/"+file.Path+"/", "/../") {
				t.Fatalf("accepted path %q", file.Path)
			}
		}
		again, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Parse(again); err != nil {
			t.Fatalf("a valid plan does not parse after a round trip: %v\n%s", err, again)
		}
	})
}
