package backup

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"
)

// Restore rebuilds a data dir at dataDir from the archive at from. dataDir must
// not exist or be empty. Nothing appears at dataDir unless every file of the
// archive matches its manifest and etcd's restore succeeded.
func Restore(from, dataDir string) (*Manifest, error) {
	target, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, err
	}
	if entries, err := os.ReadDir(target); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("data dir %s is not empty: restore into a new directory (a restore never overwrites state)", target)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("data dir %s: %w", target, err)
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
		return nil, err
	}
	// Staged beside the target, so the final move is a rename on one file system.
	stage, err := os.MkdirTemp(filepath.Dir(target), ".edgefleet-restore-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(stage)
	files := filepath.Join(stage, "files")

	m, err := extract(from, files)
	if err != nil {
		return nil, fmt.Errorf("backup %s is unusable, nothing was restored: %w", from, err)
	}
	peer, err := peerURL(filepath.Join(files, filepath.FromSlash(portsFile)))
	if err != nil {
		return nil, fmt.Errorf("backup %s is unusable, nothing was restored: %w", from, err)
	}
	snap := filepath.Join(files, snapshotName)
	err = snapshot.NewV3(zap.NewNop()).Restore(snapshot.RestoreConfig{
		SnapshotPath:        snap,
		Name:                etcdMemberName,
		OutputDataDir:       filepath.Join(files, filepath.FromSlash(etcdDir)),
		PeerURLs:            []string{peer},
		InitialCluster:      etcdMemberName + "=" + peer,
		InitialClusterToken: "etcd-cluster",
		// A copied database file (offline backup) has no snapshot hash;
		// the archive's own checksum stands for it.
		SkipHashCheck: m.Mode == ModeOffline,
	})
	if err != nil {
		return nil, fmt.Errorf("restoring etcd from the snapshot in %s, nothing was restored: %w", from, err)
	}
	if err := os.Remove(snap); err != nil {
		return nil, err
	}
	for _, d := range []string{"controlplane/logs"} {
		if err := os.MkdirAll(filepath.Join(files, d), 0o700); err != nil {
			return nil, err
		}
	}
	if err := os.Chmod(files, 0o700); err != nil {
		return nil, err
	}
	// rename(2) replaces an empty directory, and fails if one appeared
	// with content meanwhile.
	if err := os.Rename(files, target); err != nil {
		return nil, fmt.Errorf("moving the restored data into %s: %w", target, err)
	}
	return m, nil
}

// extract unpacks the archive into dir, checking every file against the
// manifest (the last entry): nothing missing, nothing extra, every checksum.
func extract(from, dir string) (*Manifest, error) {
	f, err := os.Open(from)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("not a gzip'd edgefleet backup: %w", err)
	}
	tr := tar.NewReader(gz)
	got := map[string]File{}
	var manifest []byte
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading the archive: %w (truncated or corrupt)", err)
		}
		if manifest != nil {
			return nil, fmt.Errorf("entry %q after the manifest", h.Name)
		}
		if h.Name == manifestName {
			if manifest, err = io.ReadAll(io.LimitReader(tr, 1<<20)); err != nil {
				return nil, fmt.Errorf("reading the manifest: %w (truncated or corrupt)", err)
			}
			continue
		}
		if err := safeName(h); err != nil {
			return nil, err
		}
		if _, dup := got[h.Name]; dup {
			return nil, fmt.Errorf("entry %q appears twice", h.Name)
		}
		if len(got) >= maxFiles {
			return nil, fmt.Errorf("more than %d files", maxFiles)
		}
		dst := filepath.Join(dir, filepath.FromSlash(h.Name))
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return nil, err
		}
		out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, err
		}
		sum := sha256.New()
		n, err := io.Copy(io.MultiWriter(out, sum), tr)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w (truncated or corrupt)", h.Name, err)
		}
		got[h.Name] = File{Path: h.Name, Size: n, SHA256: hex.EncodeToString(sum.Sum(nil))}
	}
	if manifest == nil {
		return nil, errors.New("no manifest: the archive is truncated or not an edgefleet backup")
	}
	var m Manifest
	if err := json.Unmarshal(manifest, &m); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if m.Format != FormatVersion {
		return nil, fmt.Errorf("backup format %d, this edgefleet reads format %d: use the edgefleet version that wrote it (%s)", m.Format, FormatVersion, m.Edgefleet)
	}
	if m.Mode != ModeOnline && m.Mode != ModeOffline {
		return nil, fmt.Errorf("manifest: unknown mode %q", m.Mode)
	}
	want := map[string]bool{}
	for _, w := range m.Files {
		g, ok := got[w.Path]
		if !ok {
			return nil, fmt.Errorf("%s is in the manifest but not in the archive", w.Path)
		}
		if g.Size != w.Size || g.SHA256 != w.SHA256 {
			return nil, fmt.Errorf("%s does not match its checksum in the manifest (corrupt)", w.Path)
		}
		want[w.Path] = true
	}
	for name := range got {
		if !want[name] {
			return nil, fmt.Errorf("%s is in the archive but not in the manifest", name)
		}
	}
	for _, need := range []string{snapshotName, portsFile, pkiDir + "/ca.crt", pkiDir + "/ca.key"} {
		if !want[need] {
			return nil, fmt.Errorf("the backup lacks %s", need)
		}
	}
	return &m, nil
}

// safeName admits only regular files at clean relative paths: the snapshot,
// the ports file and files directly in the PKI folder.
func safeName(h *tar.Header) error {
	if h.Typeflag != tar.TypeReg {
		return fmt.Errorf("entry %q is not a regular file", h.Name)
	}
	name := h.Name
	ok := name == snapshotName || name == portsFile ||
		(path.Dir(name) == pkiDir && path.Base(name) != "." && path.Base(name) != ".." && !strings.ContainsAny(path.Base(name), `\`))
	if !ok || path.Clean(name) != name {
		return fmt.Errorf("unexpected entry %q in the archive", name)
	}
	return nil
}

func peerURL(portsPath string) (string, error) {
	var pt struct {
		EtcdPeer int `json:"etcdPeer"`
	}
	raw, err := os.ReadFile(portsPath)
	if err == nil {
		err = json.Unmarshal(raw, &pt)
	}
	if err != nil || pt.EtcdPeer <= 0 || pt.EtcdPeer > 65535 {
		return "", fmt.Errorf("ports.json has no valid etcd peer port: %v", err)
	}
	return "http://127.0.0.1:" + strconv.Itoa(pt.EtcdPeer), nil
}
