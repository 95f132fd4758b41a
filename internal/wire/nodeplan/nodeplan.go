// Package nodeplan is the plan a machine's node agent applies: the format
// (compatible with rancher-system-agent's, docs/spec/plan.md), its checksum
// and its validation. The manager (CLI, MachineInventory controller) and the
// node (internal/node/planner) both import it, so it imports only the
// standard library.
//
// A plan arrives over the network in the machine's plan Secret, key "plan".
// The node runs as root, so Parse refuses anything it could not apply
// exactly as written: unknown fields, relative or unclean paths, bad modes,
// undecodable content, duplicate names, and sizes beyond the limits below.
package nodeplan

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"
)

// SecretKey is the key of the plan in the plan Secret's data.
const SecretKey = "plan"

// Limits. A plan Secret holds at most 1 MiB; the counts keep status bounded.
const (
	MaxPlanBytes        = 1 << 20
	MaxFiles            = 256
	MaxInstructions     = 64
	MaxProbes           = 32
	MaxNameBytes        = 128
	MaxArgs             = 256
	MaxEnv              = 256
	MaxTimeout          = 24 * time.Hour
	DefaultTimeout      = 15 * time.Minute
	DefaultPeriod       = 10 * time.Minute
	MinPeriod           = 1 * time.Second
	DefaultProbePeriod  = 10 * time.Second
	MaxProbeTimeout     = 60 * time.Second
	DefaultRunCommand   = "/run.sh"
	defaultProbeTimeout = 1
)

// Plan is what a machine applies: files first, then the one-time
// instructions in order (once per plan checksum), then periodic instructions
// on their period; probes run all the time.
type Plan struct {
	Files []File `json:"files,omitempty"`
	// Instructions run once per plan, in order; the first failure stops the
	// plan (system-agent's "instructions", its OneTimeInstructions).
	Instructions         []Instruction         `json:"instructions,omitempty"`
	PeriodicInstructions []PeriodicInstruction `json:"periodicInstructions,omitempty"`
	Probes               map[string]Probe      `json:"probes,omitempty"`
}

// File is a file or directory the plan puts on the machine.
type File struct {
	// Path is absolute, e.g. /etc/rancher/k3s/config.yaml.
	Path string `json:"path"`
	// Content is base64 (standard encoding); empty writes an empty file.
	Content string `json:"content,omitempty"`
	// Permissions is an octal mode such as "0644"; default 0600 for files
	// and 0755 for directories.
	Permissions string `json:"permissions,omitempty"`
	UID         int    `json:"uid,omitempty"`
	GID         int    `json:"gid,omitempty"`
	// Directory creates a directory instead of a file.
	Directory bool `json:"directory,omitempty"`
}

// CommonInstruction is what one-time and periodic instructions share.
type CommonInstruction struct {
	Name string `json:"name,omitempty"`
	// Image is an OCI image; the node extracts it to a directory and runs
	// Command (default /run.sh) from it.
	Image   string   `json:"image,omitempty"`
	Command string   `json:"command,omitempty"`
	Args    []string `json:"args,omitempty"`
	// Env holds KEY=value entries added to the node agent's environment.
	Env []string `json:"env,omitempty"`
	// TimeoutSeconds bounds one run (edgefleet extension; default 900).
	TimeoutSeconds int `json:"timeoutSeconds,omitempty"`
}

// Instruction runs once per plan checksum.
type Instruction struct {
	CommonInstruction `json:",inline"`
	// SaveOutput reports the (bounded) output in status.
	SaveOutput bool `json:"saveOutput,omitempty"`
}

// PeriodicInstruction runs every PeriodSeconds once the one-time
// instructions succeeded.
type PeriodicInstruction struct {
	CommonInstruction `json:",inline"`
	PeriodSeconds     int  `json:"periodSeconds,omitempty"`
	SaveStderrOutput  bool `json:"saveStderrOutput,omitempty"`
}

// Probe is an HTTP health check of something the plan set up.
type Probe struct {
	Name                string        `json:"name,omitempty"`
	InitialDelaySeconds int           `json:"initialDelaySeconds,omitempty"`
	TimeoutSeconds      int           `json:"timeoutSeconds,omitempty"`
	SuccessThreshold    int           `json:"successThreshold,omitempty"`
	FailureThreshold    int           `json:"failureThreshold,omitempty"`
	PeriodSeconds       int           `json:"periodSeconds,omitempty"`
	HTTPGet             HTTPGetAction `json:"httpGet"`
}

// HTTPGetAction is the probe's request. A 2xx or 3xx answer is a success.
// The certificate fields are file paths on the machine.
type HTTPGetAction struct {
	URL        string `json:"url"`
	Insecure   bool   `json:"insecure,omitempty"`
	ClientCert string `json:"clientCert,omitempty"`
	ClientKey  string `json:"clientKey,omitempty"`
	CACert     string `json:"caCert,omitempty"`
}

// Checksum is the plan's identity: hex SHA-256 of the raw bytes in the plan
// Secret, as system-agent and Elemental compute it.
func Checksum(raw []byte) string {
	s := sha256.Sum256(raw)
	return hex.EncodeToString(s[:])
}

// Parse decodes and validates raw. An empty plan ("" or "{}") is valid and
// does nothing.
func Parse(raw []byte) (*Plan, error) {
	if len(raw) > MaxPlanBytes {
		return nil, fmt.Errorf("the plan is %d bytes, more than %d", len(raw), MaxPlanBytes)
	}
	p := &Plan{}
	if len(bytes.TrimSpace(raw)) == 0 {
		return p, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(p); err != nil {
		return nil, fmt.Errorf("the plan is not valid plan JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("the plan has data after its JSON object")
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return p, nil
}

// Validate checks everything a node would refuse, naming the field and
// how to fix it; all problems are reported at once.
func (p *Plan) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(p.Files) > MaxFiles {
		bad("files: %d entries, at most %d", len(p.Files), MaxFiles)
	}
	paths := map[string]int{}
	for i, f := range p.Files {
		where := fmt.Sprintf("files[%d]", i)
		if err := CheckPath(f.Path); err != nil {
			bad("%s.path: %v", where, err)
		} else if j, dup := paths[f.Path]; dup {
			bad("%s.path %q is also files[%d].path", where, f.Path, j)
		} else {
			paths[f.Path] = i
		}
		if _, err := f.Mode(); err != nil {
			bad("%s.permissions: %v", where, err)
		}
		if f.Directory && f.Content != "" {
			bad("%s: a directory has no content", where)
		}
		if _, err := base64.StdEncoding.DecodeString(f.Content); err != nil {
			bad("%s.content is not base64 (standard encoding): %v", where, err)
		}
		if f.UID < 0 || f.GID < 0 {
			bad("%s: uid and gid must be numeric ids (0 or more)", where)
		}
	}
	if len(p.Instructions) > MaxInstructions {
		bad("instructions: %d entries, at most %d", len(p.Instructions), MaxInstructions)
	}
	names := map[string]string{}
	name := func(where, n string, required bool) {
		switch {
		case n == "" && required:
			bad("%s.name is required (status reports it by name)", where)
		case len(n) > MaxNameBytes:
			bad("%s.name is longer than %d bytes", where, MaxNameBytes)
		case n != "":
			if other, dup := names[n]; dup {
				bad("%s.name %q is also the name of %s", where, n, other)
			}
			names[n] = where
		}
	}
	for i, in := range p.Instructions {
		where := fmt.Sprintf("instructions[%d]", i)
		name(where, in.Name, false)
		in.check(where, bad)
	}
	if len(p.PeriodicInstructions) > MaxInstructions {
		bad("periodicInstructions: %d entries, at most %d", len(p.PeriodicInstructions), MaxInstructions)
	}
	for i, in := range p.PeriodicInstructions {
		where := fmt.Sprintf("periodicInstructions[%d]", i)
		name(where, in.Name, true)
		in.check(where, bad)
		if in.PeriodSeconds < 0 || (in.PeriodSeconds > 0 && time.Duration(in.PeriodSeconds)*time.Second < MinPeriod) {
			bad("%s.periodSeconds must be positive (default %d)", where, int(DefaultPeriod.Seconds()))
		}
	}
	if len(p.Probes) > MaxProbes {
		bad("probes: %d entries, at most %d", len(p.Probes), MaxProbes)
	}
	for k, pr := range p.Probes {
		where := fmt.Sprintf("probes[%q]", k)
		if k == "" || len(k) > MaxNameBytes {
			bad("%s: the probe's key is its name: 1 to %d bytes", where, MaxNameBytes)
		}
		u, err := url.Parse(pr.HTTPGet.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("%s.httpGet.url %q is not an http(s) URL", where, pr.HTTPGet.URL)
		}
		for field, v := range map[string]int{"initialDelaySeconds": pr.InitialDelaySeconds,
			"successThreshold": pr.SuccessThreshold, "failureThreshold": pr.FailureThreshold, "periodSeconds": pr.PeriodSeconds} {
			if v < 0 || time.Duration(v)*time.Second > MaxTimeout {
				bad("%s.%s is %d: 0 (default) or a positive count of at most a day", where, field, v)
			}
		}
		// Probes run one after the other in the agent's loop: a slow one
		// must not hold up the others for long.
		if pr.TimeoutSeconds < 0 || time.Duration(pr.TimeoutSeconds)*time.Second > MaxProbeTimeout {
			bad("%s.timeoutSeconds is %d: 0 (default 1) to %d", where, pr.TimeoutSeconds, int(MaxProbeTimeout.Seconds()))
		}
		for field, v := range map[string]string{"clientCert": pr.HTTPGet.ClientCert, "clientKey": pr.HTTPGet.ClientKey, "caCert": pr.HTTPGet.CACert} {
			if v != "" && !path.IsAbs(v) {
				bad("%s.httpGet.%s %q must be an absolute path on the machine", where, field, v)
			}
		}
		if (pr.HTTPGet.ClientCert == "") != (pr.HTTPGet.ClientKey == "") {
			bad("%s.httpGet: clientCert and clientKey go together", where)
		}
	}
	return errors.Join(errs...)
}

func (c *CommonInstruction) check(where string, bad func(string, ...any)) {
	if c.Command == "" && c.Image == "" {
		bad("%s: set command (or image, which runs %s from the image)", where, DefaultRunCommand)
	}
	if strings.ContainsRune(c.Command, 0) {
		bad("%s.command holds a NUL byte", where)
	}
	if len(c.Args) > MaxArgs {
		bad("%s.args: more than %d", where, MaxArgs)
	}
	if len(c.Env) > MaxEnv {
		bad("%s.env: more than %d", where, MaxEnv)
	}
	for j, e := range c.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			bad("%s.env[%d] %q is not KEY=value", where, j, e)
		}
	}
	if c.TimeoutSeconds < 0 || time.Duration(c.TimeoutSeconds)*time.Second > MaxTimeout {
		bad("%s.timeoutSeconds must be between 1 and %d (0: default %d)", where, int(MaxTimeout.Seconds()), int(DefaultTimeout.Seconds()))
	}
}

// Timeout is how long one run of the instruction may take.
func (c *CommonInstruction) Timeout() time.Duration {
	if c.TimeoutSeconds == 0 {
		return DefaultTimeout
	}
	return time.Duration(c.TimeoutSeconds) * time.Second
}

// Period is how often the periodic instruction runs.
func (p *PeriodicInstruction) Period() time.Duration {
	if p.PeriodSeconds == 0 {
		return DefaultPeriod
	}
	return time.Duration(p.PeriodSeconds) * time.Second
}

// Thresholds returns the probe's settings with Kubernetes' defaults filled in.
func (p *Probe) Thresholds() (period, timeout time.Duration, success, failure int) {
	period, timeout, success, failure = DefaultProbePeriod, defaultProbeTimeout*time.Second, 1, 3
	if p.PeriodSeconds > 0 {
		period = time.Duration(p.PeriodSeconds) * time.Second
	}
	if p.TimeoutSeconds > 0 {
		timeout = time.Duration(p.TimeoutSeconds) * time.Second
	}
	if p.SuccessThreshold > 0 {
		success = p.SuccessThreshold
	}
	if p.FailureThreshold > 0 {
		failure = p.FailureThreshold
	}
	return
}

// CheckPath accepts absolute, clean paths below "/": the node writes them
// inside its root and refuses anything that would leave it.
func CheckPath(p string) error {
	switch {
	case p == "":
		return errors.New("empty: give an absolute path such as /etc/example.conf")
	case !path.IsAbs(p):
		return fmt.Errorf("%q is not absolute", p)
	case path.Clean(p) != p:
		return fmt.Errorf("%q is not clean (no //, /./, /../ or trailing /): write %q", p, path.Clean(p))
	case p == "/":
		return errors.New(`"/" itself cannot be written`)
	case strings.ContainsRune(p, 0):
		return errors.New("the path holds a NUL byte")
	}
	return nil
}

// Mode is the file's permission bits.
func (f *File) Mode() (uint32, error) {
	if f.Permissions == "" {
		if f.Directory {
			return 0o755, nil
		}
		return 0o600, nil
	}
	m, err := strconv.ParseUint(f.Permissions, 8, 32)
	if err != nil || m > 0o7777 {
		return 0, fmt.Errorf("%q is not an octal mode such as \"0644\"", f.Permissions)
	}
	return uint32(m), nil
}

// Data is the file's decoded content.
func (f *File) Data() []byte {
	b, _ := base64.StdEncoding.DecodeString(f.Content)
	return b
}

// InstructionName is how status names the i-th one-time instruction: its
// name, or "instructions[i]".
func (p *Plan) InstructionName(i int) string {
	if n := p.Instructions[i].Name; n != "" {
		return n
	}
	return fmt.Sprintf("instructions[%d]", i)
}
