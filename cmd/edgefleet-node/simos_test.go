package main

import (
	"testing"
	"time"

	"github.com/edgefleet/edgefleet/internal/node/osinstall"
)

func TestSimulateOS(t *testing.T) {
	now := time.Unix(1700000000, 0).UTC()
	st := &simulatedOS{}
	steps := []struct {
		action, image        string
		wantActive, wantImg  string
		wantLast, wantErrMsg string
	}{
		{"report", "reg/os:v1", "a", "reg/os:v1", "", ""},
		// A second report (agent restart) keeps what the slots hold.
		{"report", "reg/os:v9", "a", "reg/os:v1", "", ""},
		{"upgrade", "reg/os:v2", "b", "reg/os:v2", "Succeeded", ""},
		{"upgrade", "reg/os:v3", "a", "reg/os:v3", "Succeeded", ""},
		{"install", "reg/os:v4", "a", "reg/os:v3", "Succeeded", `unknown action "install": use report or upgrade`},
	}
	for _, s := range steps {
		err := simulateOS(st, s.action, s.image, now)
		if s.wantErrMsg != "" {
			if err == nil || err.Error() != s.wantErrMsg {
				t.Errorf("%s %s: error %v", s.action, s.image, err)
			}
		} else if err != nil {
			t.Fatal(err)
		}
		booted := st.Booted()
		if st.ActiveSlot != s.wantActive || booted.Image != s.wantImg {
			t.Errorf("%s %s: active %s runs %s, want %s runs %s", s.action, s.image, st.ActiveSlot, booted.Image, s.wantActive, s.wantImg)
		}
		if (st.LastUpgrade == nil) != (s.wantLast == "") || (st.LastUpgrade != nil && st.LastUpgrade.Result != s.wantLast) {
			t.Errorf("%s %s: last upgrade %+v", s.action, s.image, st.LastUpgrade)
		}
	}
	if st.Slots[osinstall.SlotB].Image != "reg/os:v2" {
		t.Errorf("the passive slot lost its image: %+v", st.Slots)
	}
}

func TestVersionOf(t *testing.T) {
	for in, want := range map[string]string{
		"edgefleet.test/edgefleet/os:v2": "v2",
		"127.0.0.1:5000/os":              "",
		"127.0.0.1:5000/os:1.2":          "1.2",
		"os":                             "",
	} {
		if got := versionOf(in); got != want {
			t.Errorf("versionOf(%q) = %q, want %q", in, got, want)
		}
	}
}
