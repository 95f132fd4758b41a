package register

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/edgefleet/edgefleet/internal/wire/machinereg"
)

// State is what the node keeps between registrations (state-dir/state.json).
type State struct {
	RegistrationURL string `json:"registrationURL"`
	InventoryName   string `json:"inventoryName,omitempty"`
	Namespace       string `json:"namespace,omitempty"`
	// EmulatedTPMSeed is the random seed of the emulated TPM (emulated-tpm-seed
	// -1): losing it loses the machine's identity.
	EmulatedTPMSeed []byte    `json:"emulatedTPMSeed,omitempty"`
	Auth            string    `json:"auth,omitempty"`
	LastRegistered  time.Time `json:"lastRegistered,omitzero"`
}

// Files in the state directory.
const (
	stateFile      = "state.json"
	KubeconfigFile = "kubeconfig"
	ConfigFile     = "config.json"
)

func loadState(dir string) (*State, error) {
	data, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return &State{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the node state: %w", err)
	}
	s := &State{}
	if err := json.Unmarshal(data, s); err != nil {
		return nil, fmt.Errorf("%s is corrupt (%v): move it away to register as a new machine", filepath.Join(dir, stateFile), err)
	}
	return s, nil
}

func (s *State) seed() ([]byte, error) {
	if len(s.EmulatedTPMSeed) == 0 {
		s.EmulatedTPMSeed = make([]byte, 32)
		if _, err := rand.Read(s.EmulatedTPMSeed); err != nil {
			return nil, err
		}
	}
	return s.EmulatedTPMSeed, nil
}

// writeFile writes atomically with mode 0600: the state holds secrets.
func writeFile(dir, name string, data []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating the state directory: %w", err)
	}
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return os.Rename(tmp, filepath.Join(dir, name))
}

func saveState(dir string, s *State) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return writeFile(dir, stateFile, data)
}

// Registered is what the last registration stored in the state directory:
// the manager's config (config.json) with the machine's credential
// (kubeconfig; empty when it is missing — the settings stay readable). A
// machine not registered yet gets an error wrapping os.ErrNotExist.
func Registered(stateDir string) (*machinereg.Config, error) {
	data, err := os.ReadFile(filepath.Join(stateDir, ConfigFile))
	if err != nil {
		return nil, err
	}
	c := &machinereg.Config{}
	if err := json.Unmarshal(data, c); err != nil {
		return nil, fmt.Errorf("%s: %w", ConfigFile, err)
	}
	c.Kubeconfig, err = os.ReadFile(filepath.Join(stateDir, KubeconfigFile))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	return c, nil
}
