package gitserver

import (
	"fmt"
	"testing"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// Entry is one entry of a tree written by CommitTree: a file (Data), a
// symbolic link (Link, its target) or a directory (Dir, with Entries).
type Entry struct {
	Name    string
	Data    string
	Link    string
	Dir     bool
	Entries []Entry
}

// Link is a symbolic link entry.
func Link(name, target string) Entry { return Entry{Name: name, Link: target} }

// File is a regular file entry.
func File(name, data string) Entry { return Entry{Name: name, Data: data} }

// Dir is a directory entry.
func Dir(name string, entries ...Entry) Entry { return Entry{Name: name, Dir: true, Entries: entries} }

// CommitTree writes exactly the tree given straight into the bare
// repository — entries in the given order, symbolic links, even a name
// twice, which a forged repository can hold but `git add` never makes —
// commits it on top of branch and moves branch to it. It returns the
// commit's hash.
func (r *Repo) CommitTree(t testing.TB, branch, message string, entries []Entry) string {
	t.Helper()
	repo, err := git.PlainOpen(r.Bare)
	if err != nil {
		t.Fatal(err)
	}
	st := repo.Storer
	root := writeTree(t, st, entries)
	sig := object.Signature{Name: "test", Email: "test@example.com", When: time.Now()}
	c := &object.Commit{Author: sig, Committer: sig, Message: message, TreeHash: root}
	ref := plumbing.NewBranchReferenceName(branch)
	if cur, err := repo.Reference(ref, true); err == nil {
		c.ParentHashes = []plumbing.Hash{cur.Hash()}
	}
	obj := st.NewEncodedObject()
	if err := c.Encode(obj); err != nil {
		t.Fatal(err)
	}
	h, err := st.SetEncodedObject(obj)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SetReference(plumbing.NewHashReference(ref, h)); err != nil {
		t.Fatal(err)
	}
	return h.String()
}

func writeTree(t testing.TB, st storer.EncodedObjectStorer, entries []Entry) plumbing.Hash {
	t.Helper()
	var tree []object.TreeEntry
	for _, e := range entries {
		var te object.TreeEntry
		switch {
		case e.Dir:
			te = object.TreeEntry{Name: e.Name, Mode: filemode.Dir, Hash: writeTree(t, st, e.Entries)}
		case e.Link != "":
			te = object.TreeEntry{Name: e.Name, Mode: filemode.Symlink, Hash: writeBlob(t, st, e.Link)}
		default:
			te = object.TreeEntry{Name: e.Name, Mode: filemode.Regular, Hash: writeBlob(t, st, e.Data)}
		}
		tree = append(tree, te)
	}
	// Encoded by hand: go-git's encoder refuses unsorted or repeated names,
	// which is what a forged tree is made of.
	obj := st.NewEncodedObject()
	obj.SetType(plumbing.TreeObject)
	w, err := obj.Writer()
	if err != nil {
		t.Fatal(err)
	}
	for _, te := range tree {
		if _, err := fmt.Fprintf(w, "%o %s\x00", te.Mode, te.Name); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(te.Hash[:]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	h, err := st.SetEncodedObject(obj)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func writeBlob(t testing.TB, st storer.EncodedObjectStorer, data string) plumbing.Hash {
	t.Helper()
	obj := st.NewEncodedObject()
	obj.SetType(plumbing.BlobObject)
	w, err := obj.Writer()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte(data)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	h, err := st.SetEncodedObject(obj)
	if err != nil {
		t.Fatal(err)
	}
	return h
}
