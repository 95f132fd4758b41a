package backup

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgefleet/edgefleet/internal/datadir"
	"github.com/edgefleet/edgefleet/internal/pki"
)

// A server that holds the data dir but whose etcd does not answer (starting,
// hung) gets a prompt, clear error rather than a backup that waits.
func TestOnlineBackupOfAServerWhoseEtcdDoesNotAnswer(t *testing.T) {
	dir := t.TempDir()
	lock, err := datadir.Open(dir) // the "server"
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	store := pki.Store{Dir: filepath.Join(dir, pkiDir)}
	if err := os.MkdirAll(store.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := store.LoadOrCreateCA("ca", "edgefleet-ca"); err != nil {
		t.Fatal(err)
	}
	etcdCA, err := store.LoadOrCreateCA("etcd-ca", "edgefleet-etcd-ca")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.LoadOrIssue(etcdCA, "apiserver-etcd-client", pki.CertSpec{CommonName: "client", Usage: pki.ClientAuth}); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close() // nothing listens there now
	if err := os.WriteFile(filepath.Join(dir, portsFile), []byte(`{"etcdClient":`+strconv.Itoa(port)+`,"etcdPeer":1}`), 0o600); err != nil {
		t.Fatal(err)
	}
	etcdProbeTimeout = time.Second
	t.Cleanup(func() { etcdProbeTimeout = 10 * time.Second })
	out := filepath.Join(t.TempDir(), "b.tar.gz")
	_, err = Create(t.Context(), dir, out)
	if err == nil || !strings.Contains(err.Error(), "does not answer") {
		t.Fatalf("got %v, want an error saying etcd does not answer", err)
	}
	if left, _ := os.ReadDir(filepath.Dir(out)); len(left) != 0 {
		t.Fatalf("a failed backup left %v behind", left)
	}
}
