/*
Copyright 2026 The edgefleet Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package crds

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"
)

// TestInstallEnvtest installs the CRDs into a real API server and checks that
// they accept valid objects, reject invalid ones and print the expected
// columns. It runs only when KUBEBUILDER_ASSETS points at kube-apiserver and
// etcd binaries (hack/build-kube.sh builds them).
func TestInstallEnvtest(t *testing.T) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Skip("KUBEBUILDER_ASSETS not set")
	}
	env := &envtest.Environment{}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting envtest: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	for i := range 2 { // the second run upgrades in place
		if err := Install(ctx, c, testr.New(t)); err != nil {
			t.Fatalf("Install() run %d = %v", i+1, err)
		}
	}

	valid := map[string]string{
		"Bundle": `
apiVersion: fleet.edgefleet.io/v1alpha1
kind: Bundle
metadata: {name: b1}
spec:
  defaultNamespace: app
  helm:
    chart: ./chart
    releaseName: my-release
    values: {replicas: 3, image: {tag: "{{ .ClusterLabels.env }}"}}
    valuesFrom: [{secretKeyRef: {name: s, key: values.yaml}}]
  resources: [{name: a.yaml, content: "H4sI", encoding: "base64+gz"}, {name: b.yaml, content: "kind: ConfigMap"}]
  rolloutStrategy: {maxUnavailable: 10%, autoPartitionSize: 5, partitions: [{name: canary, clusterSelector: {matchLabels: {canary: "true"}}}]}
  targets:
  - {name: prod, clusterSelector: {matchLabels: {env: prod}}, helm: {values: {replicas: 5}}}
  - {clusterGroup: edge, doNotDeploy: true}
  dependsOn: [{name: other, acceptedStates: [Ready, Modified]}, {selector: {matchLabels: {tier: db}}}]
  diff: {comparePatches: [{apiVersion: v1, kind: Service, name: s, jsonPointers: ["/spec/clusterIP"], operations: [{op: remove, path: /x}]}]}
  ignore: {conditions: [{type: Progressing, status: "False"}]}
  correctDrift: {enabled: true}`,
		"BundleDeployment": `
apiVersion: fleet.edgefleet.io/v1alpha1
kind: BundleDeployment
metadata: {name: bd1}
spec: {deploymentID: "s-abc:123", stagedDeploymentID: "s-abc:123", options: {helm: {values: {a: 1}}}, bundleName: b1}`,
		"Cluster": `
apiVersion: fleet.edgefleet.io/v1alpha1
kind: Cluster
metadata: {name: c1, labels: {env: prod}}
spec: {clientID: abc, templateValues: {region: eu, nested: {a: 1}}}`,
		"ClusterGroup": `
apiVersion: fleet.edgefleet.io/v1alpha1
kind: ClusterGroup
metadata: {name: g1}
spec: {selector: {}}`,
		"Bundle with Fleet's newer fields": `
apiVersion: fleet.edgefleet.io/v1alpha1
kind: Bundle
metadata: {name: b-fleet}
spec:
  helm: {releaseName: shop.web, disableDNS: true, disableDependencyUpdate: true, templateValues: {a: "${ .ClusterName }"}}
  deleteCRDResources: true
  createNamespace: true
  downstreamResources: [{kind: Secret, name: s}]
  rolloutStrategy: {autoPartitionThreshold: 10, maxNew: 5}
  targetCustomizationMode: AllMatches`,
		"ClusterRegistrationToken": `
apiVersion: fleet.edgefleet.io/v1alpha1
kind: ClusterRegistrationToken
metadata: {name: t1}
spec: {ttl: 240h}`,
		"GitRepo": `
apiVersion: fleet.edgefleet.io/v1alpha1
kind: GitRepo
metadata: {name: r1}
spec: {repo: "https://example.com/fleet-examples", paths: [simple], pollingInterval: 1m30s, targets: [{clusterSelector: {}}]}`,
		"GitRepoRestriction as Fleet writes it": `
apiVersion: fleet.edgefleet.io/v1alpha1
kind: GitRepoRestriction
metadata: {name: grr1}
allowedServiceAccounts: [deployer]
allowedRepoPatterns: ["^https://github\\.com/team-a/"]
allowedClientSecretNames: [git-creds]
allowedTargetNamespaces: [team-a]
defaultServiceAccount: deployer
defaultClientSecretName: git-creds`,
		"BundleNamespaceMapping as Fleet writes it": `
apiVersion: fleet.edgefleet.io/v1alpha1
kind: BundleNamespaceMapping
metadata: {name: bnm1}
bundleSelector: {matchLabels: {shared: "true"}}
namespaceSelector: {matchExpressions: [{key: tenant, operator: Exists}]}`,
		"HelmOp as Fleet writes it": `
apiVersion: fleet.edgefleet.io/v1alpha1
kind: HelmOp
metadata: {name: ho1}
spec:
  helm: {repo: "https://charts.example.com", chart: podinfo, version: ^6.0.0, releaseName: podinfo, values: {replicaCount: 2}, valuesFrom: [{secretKeyRef: {name: s, key: values.yaml}}]}
  defaultNamespace: podinfo
  serviceAccount: deployer
  pollingInterval: 5m
  helmSecretName: repo-creds
  insecureSkipTLSVerify: false
  labels: {team: web}
  targets: [{name: dev, clusterSelector: {matchLabels: {env: dev}}, helm: {values: {replicaCount: 1}}}]
  rolloutStrategy: {maxUnavailable: 10%}`,
		"MachineRegistration": `
apiVersion: machines.edgefleet.io/v1alpha1
kind: MachineRegistration
metadata: {name: mr1}
spec:
  machineName: "m-${System Information/UUID}"
  machineInventoryLabels: {manufacturer: "${System Information/Manufacturer}"}
  config:
    cloud-config: {users: [{name: root, passwd: root}]}
    install: {device-selector: [{key: Size, operator: Gt, values: [10Gi]}], reboot: true, system-uri: "oci:example.com/os:v1"}
    registration: {auth: tpm-or-fallback, fallback: [emulated-tpm, mac], emulated-tpm-seed: -1}`,
		"MachineInventory": `
apiVersion: machines.edgefleet.io/v1alpha1
kind: MachineInventory
metadata: {name: mi1, labels: {machines.edgefleet.io/manufacturer: Acme, machines.edgefleet.io/arch: arm64}}
spec: {tpmHash: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", registrationRef: {name: mr1}}`,
		"SeedImage": `
apiVersion: machines.edgefleet.io/v1alpha1
kind: SeedImage
metadata: {name: si1}
spec: {registrationRef: {name: mr1}, type: raw, cleanupAfterMinutes: 0, cloud-config: {a: b}}`,
	}
	for kind, manifest := range valid {
		if err := c.Create(ctx, fromYAML(t, manifest)); err != nil {
			t.Errorf("creating a valid %s: %v", kind, err)
		}
	}

	invalid := map[string]string{
		"dependsOn without name or selector":      `{apiVersion: fleet.edgefleet.io/v1alpha1, kind: Bundle, metadata: {name: x1}, spec: {dependsOn: [{}]}}`,
		"unknown resource encoding":               `{apiVersion: fleet.edgefleet.io/v1alpha1, kind: Bundle, metadata: {name: x2}, spec: {resources: [{encoding: gzip}]}}`,
		"valuesFrom with two sources":             `{apiVersion: fleet.edgefleet.io/v1alpha1, kind: Bundle, metadata: {name: x3}, spec: {helm: {valuesFrom: [{secretKeyRef: {name: a}, configMapKeyRef: {name: b}}]}}}`,
		"GitRepo without repo":                    `{apiVersion: fleet.edgefleet.io/v1alpha1, kind: GitRepo, metadata: {name: x4}, spec: {branch: main}}`,
		"ttl that is not a duration":              `{apiVersion: fleet.edgefleet.io/v1alpha1, kind: ClusterRegistrationToken, metadata: {name: x5}, spec: {ttl: 1 week}}`,
		"fallback without tpm-or-fallback":        `{apiVersion: machines.edgefleet.io/v1alpha1, kind: MachineRegistration, metadata: {name: x6}, spec: {config: {registration: {fallback: [mac]}}}}`,
		"tpmHash that is not a hash":              `{apiVersion: machines.edgefleet.io/v1alpha1, kind: MachineInventory, metadata: {name: x7}, spec: {tpmHash: xyz}}`,
		"SeedImage without registrationRef":       `{apiVersion: machines.edgefleet.io/v1alpha1, kind: SeedImage, metadata: {name: x8}, spec: {type: iso}}`,
		"releaseName that is not a DNS subdomain": `{apiVersion: fleet.edgefleet.io/v1alpha1, kind: Bundle, metadata: {name: x9}, spec: {helm: {releaseName: Shop_Web}}}`,
		"tpm-or-fallback without fallback":        `{apiVersion: machines.edgefleet.io/v1alpha1, kind: MachineRegistration, metadata: {name: x10}, spec: {config: {registration: {auth: tpm-or-fallback}}}}`,
		"unknown targetCustomizationMode":         `{apiVersion: fleet.edgefleet.io/v1alpha1, kind: Bundle, metadata: {name: x11}, spec: {targetCustomizationMode: SomeMatches}}`,
	}
	for name, manifest := range invalid {
		if err := c.Create(ctx, fromYAML(t, manifest)); err == nil {
			t.Errorf("%s: accepted, want rejected", name)
		}
	}

	// The -o wide label columns of MachineInventory, as the server prints them.
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		strings.TrimSuffix(cfg.Host, "/")+"/apis/machines.edgefleet.io/v1alpha1/namespaces/default/machineinventories/mi1", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var table metav1.Table
	if err := json.Unmarshal(body, &table); err != nil || len(table.Rows) != 1 {
		t.Fatalf("reading table (%v): %s", err, body)
	}
	cells := map[string]any{}
	for i, col := range table.ColumnDefinitions {
		cells[col.Name] = table.Rows[0].Cells[i]
	}
	if cells["Manufacturer"] != "Acme" || cells["Arch"] != "arm64" || cells["Product"] != nil {
		t.Errorf("label columns = %v, want Manufacturer=Acme Arch=arm64", cells)
	}
}

func fromYAML(t *testing.T, manifest string) *unstructured.Unstructured {
	t.Helper()
	obj := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(manifest), &obj.Object); err != nil {
		t.Fatalf("parsing %s: %v", manifest, err)
	}
	obj.SetNamespace("default")
	return obj
}
