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
{{template "deployment" .}}`))

// deploymentTemplate is the agent's Deployment, the same in the import
// manifest and in the agent bundle the manager upgrades agents with
// (AgentDeployment), so taking a cluster over changes nothing but the image.
var _ = template.Must(manifestTemplate.New("deployment").Parse(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{.DeploymentName}}
  namespace: {{.Namespace}}
spec:
  replicas: 1
  # A new agent replaces the old one only once it is Ready, i.e. has
  # checked in with the manager (/readyz): a broken new agent leaves the old
  # one running, which applies the rollback (docs/operations.md).
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}
  selector:
    matchLabels:
      app: edgefleet-agent
  template:
    metadata:
      labels:
        app: edgefleet-agent
    spec:
      serviceAccountName: {{.AgentSA}}
      # Preferred, not required: on a control-plane node the agent keeps
      # reporting when a site's workers lose their network (else the whole
      # cluster reads unreachable); clusters without such nodes run it
      # anywhere. An agent scheduled on a worker while the control-plane
      # nodes were not ready moves itself once one is.
      affinity:
        nodeAffinity:
          preferredDuringSchedulingIgnoredDuringExecution:
          - weight: 100
            preference:
              matchExpressions:
              - {key: {{.ControlPlaneLabel}}, operator: Exists}
      tolerations:
      - key: {{.ControlPlaneLabel}}
        operator: Exists
        effect: NoSchedule
      # Off a dead node in 30 s, not Kubernetes' default 5 minutes: while
      # the agent's node is unreachable so is the cluster for the manager,
      # and its health checks cannot judge any machine (a dead server of
      # three that ran the agent would block remediation and scale-down).
      - key: node.kubernetes.io/unreachable
        operator: Exists
        effect: NoExecute
        tolerationSeconds: 30
      - key: node.kubernetes.io/not-ready
        operator: Exists
        effect: NoExecute
        tolerationSeconds: 30
      containers:
      - name: agent
        image: {{.Image}}
        args: ["run", "--server=$(EDGEFLEET_SERVER)", "--ca-checksum=$(EDGEFLEET_CA_CHECKSUM)"]
        env:
        # Variables, not flags: an older agent image ignores them, so this
        # Deployment can roll back to one.
        - name: {{.EnvImage}}
          value: {{printf "%q" .Image}}
        - name: {{.EnvProbe}}
          value: ":8081"
        - name: {{.EnvPodName}}
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
        - name: {{.EnvPodNamespace}}
          valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
        - name: EDGEFLEET_SERVER
          valueFrom: {secretKeyRef: {name: {{.BootstrapSecret}}, key: {{.KeyServer}}}}
        - name: EDGEFLEET_TOKEN
          # optional: the agent erases the token once it has its own
          # credential, and reads it from this variable (not an argument,
          # which would keep the unexpanded reference).
          valueFrom: {secretKeyRef: {name: {{.BootstrapSecret}}, key: {{.KeyToken}}, optional: true}}
        - name: EDGEFLEET_CA_CHECKSUM
          valueFrom: {secretKeyRef: {name: {{.BootstrapSecret}}, key: {{.KeyCAChecksum}}}}
        readinessProbe:
          httpGet: {path: /readyz, port: 8081}
          periodSeconds: 5
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
	values := deploymentValues(image)
	values["ImpersonatorSA"] = clusterjoin.ImpersonatorServiceAccount
	values["ImpersonatorRules"] = strings.TrimSpace(string(rules))
	values["Server"], values["Token"], values["CAChecksum"] = server, token, pki.Checksum(caPEM)
	var buf bytes.Buffer
	err = manifestTemplate.Execute(&buf, values)
	return buf.Bytes(), err
}

// AgentDeployment is the agent's Deployment alone, running image: the
// content of the agent bundle through which the manager upgrades agents.
// It relies on the rest of the import manifest (namespace, service
// account, bootstrap Secret) being in place.
func AgentDeployment(image string) ([]byte, error) {
	var buf bytes.Buffer
	err := manifestTemplate.ExecuteTemplate(&buf, "deployment", deploymentValues(image))
	return buf.Bytes(), err
}

func deploymentValues(image string) map[string]string {
	return map[string]string{
		"Namespace": clusterjoin.SystemNamespace, "AgentSA": clusterjoin.AgentServiceAccount, "DeploymentName": clusterjoin.AgentDeployment,
		"BootstrapSecret": clusterjoin.BootstrapSecret, "EnvImage": clusterjoin.EnvAgentImage, "EnvProbe": clusterjoin.EnvHealthProbeAddress,
		"EnvPodName": clusterjoin.EnvPodName, "EnvPodNamespace": clusterjoin.EnvPodNamespace, "ControlPlaneLabel": clusterjoin.ControlPlaneNodeLabel,
		"KeyServer": clusterjoin.KeyServer, "KeyToken": clusterjoin.KeyToken, "KeyCAChecksum": clusterjoin.KeyCAChecksum,
		"Image": image,
	}
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
