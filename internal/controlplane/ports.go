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
	l, err := reservePort(host, previous)
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// reservePort is choosePort that keeps the port bound until the caller closes
// the listener: while it is held the kernel hands the port to nobody else, so
// ports chosen together are distinct by construction.
func reservePort(host string, previous int) (net.Listener, error) {
	if previous != 0 {
		if l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(previous))); err == nil {
			return l, nil
		}
	}
	return net.Listen("tcp", net.JoinHostPort(host, "0"))
}
