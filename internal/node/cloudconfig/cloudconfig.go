// Package cloudconfig applies the supported subset of cloud-init's
// cloud-config on an installed machine at its first boot: users,
// write_files and runcmd. Other keys are reported as warnings and ignored,
// so a config written for cloud-init or Elemental never fails silently.
package cloudconfig

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// Supported are the top-level keys applied.
var Supported = []string{"users", "write_files", "runcmd"}

// Config is the supported subset.
type Config struct {
	Users      []User `json:"users,omitempty"`
	WriteFiles []File `json:"write_files,omitempty"`
	// RunCmd entries are a shell line or an argv list.
	RunCmd []any `json:"runcmd,omitempty"`
}

// User is a cloud-config user.
type User struct {
	Name              string   `json:"name"`
	Passwd            string   `json:"passwd,omitempty"`
	SSHAuthorizedKeys []string `json:"ssh_authorized_keys,omitempty"`
	Shell             string   `json:"shell,omitempty"`
}

// File is a write_files entry.
type File struct {
	Path        string `json:"path"`
	Content     string `json:"content,omitempty"`
	Encoding    string `json:"encoding,omitempty"`
	Permissions string `json:"permissions,omitempty"`
	Owner       string `json:"owner,omitempty"`
	Append      bool   `json:"append,omitempty"`
}

// Parse reads a cloud-config (YAML or JSON, with or without the
// "#cloud-config" line) and returns the supported subset plus a warning per
// key it ignores.
func Parse(data []byte) (*Config, []string, error) {
	var raw map[string]any
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, nil, fmt.Errorf("not a cloud-config: %w", err)
	}
	var warnings []string
	for k := range raw {
		if !contains(Supported, k) {
			warnings = append(warnings, fmt.Sprintf("cloud-config key %q is not supported and is ignored (supported: %s)", k, strings.Join(Supported, ", ")))
		}
	}
	sort.Strings(warnings)
	c := &Config{}
	if err := yaml.Unmarshal(data, c); err != nil {
		return nil, warnings, fmt.Errorf("cloud-config: %w", err)
	}
	for i, f := range c.WriteFiles {
		if !filepath.IsAbs(f.Path) {
			return nil, warnings, fmt.Errorf("cloud-config write_files[%d].path %q is not an absolute path", i, f.Path)
		}
		switch f.Encoding {
		case "", "text/plain", "b64", "base64":
		default:
			return nil, warnings, fmt.Errorf("cloud-config write_files[%d].encoding %q is not supported (use b64 or none)", i, f.Encoding)
		}
	}
	for i, u := range c.Users {
		if u.Name == "" {
			return nil, warnings, fmt.Errorf("cloud-config users[%d] has no name", i)
		}
	}
	for i, r := range c.RunCmd {
		switch r.(type) {
		case string, []any:
		default:
			return nil, warnings, fmt.Errorf("cloud-config runcmd[%d] is neither a command line nor a list", i)
		}
	}
	return c, warnings, nil
}

// Apply applies c on the system whose root is root ("/" on the machine):
// files first, then users, then commands (which may use both).
func Apply(ctx context.Context, c *Config, root string) error {
	for _, f := range c.WriteFiles {
		if err := writeFile(root, f); err != nil {
			return err
		}
	}
	for _, u := range c.Users {
		if err := ensureUser(ctx, root, u); err != nil {
			return err
		}
	}
	for i, r := range c.RunCmd {
		var cmd *exec.Cmd
		switch r := r.(type) {
		case string:
			cmd = exec.CommandContext(ctx, "/bin/sh", "-c", r)
		case []any:
			args := make([]string, len(r))
			for j, a := range r {
				args[j] = fmt.Sprint(a)
			}
			if len(args) == 0 {
				continue
			}
			cmd = exec.CommandContext(ctx, args[0], args[1:]...)
		}
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("cloud-config runcmd[%d]: %v: %s", i, err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

func writeFile(root string, f File) error {
	content := []byte(f.Content)
	if f.Encoding == "b64" || f.Encoding == "base64" {
		var err error
		if content, err = base64.StdEncoding.DecodeString(strings.TrimSpace(f.Content)); err != nil {
			return fmt.Errorf("cloud-config write_files %s: %w", f.Path, err)
		}
	}
	mode := os.FileMode(0o644)
	if f.Permissions != "" {
		m, err := strconv.ParseUint(f.Permissions, 8, 32)
		if err != nil {
			return fmt.Errorf("cloud-config write_files %s: permissions %q is not octal", f.Path, f.Permissions)
		}
		mode = os.FileMode(m)
	}
	p := filepath.Join(root, filepath.Clean(f.Path))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	if f.Append {
		flags = os.O_CREATE | os.O_WRONLY | os.O_APPEND
	}
	w, err := os.OpenFile(p, flags, mode)
	if err != nil {
		return err
	}
	if _, err := w.Write(content); err != nil {
		w.Close()
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	if err := os.Chmod(p, mode); err != nil {
		return err
	}
	if f.Owner != "" && root == "/" {
		if out, err := exec.Command("chown", f.Owner, p).CombinedOutput(); err != nil {
			return fmt.Errorf("cloud-config write_files %s: chown %s: %v: %s", f.Path, f.Owner, err, out)
		}
	}
	return nil
}

// ensureUser creates the user (useradd, or busybox adduser), sets its
// password hash and authorized keys.
func ensureUser(ctx context.Context, root string, u User) error {
	if root != "/" {
		return fmt.Errorf("cloud-config users: only applied on the running system (root /), not %s", root)
	}
	home := "/home/" + u.Name
	if u.Name == "root" {
		home = "/root"
	}
	if exec.CommandContext(ctx, "id", u.Name).Run() != nil {
		shell := u.Shell
		if shell == "" {
			shell = "/bin/sh"
		}
		var cmd *exec.Cmd
		if p, err := exec.LookPath("useradd"); err == nil {
			cmd = exec.CommandContext(ctx, p, "-m", "-s", shell, u.Name)
		} else {
			cmd = exec.CommandContext(ctx, "adduser", "-D", "-s", shell, u.Name)
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("cloud-config users: creating %s: %v: %s", u.Name, err, out)
		}
	}
	if u.Passwd != "" {
		cmd := exec.CommandContext(ctx, "chpasswd", "-e")
		cmd.Stdin = strings.NewReader(u.Name + ":" + u.Passwd + "\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("cloud-config users: password of %s: %v: %s", u.Name, err, out)
		}
	}
	if len(u.SSHAuthorizedKeys) > 0 {
		f := File{Path: home + "/.ssh/authorized_keys", Content: strings.Join(u.SSHAuthorizedKeys, "\n") + "\n", Permissions: "0600", Owner: u.Name}
		if err := writeFile(root, f); err != nil {
			return err
		}
	}
	return nil
}

// ApplyDir applies every file of dir (EF_OEM's cloud-config, sorted by name)
// once: a marker in stateDir records what was applied, so later boots skip
// files already applied and apply only new or changed ones.
func ApplyDir(ctx context.Context, dir, root, stateDir string, warn func(string)) error {
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	marker := filepath.Join(stateDir, "cloud-config.applied")
	done, _ := os.ReadFile(marker)
	var applied []string
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		key := e.Name() + " " + hex.EncodeToString(sum[:])
		if bytes.Contains(done, []byte(key+"\n")) {
			applied = append(applied, key)
			continue
		}
		c, warnings, err := Parse(data)
		for _, w := range warnings {
			warn(e.Name() + ": " + w)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", e.Name(), err)
		}
		if err := Apply(ctx, c, root); err != nil {
			return fmt.Errorf("%s: %w", e.Name(), err)
		}
		applied = append(applied, key)
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(marker, []byte(strings.Join(applied, "\n")+"\n"), 0o600)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
