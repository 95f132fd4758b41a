// Package backup saves and restores an embedded installation's data dir: an
// etcd snapshot plus the PKI (every CA, the service-account key, the
// certificates) and the ports, in one gzip'd tar archive with a manifest of
// checksums.
//
// Backup takes the snapshot from the running etcd (clientv3
// Maintenance.Snapshot, consistent at one revision) when a server holds the
// data dir, and copies etcd's database file when none does (it takes the data
// dir's lock meanwhile, so no server starts under it). Restore verifies the
// whole archive before it writes anything to the target, rebuilds etcd's data
// with etcd's own snapshot restore (etcdutl) and only then moves the result
// into place, so a bad archive leaves nothing behind.
package backup

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"

	"github.com/edgefleet/edgefleet/internal/datadir"
	"github.com/edgefleet/edgefleet/internal/version"
)

// Archive layout. Paths are relative to the data dir, except the snapshot.
const (
	manifestName = "manifest.json"
	snapshotName = "etcd.snapshot.db"
	pkiDir       = "controlplane/pki"
	portsFile    = "controlplane/ports.json"
	etcdDir      = "controlplane/etcd"
	// FormatVersion changes when the archive layout does; Restore refuses
	// formats it does not know.
	FormatVersion = 1
	// etcdMemberName must match the --name the control plane gives etcd.
	etcdMemberName = "edgefleet"
	// maxFiles bounds what a hostile archive can make Restore create.
	maxFiles = 256
)

// Modes of taking the snapshot.
const (
	ModeOnline  = "online"  // Maintenance.Snapshot from the running etcd
	ModeOffline = "offline" // a copy of the stopped etcd's database file
)

// Manifest describes an archive. It is its last entry.
type Manifest struct {
	Format    int       `json:"format"`
	Edgefleet string    `json:"edgefleet"`
	Created   time.Time `json:"created"`
	Mode      string    `json:"mode"`
	// EtcdRevision and EtcdKeys are read from the snapshot (etcdutl status).
	EtcdRevision int64  `json:"etcdRevision"`
	EtcdKeys     int    `json:"etcdKeys"`
	EtcdVersion  string `json:"etcdVersion,omitempty"`
	Files        []File `json:"files"`
}

// File is one archived file and its checksum.
type File struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Create writes a backup of the data dir at dataDir to out (mode 0600). out
// appears only when complete.
func Create(ctx context.Context, dataDir, out string) (*Manifest, error) {
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, err
	}
	if st, err := os.Stat(filepath.Join(abs, pkiDir, "ca.crt")); err != nil || !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not the data dir of an embedded edgefleet server (no %s/ca.crt): pass the --data-dir the server runs with", abs, pkiDir)
	}
	work, err := os.MkdirTemp(filepath.Dir(absOr(out)), ".edgefleet-backup-")
	if err != nil {
		return nil, fmt.Errorf("cannot write beside %s: %w", out, err)
	}
	defer os.RemoveAll(work)
	snap := filepath.Join(work, snapshotName)

	m := &Manifest{Format: FormatVersion, Edgefleet: version.String("edgefleet"), Created: time.Now().UTC()}
	// A server holding the lock means etcd is running: ask it. Otherwise we
	// hold the lock, so nothing starts etcd while we copy its database.
	if dir, err := datadir.Open(abs); err == nil {
		defer dir.Close()
		m.Mode = ModeOffline
		db := filepath.Join(abs, etcdDir, "member", "snap", "db")
		if err := copyFile(db, snap); err != nil {
			return nil, fmt.Errorf("copying etcd's database %s: %w", db, err)
		}
	} else if strings.Contains(err.Error(), "in use by another edgefleet process") {
		m.Mode = ModeOnline
		if err := onlineSnapshot(ctx, abs, snap); err != nil {
			return nil, err
		}
	} else {
		return nil, err
	}
	st, err := snapshot.NewV3(zap.NewNop()).Status(snap)
	if err != nil {
		return nil, fmt.Errorf("the etcd snapshot is unreadable: %w", err)
	}
	m.EtcdRevision, m.EtcdKeys, m.EtcdVersion = st.Revision, st.TotalKey, st.Version

	files := []string{portsFile}
	entries, err := os.ReadDir(filepath.Join(abs, pkiDir))
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if e.Type().IsRegular() {
			files = append(files, path.Join(pkiDir, e.Name()))
		}
	}
	sort.Strings(files)
	tmp := out + ".tmp"
	if err := writeArchive(tmp, m, abs, files, snap); err != nil {
		os.Remove(tmp)
		return nil, err
	}
	if err := os.Rename(tmp, out); err != nil {
		os.Remove(tmp)
		return nil, err
	}
	return m, nil
}

func absOr(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// etcdProbeTimeout bounds the wait for a running server's etcd to answer.
var etcdProbeTimeout = 10 * time.Second

// onlineSnapshot streams a snapshot from the running etcd, authenticating with
// kube-apiserver's etcd client certificate (etcd trusts only its own CA).
func onlineSnapshot(ctx context.Context, dataDir, into string) error {
	var pt struct {
		EtcdClient int `json:"etcdClient"`
	}
	raw, err := os.ReadFile(filepath.Join(dataDir, portsFile))
	if err == nil {
		err = json.Unmarshal(raw, &pt)
	}
	if err != nil || pt.EtcdClient == 0 {
		return fmt.Errorf("cannot find the running etcd's port in %s: %v", portsFile, err)
	}
	pki := filepath.Join(dataDir, pkiDir)
	cert, err := tls.LoadX509KeyPair(filepath.Join(pki, "apiserver-etcd-client.crt"), filepath.Join(pki, "apiserver-etcd-client.key"))
	if err != nil {
		return fmt.Errorf("etcd client certificate: %w (run backup as the user the server runs as)", err)
	}
	caPEM, err := os.ReadFile(filepath.Join(pki, "etcd-ca.crt"))
	if err != nil {
		return fmt.Errorf("etcd CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return errors.New("etcd CA: no certificate in etcd-ca.crt")
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{"https://127.0.0.1:" + strconv.Itoa(pt.EtcdClient)},
		DialTimeout: 10 * time.Second,
		TLS:         &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12},
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return fmt.Errorf("connecting to etcd: %w", err)
	}
	defer cli.Close()
	// The snapshot call would wait for a server that does not answer.
	probe, cancelProbe := context.WithTimeout(ctx, etcdProbeTimeout)
	_, err = cli.Status(probe, cli.Endpoints()[0])
	cancelProbe()
	if err != nil {
		return fmt.Errorf("the server holds %s but its etcd (127.0.0.1:%d) does not answer: %w (wait until it is ready, or stop it for an offline backup)", dataDir, pt.EtcdClient, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	rd, err := cli.Snapshot(ctx)
	if err != nil {
		return fmt.Errorf("etcd snapshot: %w", err)
	}
	defer rd.Close()
	f, err := os.OpenFile(into, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, rd); err != nil {
		f.Close()
		return fmt.Errorf("etcd snapshot: %w (is the server still running?)", err)
	}
	return f.Close()
}

func writeArchive(out string, m *Manifest, dataDir string, files []string, snap string) error {
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	add := func(name, src string) error {
		in, err := os.Open(src)
		if err != nil {
			return err
		}
		defer in.Close()
		st, err := in.Stat()
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: st.Size(), ModTime: m.Created, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		h := sha256.New()
		n, err := io.Copy(io.MultiWriter(tw, h), in)
		if err != nil {
			return fmt.Errorf("archiving %s: %w", name, err)
		}
		if n != st.Size() {
			return fmt.Errorf("archiving %s: it changed while being read", name)
		}
		m.Files = append(m.Files, File{Path: name, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))})
		return nil
	}
	if err := add(snapshotName, snap); err != nil {
		return err
	}
	for _, rel := range files {
		if err := add(rel, filepath.Join(dataDir, filepath.FromSlash(rel))); err != nil {
			return err
		}
	}
	body, _ := json.MarshalIndent(m, "", "  ")
	if err := tw.WriteHeader(&tar.Header{Name: manifestName, Mode: 0o600, Size: int64(len(body)), ModTime: m.Created, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := tw.Write(body); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := gz.Close(); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
