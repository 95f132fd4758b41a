package upgradeplan

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	upgradev1 "github.com/edgefleet/edgefleet/api/upgrade/v1alpha1"
)

// Labels and paths of system-upgrade-controller, kept so tooling written
// for SUC (node label checks, pod selectors in drains) works unchanged.
const (
	// LabelController marks Jobs (and their pods) of this controller; the
	// drain never evicts pods carrying it.
	LabelController = "upgrade.cattle.io/controller"
	LabelNode       = "upgrade.cattle.io/node"
	LabelPlan       = "upgrade.cattle.io/plan"
	LabelVersion    = "upgrade.cattle.io/version"
	// PlanLabelPrefix + plan name on a node holds the hash applied there,
	// or "disabled" to exclude the node.
	PlanLabelPrefix = "plan.upgrade.cattle.io/"
	// Disabled as a node's plan label value excludes the node.
	Disabled = "disabled"

	// ControllerName is the value of LabelController.
	ControllerName = "edgefleet-agent"

	hostnameLabel    = "kubernetes.io/hostname"
	secretsMountRoot = "/run/system-upgrade/secrets"
	podInfoMount     = "/run/system-upgrade/pod"
)

// Job defaults of SUC, overridable by SUC's environment variables.
const (
	defaultBackoffLimit          = 2
	defaultActiveDeadlineSeconds = 600
	defaultTTLSecondsAfterFinish = 900
)

// JobSettings are the agent-wide Job settings (SUC's
// SYSTEM_UPGRADE_JOB_* environment variables).
type JobSettings struct {
	BackoffLimit          int32
	ActiveDeadlineSeconds int64
	TTLSecondsAfterFinish int32
	Privileged            bool
	ImagePullPolicy       corev1.PullPolicy
}

// JobSettingsFromEnv reads SUC's environment variables, falling back to its
// defaults for unset or malformed values.
func JobSettingsFromEnv(getenv func(string) string) JobSettings {
	if getenv == nil {
		getenv = os.Getenv
	}
	s := JobSettings{
		BackoffLimit:          defaultBackoffLimit,
		ActiveDeadlineSeconds: defaultActiveDeadlineSeconds,
		TTLSecondsAfterFinish: defaultTTLSecondsAfterFinish,
		Privileged:            true,
		ImagePullPolicy:       corev1.PullIfNotPresent,
	}
	if v, err := strconv.ParseInt(getenv("SYSTEM_UPGRADE_JOB_BACKOFF_LIMIT"), 10, 32); err == nil && v >= 0 {
		s.BackoffLimit = int32(v)
	}
	if v, err := strconv.ParseInt(getenv("SYSTEM_UPGRADE_JOB_ACTIVE_DEADLINE_SECONDS"), 10, 64); err == nil && v >= 0 {
		s.ActiveDeadlineSeconds = v
	}
	if v, err := strconv.ParseInt(getenv("SYSTEM_UPGRADE_JOB_TTL_SECONDS_AFTER_FINISH"), 10, 32); err == nil && v >= 0 {
		s.TTLSecondsAfterFinish = int32(v)
	}
	if v, err := strconv.ParseBool(getenv("SYSTEM_UPGRADE_JOB_PRIVILEGED")); err == nil {
		s.Privileged = v
	}
	switch p := corev1.PullPolicy(getenv("SYSTEM_UPGRADE_JOB_IMAGE_PULL_POLICY")); p {
	case corev1.PullAlways, corev1.PullNever, corev1.PullIfNotPresent:
		s.ImagePullPolicy = p
	}
	return s
}

// NodeLabel is the label a node done with plan carries.
func NodeLabel(plan string) string { return PlanLabelPrefix + plan }

// Hash is the plan's latestHash: sha224 over what identifies an upgrade
// (SUC's inputs: the version, the service account, and the content of the
// secrets not marked ignoreUpdates, given in spec order as secretHashes).
func Hash(p *upgradev1.Plan, version string, secretHashes []string) string {
	h := sha256.New224()
	fmt.Fprintf(h, "version=%s\nserviceAccountName=%s\n", version, p.Spec.ServiceAccountName)
	for _, s := range secretHashes {
		fmt.Fprintf(h, "secret=%s\n", s)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// SecretHash hashes a Secret's data in key order.
func SecretHash(s *corev1.Secret) string {
	keys := make([]string, 0, len(s.Data))
	for k := range s.Data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New224()
	for _, k := range keys {
		fmt.Fprintf(h, "%s=%d:", k, len(s.Data[k]))
		h.Write(s.Data[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Image is image with the version as its tag when it has neither tag nor
// digest ("+" in the version becomes "-", as in SUC: tags cannot hold it).
func Image(image, version string) string {
	if strings.Contains(image, "@") {
		return image
	}
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		return image
	}
	if version == "" {
		return image
	}
	return image + ":" + strings.ReplaceAll(version, "+", "-")
}

// JobName is SUC's apply-<plan>-on-<node>-with-<hash>, shortened to a valid
// name with a digest of the full name when too long.
func JobName(plan, node, hash string) string {
	name := fmt.Sprintf("apply-%s-on-%s-with-%s", plan, node, hash)
	if len(name) <= 63 {
		return name
	}
	sum := sha512.Sum512_256([]byte(name))
	short := hex.EncodeToString(sum[:])[:10]
	prefix := fmt.Sprintf("apply-%s-on-%s", plan, node)
	if len(prefix) > 52 {
		prefix = prefix[:52]
	}
	return strings.TrimRight(prefix, "-.") + "-" + short
}

// NewJob builds the Job upgrading node with plan at version/hash: an init
// container for prepare, the upgrade container, host root at /host, the
// pod's own metadata at /run/system-upgrade/pod, secrets under
// /run/system-upgrade/secrets, and SUC's environment variables. Cordon and
// drain are not containers here: the controller does them through the API
// before creating the Job (the eviction API, so PodDisruptionBudgets hold).
func NewJob(p *upgradev1.Plan, node *corev1.Node, version, hash string, s JobSettings) *batchv1.Job {
	labels := map[string]string{
		LabelController:   ControllerName,
		LabelNode:         node.Name,
		LabelPlan:         p.Name,
		NodeLabel(p.Name): hash,
	}
	if v := labelValue(version); v != "" {
		labels[LabelVersion] = v
	}
	deadline := s.ActiveDeadlineSeconds
	if p.Spec.JobActiveDeadlineSecs != nil {
		deadline = *p.Spec.JobActiveDeadlineSecs
	}
	env := []corev1.EnvVar{
		{Name: "SYSTEM_UPGRADE_NODE_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
		{Name: "SYSTEM_UPGRADE_POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		{Name: "SYSTEM_UPGRADE_POD_UID", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.uid"}}},
		{Name: "SYSTEM_UPGRADE_PLAN_NAME", Value: p.Name},
		{Name: "SYSTEM_UPGRADE_PLAN_LATEST_HASH", Value: hash},
		{Name: "SYSTEM_UPGRADE_PLAN_LATEST_VERSION", Value: version},
	}
	volumes := []corev1.Volume{
		{Name: "host-root", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/", Type: ptr.To(corev1.HostPathDirectory)}}},
		{Name: "pod-info", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{
			{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
			{Path: "annotations", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations"}},
		}}}},
	}
	mounts := []corev1.VolumeMount{
		{Name: "host-root", MountPath: "/host"},
		{Name: "pod-info", MountPath: podInfoMount, ReadOnly: true},
	}
	for i, sec := range p.Spec.Secrets {
		name := fmt.Sprintf("secret-%d", i)
		dir := sec.Path
		if dir == "" {
			dir = sec.Name
		}
		volumes = append(volumes, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: sec.Name, DefaultMode: sec.DefaultMode}}})
		mounts = append(mounts, corev1.VolumeMount{Name: name, MountPath: path.Join(secretsMountRoot, path.Clean("/"+dir)), ReadOnly: true})
	}
	container := func(name string, c *upgradev1.ContainerSpec) corev1.Container {
		out := corev1.Container{
			Name:            name,
			Image:           Image(c.Image, version),
			Command:         c.Command,
			Args:            c.Args,
			Env:             append([]corev1.EnvVar(nil), env...),
			VolumeMounts:    append([]corev1.VolumeMount(nil), mounts...),
			ImagePullPolicy: s.ImagePullPolicy,
			SecurityContext: &corev1.SecurityContext{
				Privileged:   ptr.To(s.Privileged),
				Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"CAP_SYS_BOOT"}},
			},
		}
		for _, e := range c.Envs {
			out.Env = append(out.Env, corev1.EnvVar{Name: e.Name, Value: e.Value})
		}
		for i, v := range c.Volumes {
			vname := fmt.Sprintf("%s-volume-%d", name, i)
			volumes = append(volumes, corev1.Volume{Name: vname, VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: v.Source}}})
			out.VolumeMounts = append(out.VolumeMounts, corev1.VolumeMount{Name: vname, MountPath: v.Destination})
		}
		return out
	}
	spec := corev1.PodSpec{
		HostIPC:            true,
		HostPID:            true,
		HostNetwork:        true,
		DNSPolicy:          corev1.DNSClusterFirstWithHostNet,
		RestartPolicy:      corev1.RestartPolicyNever,
		ServiceAccountName: p.Spec.ServiceAccountName,
		Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: hostnameLabel, Operator: corev1.NodeSelectorOpIn, Values: []string{nodeHostname(node)}}},
			}}},
		}},
		Tolerations: []corev1.Toleration{{Key: corev1.TaintNodeUnschedulable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
	}
	for _, t := range p.Spec.Tolerations {
		spec.Tolerations = append(spec.Tolerations, corev1.Toleration{
			Key: t.Key, Operator: corev1.TolerationOperator(t.Operator), Value: t.Value,
			Effect: corev1.TaintEffect(t.Effect), TolerationSeconds: t.TolerationSeconds,
		})
	}
	for _, s := range p.Spec.ImagePullSecrets {
		spec.ImagePullSecrets = append(spec.ImagePullSecrets, corev1.LocalObjectReference{Name: s.Name})
	}
	if p.Spec.Prepare != nil {
		spec.InitContainers = []corev1.Container{container("prepare", p.Spec.Prepare)}
	}
	spec.Containers = []corev1.Container{container("upgrade", p.Spec.Upgrade)}
	spec.Volumes = volumes
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{
			Name:      JobName(p.Name, node.Name, hash),
			Namespace: p.Namespace,
			Labels:    labels,
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: upgradev1.GroupVersion.String(), Kind: "Plan", Name: p.Name, UID: p.UID,
				Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
			}},
		},
		Spec: batchv1.JobSpec{
			BackoffLimit:            ptr.To(s.BackoffLimit),
			Completions:             ptr.To[int32](1),
			Parallelism:             ptr.To[int32](1),
			TTLSecondsAfterFinished: ptr.To(s.TTLSecondsAfterFinish),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       spec,
			},
		},
	}
	if deadline > 0 {
		job.Spec.ActiveDeadlineSeconds = ptr.To(deadline)
	}
	return job
}

// nodeHostname is the node's hostname label (what the affinity matches),
// or its name.
func nodeHostname(n *corev1.Node) string {
	if h := n.Labels[hostnameLabel]; h != "" {
		return h
	}
	return n.Name
}

// labelValue is v when it is a valid label value, else "" (versions like
// "v1.30.2+k3s1" are not: "+" becomes "-").
func labelValue(v string) string {
	v = strings.ReplaceAll(v, "+", "-")
	if len(v) > 63 {
		return ""
	}
	for _, r := range v {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return ""
		}
	}
	return strings.Trim(v, "-_.")
}
