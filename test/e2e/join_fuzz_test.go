package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/clusterregistration"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
	"github.com/edgefleet/edgefleet/test/harness"
)

// joinFuzzEnv is one manager shared by every input of a fuzzing process:
// the join routes are fuzzed as an attacker reaches them, over HTTPS.
type joinFuzzEnv struct {
	m     *harness.Manager
	token string
}

// FuzzJoinRoutes sends hostile registrations and import requests to a real
// manager. Whatever arrives, the manager answers with a client error or a
// credential, never a server error or a crash; a Cluster it creates carries
// only valid, unreserved labels; and an import manifest is served only for
// the real token. The seed inputs run in every `go test`; `go test -fuzz
// FuzzJoinRoutes ./test/e2e` explores further.
func FuzzJoinRoutes(f *testing.F) {
	f.Add([]byte(`{"token":"x","clientID":"y"}`), false, "c1", "env", "dev", "abc")
	f.Add([]byte(`{`), false, "", "", "", "")
	f.Add([]byte(strings.Repeat("[", 70000)), false, "", "", "", "../../etc/passwd")
	f.Add([]byte(`{"token":null,"labels":{"a":1}}`), false, "", "", "", "%00")
	f.Add([]byte(nil), true, "good-cluster", "env", "prod", "")
	f.Add([]byte(nil), true, "reserved-labels", "fleet.edgefleet.io/cluster", "takeover", "")
	f.Add([]byte(nil), true, "edgefleet-label", "edgefleet.io/anything", "x", "")
	f.Add([]byte(nil), true, strings.Repeat("a", 300), "k", "v", "")
	f.Add([]byte(nil), true, "bad-label", "a/b/c", strings.Repeat("v", 100), "")
	f.Add([]byte(nil), true, "unicode-\u202e", "k\u0000", "\u00e9", "")
	env := startJoinFuzz(f)
	f.Fuzz(func(t *testing.T, body []byte, validToken bool, clientID, labelKey, labelValue, importToken string) {
		if validToken {
			body, _ = json.Marshal(clusterjoin.RegisterRequest{Token: env.token, ClientID: clientID, Labels: map[string]string{labelKey: labelValue}})
		}
		status, answer := postRegister(t, env.m, body)
		if status >= 500 || status == 0 {
			t.Fatalf("register answered %d: %s", status, answer)
		}
		if status == http.StatusOK {
			if !validToken {
				t.Fatalf("a registration without the token was accepted: %s", answer)
			}
			checkRegisteredCluster(t, env.m, answer, labelKey, labelValue)
		}

		p := clusterjoin.ImportPathPrefix + url.PathEscape(importToken) + ".yaml"
		resp, err := env.m.HTTP.Get(env.m.URL + p)
		if err != nil {
			t.Fatalf("import %q: %v", p, err)
		}
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Fatalf("import %q answered %d: %s", p, resp.StatusCode, data)
		}
		if resp.StatusCode == http.StatusOK && importToken != env.token {
			t.Fatalf("import %q served a manifest for a token that is not the registration token", p)
		}
	})
	// The manager survived every input.
	resp, err := env.m.HTTP.Get(env.m.URL + "/readyz")
	if err != nil {
		f.Fatalf("manager not ready after the inputs: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		f.Fatalf("manager not ready after the inputs: %s", resp.Status)
	}
}

// startJoinFuzz starts the manager every input of this process shares. The
// join rate limit is off: the fuzzer is one source sending as fast as it can.
func startJoinFuzz(f *testing.F) *joinFuzzEnv {
	m := harness.StartManager(f, harness.ManagerOptions{Args: []string{"--join-rate-limit=-1"}})
	if err := m.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fleetNS}}); err != nil {
		f.Fatal(err)
	}
	out, err := exec.Command(harness.EdgefleetBinary(f), "token", "create", "--kubeconfig", m.Kubeconfig, "-n", fleetNS, "--ttl", "1h").CombinedOutput()
	g := tokenLine.FindStringSubmatch(string(out))
	if err != nil || g == nil {
		f.Fatalf("edgefleet token create: %v\n%s", err, out)
	}
	return &joinFuzzEnv{m: m, token: g[3]}
}

func postRegister(t *testing.T, m *harness.Manager, body []byte) (int, []byte) {
	t.Helper()
	resp, err := m.HTTP.Post(m.URL+clusterjoin.RegisterPath, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, data
}

// checkRegisteredCluster: an agent's labels are proposals; the Cluster keeps
// only valid keys and values outside the reserved domain.
func checkRegisteredCluster(t *testing.T, m *harness.Manager, answer []byte, key, value string) {
	t.Helper()
	var r clusterjoin.RegisterResponse
	if err := json.Unmarshal(answer, &r); err != nil || r.Token == "" || r.ClusterName == "" {
		t.Fatalf("a 200 without a credential: %s", answer)
	}
	var c fleetv1.Cluster
	if err := m.Client.Get(context.Background(), client.ObjectKey{Namespace: r.ClusterNamespace, Name: r.ClusterName}, &c); err != nil {
		t.Fatalf("registered cluster %s/%s: %v", r.ClusterNamespace, r.ClusterName, err)
	}
	// The token's own group label is the manager's, whatever the agent said.
	tokenGroup := key == fleetv1.GroupLabelPrefix+fleetv1.DefaultClusterGroup && value == "true"
	if clusterregistration.Reserved(key) && c.Labels[key] == value && !tokenGroup {
		t.Fatalf("cluster %s took the reserved label %q=%q from the agent", c.Name, key, value)
	}
	for k, v := range c.Labels {
		if len(validation.IsQualifiedName(k)) > 0 || len(validation.IsValidLabelValue(v)) > 0 {
			t.Fatalf("cluster %s carries invalid label %q=%q", c.Name, k, v)
		}
	}
}
