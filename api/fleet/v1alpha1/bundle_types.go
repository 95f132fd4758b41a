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

package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// BundleState is the deployment state of a bundle on one cluster. It is
// derived by the manager from the BundleDeployment, never reported by the
// agent.
// +kubebuilder:validation:Enum=Ready;NotReady;Pending;OutOfSync;Modified;WaitApplied;ErrApplied
type BundleState string

const (
	// Ready: the current deployment is applied, its resources are ready and
	// unmodified.
	Ready BundleState = "Ready"
	// NotReady: the current deployment is applied but some resources are not
	// ready.
	NotReady BundleState = "NotReady"
	// Pending: a target cluster was matched but no BundleDeployment exists yet.
	Pending BundleState = "Pending"
	// OutOfSync: a newer deployment is staged but held back by pause or by
	// the rollout strategy.
	OutOfSync BundleState = "OutOfSync"
	// Modified: deployed resources drifted from the desired state.
	Modified BundleState = "Modified"
	// WaitApplied: the agent has not applied the current deployment yet.
	WaitApplied BundleState = "WaitApplied"
	// ErrApplied: the agent failed to apply the current deployment.
	ErrApplied BundleState = "ErrApplied"
)

// StateRank orders bundle states from best (1) to worst (7). The state shown
// for an aggregate is the worst state among its members.
var StateRank = map[BundleState]int{
	Ready:       1,
	NotReady:    2,
	Pending:     3,
	OutOfSync:   4,
	Modified:    5,
	WaitApplied: 6,
	ErrApplied:  7,
}

// BundleResourceEncodingBase64Gzip marks a BundleResource whose content is
// gzip-compressed and then base64-encoded.
const BundleResourceEncodingBase64Gzip = "base64+gz"

// Bundle is a unit of deployment: a set of Kubernetes manifests (raw YAML, a
// Helm chart or a Kustomize directory) plus the rules that decide which
// clusters receive it and how. The manager renders one BundleDeployment per
// matched cluster. Bundles are usually created by a GitRepo or by
// `edgefleet apply`.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,categories={edgefleet,fleet}
// +kubebuilder:printcolumn:name="Ready-Clusters",type=string,JSONPath=`.status.display.readyClusters`
// +kubebuilder:printcolumn:name="State",type=string,JSONPath=`.status.display.state`
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Bundle struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec describes the bundle's content, its targets and how it is rolled
	// out.
	// +optional
	Spec BundleSpec `json:"spec,omitzero"`

	// status is the observed state of the bundle across its target clusters.
	// +optional
	Status BundleStatus `json:"status,omitzero"`
}

// BundleSpec is the desired state of a Bundle.
type BundleSpec struct {
	// Options that apply to every target unless a target overrides them.
	BundleDeploymentOptions `json:",inline"`

	// paused stops rollouts of this bundle: new content is staged on each
	// BundleDeployment but not deployed, and the bundle shows OutOfSync.
	// +optional
	Paused bool `json:"paused,omitempty"`

	// rolloutStrategy limits how many clusters are updated at once. When unset,
	// every target is updated at once.
	// +optional
	RolloutStrategy *RolloutStrategy `json:"rolloutStrategy,omitempty"`

	// resources are the bundle's manifests, stored inline. Keep this small:
	// large content belongs in content-addressed storage, see contentsID.
	// Compatible with Rancher Fleet's Bundle resources.
	// +optional
	// +listType=atomic
	Resources []BundleResource `json:"resources,omitempty"`

	// contentsID references the bundle's manifests in the manager's
	// content-addressed storage. It is filled in by `edgefleet apply`; when
	// set, resources is ignored.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	ContentsID string `json:"contentsID,omitempty"`

	// targets select the clusters that receive this bundle and customize the
	// deployment per cluster. For each cluster the first matching target
	// wins; a target with no selection criteria matches nothing, while an
	// empty clusterSelector ({}) matches every cluster.
	// +optional
	// +listType=atomic
	Targets []BundleTarget `json:"targets,omitempty"`

	// targetRestrictions, when non-empty, is an allow-list: a cluster only
	// receives the bundle if it matches at least one restriction as well as a
	// target. It is filled in from the GitRepo's targets by `edgefleet apply`.
	// +optional
	// +listType=atomic
	TargetRestrictions []BundleTargetRestriction `json:"targetRestrictions,omitempty"`

	// dependsOn lists bundles that must be in an accepted state on a cluster
	// before this bundle is deployed to that cluster.
	// +optional
	// +listType=atomic
	DependsOn []BundleRef `json:"dependsOn,omitempty"`

	// targetCustomizationMode decides how target customizations apply to a
	// cluster: FirstMatch (the default) merges the first customization that
	// matches; AllMatches merges every matching one in list order, and a
	// doNotDeploy in any of them wins. Fleet's field (v0.16).
	// +optional
	// +kubebuilder:validation:Enum=FirstMatch;AllMatches
	TargetCustomizationMode TargetCustomizationMode `json:"targetCustomizationMode,omitempty"`
}

// TargetCustomizationMode is how target customizations are applied.
type TargetCustomizationMode string

const (
	// FirstMatch applies the first matching customization (the default).
	FirstMatch TargetCustomizationMode = "FirstMatch"
	// AllMatches applies every matching customization, in order.
	AllMatches TargetCustomizationMode = "AllMatches"
)

// BundleResource is one manifest file of a bundle.
type BundleResource struct {
	// name is the file's path inside the bundle, e.g. "deploy/app.yaml" or
	// "chart/Chart.yaml".
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Name string `json:"name,omitempty"`

	// content is the file's content, encoded as given by encoding.
	// +optional
	Content string `json:"content,omitempty"`

	// encoding of content: "" (plain text, the default) or "base64+gz"
	// (gzip-compressed, then base64-encoded).
	// +optional
	// +kubebuilder:validation:Enum="";"base64+gz"
	Encoding string `json:"encoding,omitempty"`
}

// RolloutStrategy controls how a bundle's changes spread over its clusters.
// Clusters are split into partitions that are updated in order.
type RolloutStrategy struct {
	// maxUnavailable is the number or percentage of target clusters that may
	// be unavailable (not Ready) at any time during a rollout before it pauses.
	// Defaults to 100%.
	// +optional
	MaxUnavailable *intstr.IntOrString `json:"maxUnavailable,omitempty"`

	// maxUnavailablePartitions is the number or percentage of partitions that
	// may be unavailable at any time before the rollout pauses. Defaults to 0.
	// +optional
	MaxUnavailablePartitions *intstr.IntOrString `json:"maxUnavailablePartitions,omitempty"`

	// autoPartitionSize is the number or percentage of clusters per
	// automatically created partition, used when partitions is empty.
	// Defaults to 25%.
	// +optional
	AutoPartitionSize *intstr.IntOrString `json:"autoPartitionSize,omitempty"`

	// autoPartitionThreshold is the number of target clusters from which
	// automatic partitioning applies: with fewer targets every cluster is in
	// one partition named "All". Defaults to 200.
	// +optional
	// +kubebuilder:validation:Minimum=0
	AutoPartitionThreshold *int32 `json:"autoPartitionThreshold,omitempty"`

	// maxNew is the most BundleDeployments the manager creates for this
	// bundle in one reconcile; the rest are created in the following ones.
	// When unset there is no cap (Fleet's default is 50).
	// +optional
	// +kubebuilder:validation:Minimum=1
	MaxNew *int32 `json:"maxNew,omitempty"`

	// partitions defines the partitions explicitly, in rollout order. A
	// cluster belongs to the first partition it matches.
	// +optional
	// +listType=atomic
	Partitions []Partition `json:"partitions,omitempty"`
}

// Partition is a group of clusters that is rolled out together.
type Partition struct {
	// name of the partition, shown in the bundle's status.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name,omitempty"`

	// maxUnavailable is the number or percentage of this partition's clusters
	// that may be unavailable before the partition counts as unavailable.
	// Defaults to the rollout strategy's maxUnavailable.
	// +optional
	MaxUnavailable *intstr.IntOrString `json:"maxUnavailable,omitempty"`

	// clusterName selects a single Cluster by name.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	ClusterName string `json:"clusterName,omitempty"`

	// clusterSelector selects Clusters by label.
	// +optional
	ClusterSelector *metav1.LabelSelector `json:"clusterSelector,omitempty"`

	// clusterGroup selects the Clusters of the named ClusterGroup.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	ClusterGroup string `json:"clusterGroup,omitempty"`

	// clusterGroupSelector selects the Clusters of every ClusterGroup whose
	// labels match.
	// +optional
	ClusterGroupSelector *metav1.LabelSelector `json:"clusterGroupSelector,omitempty"`
}

// BundleTarget selects clusters and, optionally, customizes how the bundle is
// deployed to them. All criteria set in one target must match (they are
// ANDed).
type BundleTarget struct {
	// Per-target customization, merged over the bundle's options: scalars
	// replace the bundle's value when set, Helm values are deep-merged and
	// boolean flags are ORed.
	BundleDeploymentOptions `json:",inline"`

	// name of the target, used in status and by targetRestrictions. Unnamed
	// targets are named target000, target001, ... in order.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name,omitempty"`

	// clusterName selects a single Cluster by name.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	ClusterName string `json:"clusterName,omitempty"`

	// clusterSelector selects Clusters by label. An empty selector ({})
	// matches every cluster.
	// +optional
	ClusterSelector *metav1.LabelSelector `json:"clusterSelector,omitempty"`

	// clusterGroup selects the Clusters of the named ClusterGroup.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	ClusterGroup string `json:"clusterGroup,omitempty"`

	// clusterGroupSelector selects the Clusters of every ClusterGroup whose
	// labels match.
	// +optional
	ClusterGroupSelector *metav1.LabelSelector `json:"clusterGroupSelector,omitempty"`

	// doNotDeploy excludes the clusters matched by this target: they receive
	// nothing, even if a later target matches them too.
	// +optional
	DoNotDeploy bool `json:"doNotDeploy,omitempty"`
}

// BundleTargetRestriction is an allow-list entry limiting which clusters a
// bundle may target. All criteria set in one entry must match.
type BundleTargetRestriction struct {
	// name of the restriction, usually the name of the GitRepo target it was
	// copied from.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name,omitempty"`

	// clusterName allows a single Cluster by name.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	ClusterName string `json:"clusterName,omitempty"`

	// clusterSelector allows Clusters by label.
	// +optional
	ClusterSelector *metav1.LabelSelector `json:"clusterSelector,omitempty"`

	// clusterGroup allows the Clusters of the named ClusterGroup.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	ClusterGroup string `json:"clusterGroup,omitempty"`

	// clusterGroupSelector allows the Clusters of every ClusterGroup whose
	// labels match.
	// +optional
	ClusterGroupSelector *metav1.LabelSelector `json:"clusterGroupSelector,omitempty"`
}

// BundleRef refers to other bundles in the same namespace, by name or by
// label selector. Dependencies are evaluated per cluster.
// +kubebuilder:validation:XValidation:rule="has(self.name) || has(self.selector)",message="one of name or selector must be set"
type BundleRef struct {
	// name of the Bundle depended on.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name,omitempty"`

	// selector selects the Bundles depended on by label. Used when name is
	// empty.
	// +optional
	Selector *metav1.LabelSelector `json:"selector,omitempty"`

	// acceptedStates are the states the dependency may be in on a cluster for
	// this bundle to proceed there. Defaults to [Ready].
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=7
	AcceptedStates []BundleState `json:"acceptedStates,omitempty"`
}

// BundleDeploymentOptions describe how a bundle is deployed to a cluster.
// They can be set on the Bundle and overridden per target.
type BundleDeploymentOptions struct {
	// defaultNamespace is the namespace used for namespaced resources that do
	// not set one. Defaults to "default".
	// +optional
	// +kubebuilder:validation:MaxLength=63
	DefaultNamespace string `json:"defaultNamespace,omitempty"`

	// namespace forces every resource of the bundle into this namespace.
	// Deployment fails if the bundle contains cluster-scoped resources. In a
	// target customization, "-" clears the value set on the bundle.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace,omitempty"`

	// namespaceLabels are added to the target namespace.
	// +optional
	NamespaceLabels map[string]string `json:"namespaceLabels,omitempty"`

	// namespaceAnnotations are added to the target namespace.
	// +optional
	NamespaceAnnotations map[string]string `json:"namespaceAnnotations,omitempty"`

	// serviceAccount is the ServiceAccount, in the agent's namespace
	// (edgefleet-system) of the downstream cluster, that the agent
	// impersonates for every write of the bundle (apply, prune, delete, Helm
	// install/upgrade/rollback/uninstall). If it does not exist the
	// deployment fails and says so; it never falls back to the agent's own
	// identity. When empty the agent uses its own identity. In a target
	// customization, "-" clears the value set on the bundle.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	ServiceAccount string `json:"serviceAccount,omitempty"`

	// keepResources leaves the deployed resources in place when the bundle is
	// deleted or stops targeting the cluster.
	// +optional
	KeepResources bool `json:"keepResources,omitempty"`

	// forceSyncGeneration is part of the deployment ID: changing it (e.g. a
	// GitRepo's forceSyncGeneration, copied here) redeploys the bundle on
	// every cluster even when nothing else changed.
	// +optional
	ForceSyncGeneration int64 `json:"forceSyncGeneration,omitempty"`

	// deleteNamespace deletes the namespace created for the bundle when the
	// bundle is removed from the cluster.
	// +optional
	DeleteNamespace bool `json:"deleteNamespace,omitempty"`

	// deleteCRDResources deletes the CustomResourceDefinitions the bundle
	// deployed when the bundle is removed from the cluster (or stops
	// deploying them), and with them every custom resource of their kinds
	// in the cluster. By default, as in Fleet, CRDs are kept.
	// +optional
	DeleteCRDResources bool `json:"deleteCRDResources,omitempty"`

	// helm configures deployment of a Helm chart and the Helm release used
	// for the bundle.
	// +optional
	Helm *HelmOptions `json:"helm,omitempty"`

	// kustomize configures a Kustomize build of the bundle's manifests.
	// +optional
	Kustomize *KustomizeOptions `json:"kustomize,omitempty"`

	// yaml configures overlays for raw YAML bundles.
	// +optional
	YAML *YAMLOptions `json:"yaml,omitempty"`

	// diff configures which differences between desired and live resources
	// are ignored when deciding whether a deployment is Modified.
	// +optional
	Diff *DiffOptions `json:"diff,omitempty"`

	// correctDrift reverts changes made to deployed resources outside of
	// edgefleet.
	// +optional
	CorrectDrift *CorrectDrift `json:"correctDrift,omitempty"`

	// ignore configures which resource status conditions are ignored when
	// computing readiness.
	// +optional
	Ignore *IgnoreOptions `json:"ignore,omitempty"`

	// createNamespace is accepted for Fleet compatibility: the agent always
	// creates the bundle's target namespace when it does not exist.
	// +optional
	CreateNamespace bool `json:"createNamespace,omitempty"`

	// downstreamResources are Secrets and ConfigMaps in the bundle's
	// namespace to copy to the downstream cluster (Fleet's experimental
	// field). Carried but not acted on yet: edgefleet does not copy them.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	DownstreamResources []DownstreamResource `json:"downstreamResources,omitempty"`
}

// DownstreamResource names a Secret or ConfigMap to copy downstream.
type DownstreamResource struct {
	// kind is Secret or ConfigMap.
	// +optional
	// +kubebuilder:validation:Enum=Secret;ConfigMap
	Kind string `json:"kind,omitempty"`

	// name of the object, in the bundle's namespace.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name,omitempty"`
}

// HelmOptions configure a Helm chart deployment.
type HelmOptions struct {
	// chart is the chart to deploy: a path inside the bundle, a URL to a chart
	// archive, an oci:// reference, or a chart name in repo.
	// +optional
	Chart string `json:"chart,omitempty"`

	// repo is the URL of the Helm repository holding chart.
	// +optional
	Repo string `json:"repo,omitempty"`

	// version of the chart, or a semver constraint resolved when the bundle
	// is rendered.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Version string `json:"version,omitempty"`

	// releaseName is the Helm release name: a DNS subdomain (dots allowed,
	// as in Fleet and Helm). Defaults to a name derived from the bundle, at
	// most 53 characters.
	// +optional
	// +kubebuilder:validation:MaxLength=53
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	ReleaseName string `json:"releaseName,omitempty"`

	// values are Helm values. Strings may use Go templates evaluated per
	// cluster, with .ClusterName, .ClusterNamespace, .ClusterLabels,
	// .ClusterAnnotations and .ClusterValues (the Cluster's templateValues).
	// Precedence: values < valuesFiles < valuesFrom.
	// +optional
	// +kubebuilder:validation:Type=object
	// +kubebuilder:pruning:PreserveUnknownFields
	Values *runtime.RawExtension `json:"values,omitempty"`

	// valuesResolved is set by the manager on BundleDeployments: values
	// are already resolved for the deployment's cluster (label references,
	// templates, global.fleet.clusterLabels), so the agent uses them as
	// they are. On a Bundle it is ignored.
	// +optional
	ValuesResolved bool `json:"valuesResolved,omitempty"`

	// valuesFiles are paths, inside the bundle, of values files merged over
	// values in order.
	// +optional
	// +listType=atomic
	ValuesFiles []string `json:"valuesFiles,omitempty"`

	// valuesFrom reads values from ConfigMaps or Secrets in the downstream
	// cluster, merged over valuesFiles in order.
	// +optional
	// +listType=atomic
	ValuesFrom []ValueFrom `json:"valuesFrom,omitempty"`

	// templateValues are Helm values computed per cluster: each value is a
	// template (${ } delimiters, the same data as values) whose output is
	// read as YAML and set at its key, replacing that key of values.
	// +optional
	TemplateValues map[string]string `json:"templateValues,omitempty"`

	// timeoutSeconds is how long Helm waits for an install or upgrade.
	// +optional
	// +kubebuilder:validation:Minimum=0
	TimeoutSeconds int32 `json:"timeoutSeconds,omitempty"`

	// force replaces resources that cannot be updated in place.
	// +optional
	Force bool `json:"force,omitempty"`

	// takeOwnership lets the release adopt existing resources that belong to
	// no release or to another one.
	// +optional
	TakeOwnership bool `json:"takeOwnership,omitempty"`

	// atomic rolls back a failed upgrade.
	// +optional
	Atomic bool `json:"atomic,omitempty"`

	// maxHistory is the number of release revisions kept. Defaults to 2.
	// +optional
	// +kubebuilder:validation:Minimum=0
	MaxHistory int32 `json:"maxHistory,omitempty"`

	// waitForJobs waits for the chart's Jobs to complete before the release
	// counts as deployed.
	// +optional
	WaitForJobs bool `json:"waitForJobs,omitempty"`

	// disablePreProcess turns off Go-template processing of values.
	// +optional
	DisablePreProcess bool `json:"disablePreProcess,omitempty"`

	// skipSchemaValidation skips validation of values against the chart's
	// values.schema.json.
	// +optional
	SkipSchemaValidation bool `json:"skipSchemaValidation,omitempty"`

	// disableDNS turns off DNS lookups in chart templates (Helm's
	// getHostByName). DNS is on by default, as in Fleet.
	// +optional
	DisableDNS bool `json:"disableDNS,omitempty"`

	// disableDependencyUpdate keeps the chart's charts/ folder as it is in
	// the bundle. By default, a chart whose Chart.yaml lists dependencies
	// missing from charts/ gets them when the bundle is read (`helm
	// dependency update`): local file:// dependencies from the bundle,
	// remote ones through the same guarded download as remote charts.
	// +optional
	DisableDependencyUpdate bool `json:"disableDependencyUpdate,omitempty"`
}

// ValueFrom is a source of Helm values in the downstream cluster. Exactly one
// of configMapKeyRef and secretKeyRef is set.
// +kubebuilder:validation:XValidation:rule="has(self.configMapKeyRef) != has(self.secretKeyRef)",message="exactly one of configMapKeyRef or secretKeyRef must be set"
type ValueFrom struct {
	// configMapKeyRef reads values from a key of a ConfigMap.
	// +optional
	ConfigMapKeyRef *ConfigMapKeySelector `json:"configMapKeyRef,omitempty"`

	// secretKeyRef reads values from a key of a Secret.
	// +optional
	SecretKeyRef *SecretKeySelector `json:"secretKeyRef,omitempty"`
}

// ConfigMapKeySelector selects a key of a ConfigMap.
type ConfigMapKeySelector struct {
	// name of the ConfigMap.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name,omitempty"`

	// namespace of the ConfigMap. Defaults to the release namespace.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace,omitempty"`

	// key holding the values YAML. Defaults to "values.yaml".
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Key string `json:"key,omitempty"`
}

// SecretKeySelector selects a key of a Secret.
type SecretKeySelector struct {
	// name of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name,omitempty"`

	// namespace of the Secret. Defaults to the release namespace.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace,omitempty"`

	// key holding the values YAML. Defaults to "values.yaml".
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Key string `json:"key,omitempty"`
}

// KustomizeOptions configure a Kustomize build.
type KustomizeOptions struct {
	// dir is the directory, inside the bundle, that holds kustomization.yaml.
	// +optional
	Dir string `json:"dir,omitempty"`
}

// YAMLOptions configure raw YAML bundles.
type YAMLOptions struct {
	// overlays are names of directories under overlays/ in the bundle, applied
	// in order. A file in an overlay replaces the file of the same path; a
	// file named <name>_patch.yaml patches it.
	// +optional
	// +listType=atomic
	Overlays []string `json:"overlays,omitempty"`
}

// DiffOptions configure drift detection.
type DiffOptions struct {
	// comparePatches hide fields, or whole resources, from drift detection.
	// +optional
	// +listType=atomic
	ComparePatches []ComparePatch `json:"comparePatches,omitempty"`
}

// ComparePatch selects a resource and the parts of it to ignore when
// comparing desired and live state.
type ComparePatch struct {
	// apiVersion of the resource.
	// +optional
	APIVersion string `json:"apiVersion,omitempty"`

	// kind of the resource.
	// +optional
	Kind string `json:"kind,omitempty"`

	// name of the resource.
	// +optional
	Name string `json:"name,omitempty"`

	// namespace of the resource.
	// +optional
	Namespace string `json:"namespace,omitempty"`

	// jsonPointers (RFC 6901) of fields to ignore, e.g. "/spec/replicas".
	// +optional
	// +listType=atomic
	JSONPointers []string `json:"jsonPointers,omitempty"`

	// operations applied to both sides before comparing.
	// +optional
	// +listType=atomic
	Operations []Operation `json:"operations,omitempty"`
}

// Operation is a JSON patch-like operation used by ComparePatch.
type Operation struct {
	// op is "remove" (drop the field at path before comparing) or "ignore"
	// (ignore the whole resource).
	// +optional
	// +kubebuilder:validation:Enum=remove;ignore
	Op string `json:"op,omitempty"`

	// path is the JSON pointer the operation applies to.
	// +optional
	Path string `json:"path,omitempty"`

	// value of the operation, where the operation takes one.
	// +optional
	Value string `json:"value,omitempty"`
}

// CorrectDrift configures automatic correction of drift.
type CorrectDrift struct {
	// enabled turns drift correction on: modified resources are reverted to
	// the desired state.
	// +optional
	Enabled bool `json:"enabled,omitempty"`

	// force replaces resources that cannot be reverted in place.
	// +optional
	Force bool `json:"force,omitempty"`

	// keepFailHistory keeps the history of failed correction attempts.
	// +optional
	KeepFailHistory bool `json:"keepFailHistory,omitempty"`
}

// IgnoreOptions configure what readiness checks ignore.
type IgnoreOptions struct {
	// conditions are status conditions to ignore when computing readiness.
	// Each entry is a set of key/value pairs, e.g. {type: Progressing,
	// status: "False"}; a condition matching all pairs of an entry is ignored.
	// +optional
	// +listType=atomic
	Conditions []map[string]string `json:"conditions,omitempty"`
}

// BundleStatus is the observed state of a Bundle.
type BundleStatus struct {
	// summary counts the bundle's target clusters by state.
	// +optional
	Summary BundleSummary `json:"summary,omitzero"`

	// readyClusters is the number of target clusters where the bundle is
	// Ready.
	// +optional
	ReadyClusters int32 `json:"readyClusters,omitempty"`

	// desiredReadyClusters is the number of clusters the bundle targets.
	// +optional
	DesiredReadyClusters int32 `json:"desiredReadyClusters,omitempty"`

	// display holds human-readable summaries for printer columns and UIs.
	// +optional
	Display BundleDisplay `json:"display,omitzero"`

	// resourcesSHA256Sum is the SHA-256 checksum of the bundle's rendered
	// resources.
	// +optional
	ResourcesSHA256Sum string `json:"resourcesSHA256Sum,omitempty"`

	// partitions reports the rollout state of each partition.
	// +optional
	// +listType=atomic
	Partitions []PartitionStatus `json:"partitions,omitempty"`

	// conditions describe the bundle's current state: Ready, and Reconciling
	// or Stalled while they are True.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=32
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// observedGeneration is the generation of the spec last reconciled
	// successfully.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// BundleDisplay holds human-readable status summaries.
type BundleDisplay struct {
	// readyClusters is "<ready>/<desired>", e.g. "2/3".
	// +optional
	ReadyClusters string `json:"readyClusters,omitempty"`

	// state is the worst state among the target clusters.
	// +optional
	State string `json:"state,omitempty"`
}

// BundleSummary counts BundleDeployments (or target clusters) by state.
type BundleSummary struct {
	// desiredReady is the number of deployments expected to become Ready.
	// +optional
	DesiredReady int32 `json:"desiredReady,omitempty"`

	// ready is the number of deployments in state Ready.
	// +optional
	Ready int32 `json:"ready,omitempty"`

	// notReady is the number of deployments in state NotReady.
	// +optional
	NotReady int32 `json:"notReady,omitempty"`

	// pending is the number of deployments in state Pending.
	// +optional
	Pending int32 `json:"pending,omitempty"`

	// outOfSync is the number of deployments in state OutOfSync.
	// +optional
	OutOfSync int32 `json:"outOfSync,omitempty"`

	// modified is the number of deployments in state Modified.
	// +optional
	Modified int32 `json:"modified,omitempty"`

	// waitApplied is the number of deployments in state WaitApplied.
	// +optional
	WaitApplied int32 `json:"waitApplied,omitempty"`

	// errApplied is the number of deployments in state ErrApplied.
	// +optional
	ErrApplied int32 `json:"errApplied,omitempty"`

	// nonReadyResources lists up to 10 deployments that are not Ready.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=10
	NonReadyResources []NonReadyResource `json:"nonReadyResources,omitempty"`
}

// NonReadyResource describes a deployment that is not Ready.
type NonReadyResource struct {
	// name identifies the deployment, e.g. the BundleDeployment's
	// namespace/name.
	// +optional
	Name string `json:"name,omitempty"`

	// state of the deployment.
	// +optional
	State BundleState `json:"state,omitempty"`

	// message explains the state.
	// +optional
	Message string `json:"message,omitempty"`
}

// PartitionStatus is the rollout state of one partition.
type PartitionStatus struct {
	// name of the partition.
	// +optional
	Name string `json:"name,omitempty"`

	// count is the number of clusters in the partition.
	// +optional
	Count int32 `json:"count,omitempty"`

	// maxUnavailable is the resolved number of clusters of the partition that
	// may be unavailable.
	// +optional
	MaxUnavailable int32 `json:"maxUnavailable,omitempty"`

	// unavailable is the number of clusters of the partition that are
	// currently unavailable.
	// +optional
	Unavailable int32 `json:"unavailable,omitempty"`

	// summary counts the partition's clusters by state.
	// +optional
	Summary BundleSummary `json:"summary,omitzero"`
}

// +kubebuilder:object:root=true

// BundleList is a list of Bundles.
type BundleList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Bundle `json:"items"`
}

// GetConditions returns the bundle's status conditions.
func (in *Bundle) GetConditions() []metav1.Condition {
	return in.Status.Conditions
}

// SetConditions replaces the bundle's status conditions.
func (in *Bundle) SetConditions(conditions []metav1.Condition) {
	in.Status.Conditions = conditions
}
