package vmrig

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// startSwtpm runs swtpm for one power-on: qemu's tpm emulator backend
// talks to its control socket (and gets the data channel through it). The
// TPM state directory outlives the process, as a TPM's NVRAM does.
func (vm *VM) startSwtpm(ctx context.Context, r *running) error {
	sock := filepath.Join(vm.dir, "swtpm.sock")
	os.Remove(sock)
	log, err := os.OpenFile(filepath.Join(vm.dir, "swtpm.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.Command("swtpm", "socket", "--tpm2",
		"--ctrl", "type=unixio,path="+sock,
		"--tpmstate", "dir="+vm.tpmDir,
		"--terminate")
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting swtpm: %w", err)
	}
	r.swtpm = cmd
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			// Do not connect: a connection to the control socket would be
			// taken for qemu's.
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			b, _ := os.ReadFile(filepath.Join(vm.dir, "swtpm.log"))
			return fmt.Errorf("swtpm control socket %s did not appear: %s", sock, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// manufactureTPM gives the TPM in state an EK certificate signed by a local
// CA created in dir (swtpm_setup, Debian package swtpm-tools) and returns
// the CA's certificates (root, then issuer).
func manufactureTPM(dir, state string) ([]byte, error) {
	if _, err := exec.LookPath("swtpm_setup"); err != nil {
		return nil, fmt.Errorf("swtpm_setup is not installed (Debian package swtpm-tools)")
	}
	ca := filepath.Join(dir, "tpmca")
	if err := os.Mkdir(ca, 0o700); err != nil {
		return nil, err
	}
	localca := filepath.Join(dir, "localca.conf")
	setup := filepath.Join(dir, "swtpm_setup.conf")
	if err := os.WriteFile(localca, []byte(fmt.Sprintf("statedir = %[1]s\nsigningkey = %[1]s/signkey.pem\nissuercert = %[1]s/issuercert.pem\ncertserial = %[1]s/certserial\n", ca)), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(setup, []byte(fmt.Sprintf("create_certs_tool = /usr/bin/swtpm_localca\ncreate_certs_tool_config = %s\nactive_pcr_banks = sha256\n", localca)), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command("swtpm_setup", "--tpm2", "--tpmstate", state, "--create-ek-cert", "--create-platform-cert", "--config", setup, "--overwrite")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("swtpm_setup: %v: %s", err, out)
	}
	root, err := os.ReadFile(filepath.Join(ca, "swtpm-localca-rootca-cert.pem"))
	if err != nil {
		return nil, err
	}
	issuer, err := os.ReadFile(filepath.Join(ca, "issuercert.pem"))
	if err != nil {
		return nil, err
	}
	return append(root, issuer...), nil
}
