package mountinfo

import (
	"slices"
	"strings"
	"testing"
)

func TestParseBelow(t *testing.T) {
	mountinfo := strings.Join([]string{
		"27 1 254:0 / / rw,relatime - ext4 /dev/vda rw",
		"51 27 254:0 /x /tmp/ef-1/fm1/kubelet/root rw shared:7 - ext4 /dev/vda rw",
		"55 51 0:61 / /tmp/ef-1/fm1/kubelet/root/pods/a/volumes/kube-api-access rw shared:12 - tmpfs tmpfs rw",
		"56 27 0:4 net:[1] /tmp/ef-1/fm1/netns/cni-1 rw - nsfs nsfs rw",
		"57 27 0:62 / /tmp/ef-1/with\\040space rw - tmpfs tmpfs rw",
		"58 27 0:63 / /tmp/ef-10/other rw - tmpfs tmpfs rw",
		"59 27 0:64 / /tmp/ef-1 rw - tmpfs tmpfs rw",
		"short line",
	}, "\n")
	for _, tc := range []struct {
		dir  string
		want []string
	}{
		{"/tmp/ef-1/", []string{
			"/tmp/ef-1/fm1/kubelet/root/pods/a/volumes/kube-api-access", // deepest first: unmounted before its parent
			"/tmp/ef-1/fm1/kubelet/root",
			"/tmp/ef-1/fm1/netns/cni-1",
			"/tmp/ef-1/with space",
		}},
		{"/tmp/ef-10", []string{"/tmp/ef-10/other"}},
		{"/tmp/ef-1/fm1/kubelet/root", []string{"/tmp/ef-1/fm1/kubelet/root/pods/a/volumes/kube-api-access"}},
		{"/srv", nil},
	} {
		got, err := ParseBelow(strings.NewReader(mountinfo), tc.dir)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("below %s: got %q\nwant %q (not a sibling with the same prefix, not the folder itself)", tc.dir, got, tc.want)
		}
	}
}

func TestUnescape(t *testing.T) {
	for in, want := range map[string]string{
		`/a/with\040space`: "/a/with space",
		`/a/tab\011x`:      "/a/tab\tx",
		`/a/back\134slash`: `/a/back\slash`,
		`/a/plain`:         "/a/plain",
		`/a/bad\09`:        `/a/bad\09`,
	} {
		if got := Unescape(in); got != want {
			t.Errorf("Unescape(%q) = %q, want %q", in, got, want)
		}
	}
}
