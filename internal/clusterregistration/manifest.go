package clusterregistration

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"strings"
	"text/template"

	"github.com/google/go-containerregistry/pkg/name"
	"sigs.k8s.io/yaml"

	"github.com/edgefleet/edgefleet/internal/pki"
	"github.com/edgefleet/edgefleet/internal/version"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
)

// DefaultAgentImage runs edgefleet-agent in the import manifest's Deployment
// when neither --agent-image nor $EDGEFLEET_AGENT_IMAGE names one.
var DefaultAgentImage = "ghcr.io/edgefleet/edgefleet-agent:" + version.Version

// EnvAgentImage is the variable the manager's container image sets to the
// agent image built together with it, pinned by digest (make images), so a
// manager from an image hands out exactly that agent.
const EnvAgentImage = "EDGEFLEET_AGENT_IMAGE"

// AgentImageFromEnv is $EDGEFLEET_AGENT_IMAGE, else DefaultAgentImage.
func AgentImageFromEnv() string {
	if v := strings.TrimSpace(os.Getenv(EnvAgentImage)); v != "" {
		return v
	}
	return DefaultAgentImage
}

// ValidateAgentImage refuses what a kubelet could not pull: the reference
// goes verbatim into every import manifest.
func ValidateAgentImage(ref string) error {
	if _, err := name.ParseReference(ref, name.StrictValidation); err != nil {
		return fmt.Errorf("agent image %q is not a valid image reference (%v): give registry/repository:tag or registry/repository@sha256:<digest>", ref, err)
	}
	return nil
}

var manifestTemplate = template.Must(template.New("import").Parse(`# edgefleet import manifest: apply it to the cluster that should join.
# The agent pins the manager's CA by its sha256 and registers with the token.
apiVersion: v1
kind: Namespace
metadata:
  name: {{.Namespace}}
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{.AgentSA}}
  namespace: {{.Namespace}}
---
# The agent applies arbitrary bundles, so it needs broad rights.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: edgefleet-agent
rules:
- apiGroups: ["*"]
  resources: ["*"]
  verbs: ["*"]
- nonResourceURLs: ["*"]
  verbs: ["*"]
# Named on its own so it survives narrowing the rule above: a bundle with
# serviceAccount deploys as system:serviceaccount:{{.Namespace}}:<name>.
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["impersonate"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: edgefleet-agent
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: edgefleet-agent
subjects:
- kind: ServiceAccount
  name: {{.AgentSA}}
  namespace: {{.Namespace}}
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{.ImpersonatorSA}}
  namespace: {{.Namespace}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: edgefleet-impersonator
rules:
{{.ImpersonatorRules}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: edgefleet-impersonator
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: edgefleet-impersonator
subjects:
- kind: ServiceAccount
  name: {{.ImpersonatorSA}}
  namespace: {{.Namespace}}
---
apiVersion: v1
kind: Secret
metadata:
  name: {{.BootstrapSecret}}
  namespace: {{.Namespace}}
type: Opaque
stringData:
  {{.KeyServer}}: {{printf "%q" .Server}}
  {{.KeyToken}}: {{printf "%q" .Token}}
  {{.KeyCAChecksum}}: {{printf "%q" .CAChecksum}}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: edgefleet-agent
  namespace: {{.Namespace}}
spec:
  replicas: 1
  strategy:
    type: Recreate
  selector:
    matchLabels:
      app: edgefleet-agent
  template:
    metadata:
      labels:
        app: edgefleet-agent
    spec:
      serviceAccountName: {{.AgentSA}}
      tolerations:
      - key: node-role.kubernetes.io/control-plane
        operator: Exists
        effect: NoSchedule
      containers:
      - name: agent
        image: {{.Image}}
        args: ["run", "--server=$(EDGEFLEET_SERVER)", "--ca-checksum=$(EDGEFLEET_CA_CHECKSUM)"]
        env:
        - name: EDGEFLEET_SERVER
          valueFrom: {secretKeyRef: {name: {{.BootstrapSecret}}, key: {{.KeyServer}}}}
        - name: EDGEFLEET_TOKEN
          # optional: the agent erases the token once it has its own
          # credential, and reads it from this variable (not an argument,
          # which would keep the unexpanded reference).
          valueFrom: {secretKeyRef: {name: {{.BootstrapSecret}}, key: {{.KeyToken}}, optional: true}}
        - name: EDGEFLEET_CA_CHECKSUM
          valueFrom: {secretKeyRef: {name: {{.BootstrapSecret}}, key: {{.KeyCAChecksum}}}}
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          runAsNonRoot: true
          capabilities: {drop: ["ALL"]}
`))

// Manifest renders the import manifest for token.
func Manifest(server, token string, caPEM []byte, image string) ([]byte, error) {
	// The impersonator may only impersonate: the agent forwards the
	// manager's proxied requests with its token and the caller's identity in
	// Impersonate-* headers, so the downstream RBAC decides.
	rules, err := yaml.Marshal(clusterjoin.ImpersonatorRules)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	err = manifestTemplate.Execute(&buf, map[string]string{
		"Namespace": clusterjoin.SystemNamespace, "AgentSA": clusterjoin.AgentServiceAccount, "ImpersonatorSA": clusterjoin.ImpersonatorServiceAccount,
		"ImpersonatorRules": strings.TrimSpace(string(rules)), "BootstrapSecret": clusterjoin.BootstrapSecret,
		"KeyServer": clusterjoin.KeyServer, "KeyToken": clusterjoin.KeyToken, "KeyCAChecksum": clusterjoin.KeyCAChecksum,
		"Server": server, "Token": token, "CAChecksum": pki.Checksum(caPEM), "Image": image,
	})
	return buf.Bytes(), err
}

// importManifest: GET /v1/import/{file} with file "<token>.yaml".
func (h *handlers) importManifest(w http.ResponseWriter, r *http.Request) {
	token, ok := strings.CutSuffix(r.PathValue("file"), ".yaml")
	if !ok {
		writeError(w, http.StatusNotFound, "import manifests are served at %s<token>.yaml", clusterjoin.ImportPathPrefix)
		return
	}
	if _, err := h.LookupToken(r.Context(), token); err != nil {
		writeError(w, http.StatusUnauthorized, "%v", errInvalidToken)
		return
	}
	out, err := Manifest(h.externalURL.String(), token, h.caPEM, h.agentImage)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "rendering import manifest: %v", err)
		return
	}
	w.Header().Set("Content-Type", "application/yaml")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(out)
}
