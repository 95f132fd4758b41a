// Package nodekube is the node's Kubernetes API client: the few calls the
// node makes with the machine's own credential (the kubeconfig the manager
// issued at registration) — get and watch its plan Secret, read its
// MachineInventory, server-side apply its fields of the inventory's status —
// over plain HTTPS. client-go would quadruple the node binary (its typed
// clients link every core API type) for a handful of requests.
package nodekube

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/edgefleet/edgefleet/internal/wire/nodestatus"
)

// Client calls the manager's Kubernetes API with the machine's bearer
// token.
type Client struct {
	server string
	token  string
	http   *http.Client
}

// APIError is a Kubernetes API error answer (a metav1.Status).
type APIError struct {
	Code    int    `json:"code"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

func (e *APIError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("the API answered %d %s", e.Code, http.StatusText(e.Code))
	}
	return fmt.Sprintf("the API answered %d: %s", e.Code, e.Message)
}

// IsStatus reports whether err is an API answer with this HTTP code.
func IsStatus(err error, code int) bool {
	var e *APIError
	return errors.As(err, &e) && e.Code == code
}

// IsUnauthorized: the credential was refused (renewed by registering again).
func IsUnauthorized(err error) bool { return IsStatus(err, http.StatusUnauthorized) }

// IsNotFound: the object does not exist.
func IsNotFound(err error) bool { return IsStatus(err, http.StatusNotFound) }

// ErrWatchEnded: the server ended the watch (its timeout); watch again.
var ErrWatchEnded = errors.New("watch ended")

// kubeconfig is the part of the machine's kubeconfig the agent uses (the
// manager writes it with one cluster, user and context).
type kubeconfig struct {
	CurrentContext string `json:"current-context"`
	Clusters       []struct {
		Name    string `json:"name"`
		Cluster struct {
			Server string `json:"server"`
			CAData []byte `json:"certificate-authority-data"`
		} `json:"cluster"`
	} `json:"clusters"`
	Users []struct {
		Name string `json:"name"`
		User struct {
			Token string `json:"token"`
		} `json:"user"`
	} `json:"users"`
	Contexts []struct {
		Name    string `json:"name"`
		Context struct {
			Cluster string `json:"cluster"`
			User    string `json:"user"`
		} `json:"context"`
	} `json:"contexts"`
}

// New reads the machine's kubeconfig (the manager writes it with one
// cluster, user and context: an https server, its CA and a bearer token).
func New(data []byte) (*Client, error) {
	var kc kubeconfig
	if err := yaml.Unmarshal(data, &kc); err != nil {
		return nil, fmt.Errorf("not a kubeconfig: %w", err)
	}
	clusterName, userName := "", ""
	for _, c := range kc.Contexts {
		if c.Name == kc.CurrentContext {
			clusterName, userName = c.Context.Cluster, c.Context.User
		}
	}
	c := &Client{}
	var ca []byte
	for _, cl := range kc.Clusters {
		if cl.Name == clusterName {
			c.server, ca = strings.TrimSuffix(cl.Cluster.Server, "/"), cl.Cluster.CAData
		}
	}
	for _, u := range kc.Users {
		if u.Name == userName {
			c.token = u.User.Token
		}
	}
	if u, err := url.Parse(c.server); err != nil || u.Scheme != "https" || c.token == "" {
		return nil, errors.New("the kubeconfig has no https server and token for its current context")
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	if len(ca) > 0 && !roots.AppendCertsFromPEM(ca) {
		return nil, errors.New("the kubeconfig's certificate-authority-data holds no PEM certificate")
	}
	c.http = &http.Client{Transport: &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		TLSClientConfig:     &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout: 10 * time.Second,
		IdleConnTimeout:     90 * time.Second,
	}}
	return c, nil
}

// Secret is the part of a Secret the node reads.
type Secret struct {
	Metadata struct {
		ResourceVersion string `json:"resourceVersion"`
	} `json:"metadata"`
	Data map[string][]byte `json:"data"`
}

func (c *Client) secretPath(ns string) string {
	return "/api/v1/namespaces/" + url.PathEscape(ns) + "/secrets"
}

// GetSecret reads one Secret by name.
func (c *Client) GetSecret(ctx context.Context, ns, name string) (*Secret, error) {
	s := &Secret{}
	return s, c.get(ctx, c.secretPath(ns)+"/"+url.PathEscape(name), "Secret "+name, s)
}

// get reads one object (at most 4 MiB) into out.
func (c *Client) get(ctx context.Context, path, what string, out any) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := c.do(ctx, http.MethodGet, path, "", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(out); err != nil {
		return fmt.Errorf("decoding %s: %w", what, err)
	}
	return nil
}

// WatchSecret watches the named Secret from resourceVersion rv (the
// credential allows a watch by name only) and calls fn for each version.
// It returns ErrWatchEnded when the server ends the watch, or a 410 when rv
// is too old.
func (c *Client) WatchSecret(ctx context.Context, ns, name, rv string, timeout time.Duration, fn func(*Secret)) error {
	q := url.Values{
		"watch":           {"1"},
		"fieldSelector":   {"metadata.name=" + name},
		"resourceVersion": {rv},
		"timeoutSeconds":  {fmt.Sprint(int(timeout.Seconds()))},
	}
	resp, err := c.do(ctx, http.MethodGet, c.secretPath(ns)+"?"+q.Encode(), "", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var ev struct {
			Type   string          `json:"type"`
			Object json.RawMessage `json:"object"`
		}
		if err := dec.Decode(&ev); err != nil {
			if errors.Is(err, io.EOF) {
				return ErrWatchEnded
			}
			return fmt.Errorf("reading the watch: %w", err)
		}
		switch ev.Type {
		case "ADDED", "MODIFIED":
			s := &Secret{}
			if err := json.Unmarshal(ev.Object, s); err != nil {
				return fmt.Errorf("decoding a watch event: %w", err)
			}
			fn(s)
		case "DELETED":
			return &APIError{Code: http.StatusNotFound, Message: "the plan Secret was deleted"}
		case "ERROR":
			e := &APIError{}
			if err := json.Unmarshal(ev.Object, e); err != nil || e.Code == 0 {
				return fmt.Errorf("watch error: %s", ev.Object)
			}
			return e
		}
	}
}

// InventoryStatus is the part of a MachineInventory the node reads
// before it reports: the generation and the conditions (to keep their
// transition times), decoded into the node's wire types.
type InventoryStatus struct {
	Metadata struct {
		Generation int64 `json:"generation"`
	} `json:"metadata"`
	Status struct {
		Conditions []nodestatus.Condition `json:"conditions"`
	} `json:"status"`
}

func inventoryPath(ns, name string) string {
	return "/apis/machines.edgefleet.io/v1alpha1/namespaces/" + url.PathEscape(ns) + "/machineinventories/" + url.PathEscape(name)
}

// GetInventory reads the machine's own MachineInventory.
func (c *Client) GetInventory(ctx context.Context, ns, name string) (*InventoryStatus, error) {
	inv := &InventoryStatus{}
	return inv, c.get(ctx, inventoryPath(ns, name), "MachineInventory "+name, inv)
}

// ApplyStatus server-side-applies status (the fields under "status") to
// the machine's MachineInventory as fieldManager. Server-side apply
// changes only the fields this manager sends and owns: the manager's
// fields and conditions, and other field managers' fields, stay.
func (c *Client) ApplyStatus(ctx context.Context, ns, name, fieldManager string, status map[string]any) error {
	body, err := json.Marshal(map[string]any{
		"apiVersion": "machines.edgefleet.io/v1alpha1",
		"kind":       "MachineInventory",
		"metadata":   map[string]any{"name": name, "namespace": ns},
		"status":     status,
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	p := inventoryPath(ns, name) + "/status?" + url.Values{"fieldManager": {fieldManager}, "force": {"true"}}.Encode()
	resp, err := c.do(ctx, http.MethodPatch, p, "application/apply-patch+yaml", body)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<20))
	resp.Body.Close()
	return nil
}

// do sends a request; an answer other than 2xx is an *APIError.
func (c *Client) do(ctx context.Context, method, path, contentType string, body []byte) (*http.Response, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.server+path, r)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "edgefleet-node")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	e := &APIError{}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(b, e) != nil || e.Code == 0 {
		e.Message = strings.TrimSpace(string(b))
	}
	e.Code = resp.StatusCode
	return nil, e
}
