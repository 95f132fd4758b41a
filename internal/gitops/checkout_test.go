package gitops

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/test/gitserver"
)

// climb is a chain of links whose text looks local but which the kernel
// resolves upwards: l0 -> ., l1 -> l0/.., ..., ln climbs n-1 levels.
func climb(n int) []gitserver.Entry {
	out := []gitserver.Entry{gitserver.Link("l0", ".")}
	for i := 1; i <= n; i++ {
		out = append(out, gitserver.Link("l"+strconv.Itoa(i), "l"+strconv.Itoa(i-1)+"/.."))
	}
	return out
}

// TestCheckoutWritesNothingOutsideTheCheckout: a forged tree that names a
// path twice, first as a link out of the checkout and then as a directory,
// cannot make the manager write through the link; links are written as
// they are (the bundle reader refuses the ones leaving the checkout).
func TestCheckoutWritesNothingOutsideTheCheckout(t *testing.T) {
	root := t.TempDir()
	repo := gitserver.NewRepo(t, root, "forged.git")
	srv := gitserver.ServeHTTP(t, root, "", "")
	outside := t.TempDir()
	entries := append(climb(20),
		gitserver.Link("a", "l20"+outside),
		gitserver.Dir("a", gitserver.File("pwned", "written by a git committer\n")),
		gitserver.Link("abs", "/etc/passwd"),
		gitserver.File("ok.yaml", "kind: ConfigMap\n"),
	)
	repo.CommitTree(t, "main", "forged", entries)
	f, err := newLoopbackFetcher(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = checkout(t, f, srv.URL+"/forged.git", Ref{Branch: "main"}, Auth{})
	if _, statErr := os.Stat(filepath.Join(outside, "pwned")); statErr == nil {
		t.Fatalf("the checkout wrote %s outside the checkout (err %v)", filepath.Join(outside, "pwned"), err)
	}
	if ReasonOf(err) != fleetv1.UnsafeCommitReason || !strings.Contains(err.Error(), "writes a/pwned through a symbolic link out of the checkout") {
		t.Fatalf("forged tree: %v (reason %q), want an UnsafeCommit error naming a/pwned", err, ReasonOf(err))
	}

	// A path named twice is refused rather than written over.
	repo.CommitTree(t, "main", "twice", []gitserver.Entry{gitserver.File("a", "1"), gitserver.File("a", "2")})
	if _, _, err = checkout(t, f, srv.URL+"/forged.git", Ref{Branch: "main"}, Auth{}); ReasonOf(err) != fleetv1.UnsafeCommitReason || !strings.Contains(err.Error(), "names a twice") {
		t.Fatalf("path named twice: %v", err)
	}

	// Without the duplicate the links are written verbatim.
	repo.CommitTree(t, "main", "links", append(climb(3), gitserver.Link("abs", "/etc/passwd"), gitserver.File("ok.yaml", "kind: ConfigMap\n")))
	dir, _, err := checkout(t, f, srv.URL+"/forged.git", Ref{Branch: "main"}, Auth{})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"abs": "/etc/passwd", "l3": "l2/..", "l0": "."} {
		if got, err := os.Readlink(filepath.Join(dir, name)); err != nil || got != want {
			t.Errorf("link %s -> %q (%v), want %q", name, got, err, want)
		}
	}
	if readFile(t, dir, "ok.yaml") != "kind: ConfigMap\n" {
		t.Error("ok.yaml not written")
	}
}

// TestCheckoutSizeLimit: a commit over the checkout limits is refused
// before anything is written, with a reason and the limit in the message.
func TestCheckoutSizeLimit(t *testing.T) {
	root := t.TempDir()
	repo := gitserver.NewRepo(t, root, "big.git")
	srv := gitserver.ServeHTTP(t, root, "", "")
	defer func(b, n int64) { maxCheckoutBytes, maxCheckoutFiles = b, n }(maxCheckoutBytes, maxCheckoutFiles)
	maxCheckoutBytes, maxCheckoutFiles = 3<<20, 5
	f, err := newLoopbackFetcher(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 2<<20)
	repo.Commit(t, "main", "big", gitserver.Files(map[string]string{"a": big, "b": big}))
	if _, _, err := checkout(t, f, srv.URL+"/big.git", Ref{Branch: "main"}, Auth{}); ReasonOf(err) != fleetv1.CheckoutTooLargeReason || !strings.Contains(err.Error(), "3 MiB") {
		t.Fatalf("4 MiB commit: %v (reason %q)", err, ReasonOf(err))
	}
	repo.Commit(t, "main", "many", gitserver.Files(map[string]string{"a": "", "b": "", "c": "", "d": "", "e": "", "f": ""}))
	if _, _, err := checkout(t, f, srv.URL+"/big.git", Ref{Branch: "main"}, Auth{}); ReasonOf(err) != fleetv1.CheckoutTooLargeReason || !strings.Contains(err.Error(), "5 files") {
		t.Fatalf("6 files: %v (reason %q)", err, ReasonOf(err))
	}
	repo.Commit(t, "main", "fits", gitserver.Delete("a", "b"))
	if _, _, err := checkout(t, f, srv.URL+"/big.git", Ref{Branch: "main"}, Auth{}); err != nil {
		t.Fatal(err)
	}
}
