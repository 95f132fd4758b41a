package backup

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// entry is one file of a hand-made archive.
type entry struct {
	name string
	body string
	kind byte
}

// makeArchive writes entries then a manifest listing listed (with the
// checksums of their bodies), changed by mutate.
func makeArchive(t *testing.T, entries []entry, listed []entry, mutate func(*Manifest)) string {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		kind := e.kind
		if kind == 0 {
			kind = tar.TypeReg
		}
		h := &tar.Header{Name: e.name, Mode: 0o600, Typeflag: kind}
		if kind == tar.TypeReg {
			h.Size = int64(len(e.body))
		} else {
			h.Linkname = "/etc/passwd"
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if kind == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	m := Manifest{Format: FormatVersion, Mode: ModeOnline}
	for _, e := range listed {
		sum := sha256.Sum256([]byte(e.body))
		m.Files = append(m.Files, File{Path: e.name, Size: int64(len(e.body)), SHA256: hex.EncodeToString(sum[:])})
	}
	if mutate != nil {
		mutate(&m)
	}
	body, _ := json.Marshal(m)
	if err := tw.WriteHeader(&tar.Header{Name: manifestName, Mode: 0o600, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(body); err != nil {
		t.Fatal(err)
	}
	tw.Close()
	gz.Close()
	p := filepath.Join(t.TempDir(), "b.tar.gz")
	if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRestoreRefusesBadArchivesAndWritesNothing(t *testing.T) {
	base := []entry{
		{name: snapshotName, body: "not really a bbolt database"},
		{name: portsFile, body: `{"apiServer":1,"etcdClient":2,"etcdPeer":3}`},
		{name: pkiDir + "/ca.crt", body: "cert"},
		{name: pkiDir + "/ca.key", body: "key"},
	}
	with := func(extra ...entry) []entry { return append(append([]entry{}, base...), extra...) }
	tampered := with()
	tampered[2] = entry{name: pkiDir + "/ca.crt", body: "another cert"}
	cases := []struct {
		name    string
		entries []entry
		listed  []entry
		mutate  func(*Manifest)
		want    string
	}{
		{"a file differs from its checksum", tampered, base, nil, "ca.crt does not match its checksum"},
		{"a listed file is missing", base[1:], base, nil, "etcd.snapshot.db is in the manifest but not in the archive"},
		{"an unlisted file", with(entry{name: pkiDir + "/extra.key", body: "x"}), base, nil, "extra.key is in the archive but not in the manifest"},
		{"a path out of the data dir", with(entry{name: "controlplane/pki/../../../etc/cron.d/x", body: "x"}), base, nil, "unexpected entry"},
		{"a path elsewhere in the data dir", with(entry{name: "controlplane/etcd/member/snap/db", body: "x"}), base, nil, "unexpected entry"},
		{"a symbolic link", with(entry{name: pkiDir + "/link", kind: tar.TypeSymlink}), base, nil, "not a regular file"},
		{"an unknown format", base, base, func(m *Manifest) { m.Format = 99 }, "backup format 99"},
		{"no CA key", base[:3], base[:3], nil, "lacks controlplane/pki/ca.key"},
		{"a snapshot etcd cannot read", base, base, nil, "restoring etcd from the snapshot"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			archive := makeArchive(t, c.entries, c.listed, c.mutate)
			parent := t.TempDir()
			_, err := Restore(archive, filepath.Join(parent, "data"))
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "nothing was restored") {
				t.Fatalf("got %v, want an error containing %q and saying nothing was restored", err, c.want)
			}
			if left, _ := os.ReadDir(parent); len(left) != 0 {
				t.Fatalf("restore left %v behind", left)
			}
		})
	}
}

func TestRestoreRefusesANonEmptyDataDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "state"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Restore(filepath.Join(t.TempDir(), "missing.tar.gz"), dir)
	if err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("got %v, want a refusal naming the non-empty dir", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "state")); string(b) != "x" {
		t.Fatal("existing state was touched")
	}
}

func TestBackupRefusesADirThatIsNotADataDir(t *testing.T) {
	_, err := Create(t.Context(), t.TempDir(), filepath.Join(t.TempDir(), "b.tar.gz"))
	if err == nil || !strings.Contains(err.Error(), "is not the data dir of an embedded edgefleet server") {
		t.Fatalf("got %v, want a clear error", err)
	}
}
