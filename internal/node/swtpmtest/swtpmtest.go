// Package swtpmtest starts real TPM 2.0 simulators (Debian's swtpm) for
// tests: one per call, in a temporary directory, stopped by t.Cleanup.
package swtpmtest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TPM is a running swtpm.
type TPM struct {
	// Socket is the TPM command socket (nodetpm.Open's argument).
	Socket string
	// CACertPEM is the local CA that signed the EK certificate (WithEKCert).
	CACertPEM []byte
}

// Options shape a simulator.
type Options struct {
	// EKCert manufactures the TPM with swtpm_setup: an EK certificate signed
	// by a fresh local CA (about 1.5 s).
	EKCert bool
}

// Start runs swtpm; the test is skipped when swtpm is not installed.
func Start(t testing.TB, o Options) *TPM {
	t.Helper()
	if _, err := exec.LookPath("swtpm"); err != nil {
		t.Skip("swtpm is not installed (Debian packages swtpm, swtpm-tools; see hack/install-deps.sh)")
	}
	dir, err := os.MkdirTemp("", "swtpm") // short path: unix socket names are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	tpm := &TPM{Socket: filepath.Join(dir, "tpm.sock")}
	if o.EKCert {
		tpm.CACertPEM = manufacture(t, dir, state)
	}
	cmd := exec.Command("swtpm", "socket", "--tpm2",
		"--server", "type=unixio,path="+tpm.Socket,
		"--ctrl", "type=unixio,path="+filepath.Join(dir, "tpm.ctrl"),
		"--tpmstate", "dir="+state,
		"--flags", "not-need-init,startup-clear")
	out, err := os.Create(filepath.Join(dir, "swtpm.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting swtpm: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		out.Close()
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("unix", tpm.Socket); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(out.Name())
			t.Fatalf("swtpm socket %s did not appear: %s", tpm.Socket, log)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return tpm
}

func manufacture(t testing.TB, dir, state string) []byte {
	t.Helper()
	ca := filepath.Join(dir, "ca")
	if err := os.Mkdir(ca, 0o700); err != nil {
		t.Fatal(err)
	}
	localca := filepath.Join(dir, "localca.conf")
	setup := filepath.Join(dir, "setup.conf")
	write(t, localca, fmt.Sprintf("statedir = %[1]s\nsigningkey = %[1]s/signkey.pem\nissuercert = %[1]s/issuercert.pem\ncertserial = %[1]s/certserial\n", ca))
	write(t, setup, fmt.Sprintf("create_certs_tool = /usr/bin/swtpm_localca\ncreate_certs_tool_config = %s\nactive_pcr_banks = sha256\n", localca))
	cmd := exec.Command("swtpm_setup", "--tpm2", "--tpmstate", state, "--create-ek-cert", "--config", setup, "--overwrite")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("swtpm_setup: %v\n%s", err, out)
	}
	root, err := os.ReadFile(filepath.Join(ca, "swtpm-localca-rootca-cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := os.ReadFile(filepath.Join(ca, "issuercert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return append(root, issuer...)
}

func write(t testing.TB, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}
