package machinereg

import (
	"fmt"
	"net/url"

	"sigs.k8s.io/yaml"
)

// SeedConfigFile is the node config's name on seed media (SeedImage); the
// node looks for it where the live system mounts the media.
const SeedConfigFile = "edgefleet-node.yaml"

// NodeConfig is the node config file: written by the manager onto seed media,
// read by edgefleet-node. The registration keys match the
// MachineRegistration's config.registration (Elemental's names), plus url and
// ca-cert which the SeedImage fills in.
type NodeConfig struct {
	Registration NodeRegistration `json:"registration"`
	// StateDir holds state.json, kubeconfig and config.json.
	StateDir string `json:"state-dir,omitempty"`
}

// NodeRegistration is where and how to register.
type NodeRegistration struct {
	URL string `json:"url"`
	// CACert is the manager's CA (PEM, or a path to a PEM file). It is added
	// to the system's roots.
	CACert          string            `json:"ca-cert,omitempty"`
	Auth            string            `json:"auth,omitempty"`
	Fallback        []string          `json:"fallback,omitempty"`
	EmulateTPM      bool              `json:"emulate-tpm,omitempty"`
	EmulatedTPMSeed int64             `json:"emulated-tpm-seed,omitempty"`
	NoSMBIOS        bool              `json:"no-smbios,omitempty"`
	Labels          map[string]string `json:"labels,omitempty"`
	Annotations     map[string]string `json:"annotations,omitempty"`
	// TPMSocket is a TPM simulator's command socket (swtpm), for tests and
	// labs; empty uses the machine's TPM.
	TPMSocket string `json:"tpm-socket,omitempty"`
	// DMIDir overrides /sys/class/dmi/id (copied firmware tables, tests).
	DMIDir string `json:"dmi-dir,omitempty"`
}

// ParseNodeConfig parses and checks a node config.
func ParseNodeConfig(data []byte) (*NodeConfig, error) {
	cfg := &NodeConfig{}
	if err := yaml.UnmarshalStrict(data, cfg); err != nil {
		return nil, fmt.Errorf("not a valid node config: %w", err)
	}
	u, err := url.Parse(cfg.Registration.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "wss") || u.Host == "" {
		return nil, fmt.Errorf("registration.url %q is not an https URL: copy the url key of the MachineRegistration's token Secret (status.tokenSecretName)", cfg.Registration.URL)
	}
	switch cfg.Registration.Auth {
	case "", "tpm", "tpm-or-fallback", "mac", "sys-uuid":
	default:
		return nil, fmt.Errorf("registration.auth %q is not one of tpm, tpm-or-fallback, mac, sys-uuid", cfg.Registration.Auth)
	}
	for _, f := range cfg.Registration.Fallback {
		switch f {
		case "emulated-tpm", "mac", "sys-uuid":
		default:
			return nil, fmt.Errorf("registration.fallback %q is not one of emulated-tpm, mac, sys-uuid", f)
		}
	}
	return cfg, nil
}

// IsPEM tells an inline PEM from a path to one.
func IsPEM(s string) bool {
	return len(s) > 10 && s[:10] == "-----BEGIN"
}
