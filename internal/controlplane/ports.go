package controlplane

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
)

// ports are persisted so a restart serves the API on the same address and the
// user's kubeconfig keeps working.
type ports struct {
	APIServer  int `json:"apiServer"`
	EtcdClient int `json:"etcdClient"`
	EtcdPeer   int `json:"etcdPeer"`
}

func loadPorts(path string) (ports, error) {
	var p ports
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return p, nil
	}
	if err != nil {
		return p, err
	}
	if err := json.Unmarshal(data, &p); err != nil {
		return ports{}, fmt.Errorf("%s is corrupt (%v): delete it and the ports are chosen again", path, err)
	}
	return p, nil
}

func (p ports) save(path string) error {
	data, _ := json.MarshalIndent(p, "", "  ")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// choosePort keeps a previously used port when it is still free, and otherwise
// asks the kernel for a free one.
func choosePort(host string, previous int) (int, error) {
	if previous != 0 && portFree(host, previous) {
		return previous, nil
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func portFree(host string, port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}
