package provisionedcluster

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	provisioningv1 "github.com/edgefleet/edgefleet/api/provisioning/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/clusterregistration"
	"github.com/edgefleet/edgefleet/internal/controller/managedosimage"
	"github.com/edgefleet/edgefleet/internal/machineregistration"
	"github.com/edgefleet/edgefleet/internal/provisioning/nodeops"
	"github.com/edgefleet/edgefleet/internal/provisioning/render"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
	"github.com/edgefleet/edgefleet/internal/wire/kubedistro"
	"github.com/edgefleet/edgefleet/internal/wire/nodeplan"
)

// keyImportManifest in the PKI Secret keeps the import manifest rendered
// once, so the init server's plan does not change when the join token
// expires after the agent registered.
const keyImportManifest = "import-manifest.yaml"

// ensureSecrets reads the cluster's PKI Secret, generating it once.
func (f *formation) ensureSecrets(ctx context.Context) error {
	if len(f.machines) == 0 {
		return nil
	}
	key := client.ObjectKey{Namespace: f.pc.Namespace, Name: f.pc.Name + pkiSuffix}
	var s corev1.Secret
	err := f.r.Reader.Get(ctx, key, &s)
	if apierrors.IsNotFound(err) {
		gen, err := render.GenerateSecrets(f.pc.Name)
		if err != nil {
			return err
		}
		s = corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name,
			Labels: map[string]string{provisioningv1.ClusterLabel: f.pc.Name}}, Type: corev1.SecretTypeOpaque, Data: gen.Data()}
		if err := controllerutil.SetControllerReference(f.pc, &s, f.r.Client.Scheme()); err != nil {
			return err
		}
		if err := f.r.Client.Create(ctx, &s); err != nil {
			return err // AlreadyExists: another reconcile made it; read it next time
		}
	} else if err != nil {
		return err
	}
	if !metav1.IsControlledBy(&s, f.pc) {
		return fmt.Errorf("secret %s exists but does not belong to this cluster: delete or rename it", key)
	}
	secrets, err := render.SecretsFrom(s.Data)
	if err != nil {
		return err
	}
	f.secrets = secrets
	f.manifest = s.Data[keyImportManifest]
	return nil
}

// ensureJoin makes the import manifest the init server applies: a
// ClusterRegistrationToken of the cluster (at most one fleet Cluster) and
// the manifest GET /v1/import/<token>.yaml would serve, kept in the PKI
// Secret.
func (f *formation) ensureJoin(ctx context.Context) error {
	if f.r.ExternalURL == nil || f.secrets == nil || len(f.manifest) > 0 {
		return nil
	}
	crt := &fleetv1.ClusterRegistrationToken{}
	key := client.ObjectKey{Namespace: f.pc.Namespace, Name: f.pc.Name + joinTokenSuffix}
	err := f.r.Client.Get(ctx, key, crt)
	if apierrors.IsNotFound(err) {
		one := int32(1)
		crt = &fleetv1.ClusterRegistrationToken{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name,
			Labels: map[string]string{provisioningv1.ClusterLabel: f.pc.Name}},
			Spec: fleetv1.ClusterRegistrationTokenSpec{MaxClusters: &one}}
		if err := controllerutil.SetControllerReference(f.pc, crt, f.r.Client.Scheme()); err != nil {
			return err
		}
		if err := f.r.Client.Create(ctx, crt); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
		f.requeueAfter(time.Second)
		return nil
	} else if err != nil {
		return err
	}
	if !metav1.IsControlledBy(crt, f.pc) {
		return fmt.Errorf("ClusterRegistrationToken %s exists but does not belong to this cluster: delete or rename it", key)
	}
	var tok corev1.Secret
	err = f.r.Reader.Get(ctx, client.ObjectKey{Namespace: key.Namespace, Name: clusterregistration.TokenSecretName(crt.Name)}, &tok)
	if apierrors.IsNotFound(err) || (err == nil && len(tok.Data[clusterjoin.KeyToken]) == 0) {
		f.requeueAfter(time.Second)
		return nil
	}
	if err != nil {
		return err
	}
	manifest, err := clusterregistration.Manifest(f.r.ExternalURL.String(), string(tok.Data[clusterjoin.KeyToken]), f.r.CACertPEM, f.r.AgentImage)
	if err != nil {
		return err
	}
	if f.r.Nodes != nil {
		// The rights formation's node operations need in the formed cluster.
		manifest = append(manifest, nodeops.DownstreamRBAC()...)
	}
	var s corev1.Secret
	if err := f.r.Reader.Get(ctx, client.ObjectKey{Namespace: f.pc.Namespace, Name: f.pc.Name + pkiSuffix}, &s); err != nil {
		return err
	}
	s.Data[keyImportManifest] = manifest
	if err := f.r.Client.Update(ctx, &s); err != nil {
		return err
	}
	f.manifest = manifest
	return nil
}

// rollVersions moves machines to spec.version: servers one at a time,
// then workers rolloutStrategy.concurrency at a time, each only once the
// machines moved before are bootstrapped at the new version with a healthy
// kubelet. A machine that failed at the new version halts the rollout.
func (f *formation) rollVersions(ctx context.Context) error {
	want := f.pc.Spec.Version
	var outdatedServers, outdatedAgents []*machine
	busyServers, busyAgents := 0, 0
	for _, m := range f.machines {
		switch {
		case m.cm.Spec.Version != want:
			if m.server() {
				outdatedServers = append(outdatedServers, m)
			} else {
				outdatedAgents = append(outdatedAgents, m)
			}
		case m.cm.Status.Version != want || !m.nodeReady():
			// A failure observed under this generation halts; a new spec
			// (a fixed version) gets a new chance.
			if f.failed(m) && f.pc.Status.ObservedGeneration == f.pc.Generation {
				f.halt = m
			}
			if m.server() {
				busyServers++
			} else {
				busyAgents++
			}
		}
	}
	if len(outdatedServers)+len(outdatedAgents) == 0 || f.halt != nil {
		return nil
	}
	var move []*machine
	switch {
	case len(outdatedServers) > 0:
		if busyServers == 0 {
			move = outdatedServers[:1]
		}
	case busyServers == 0:
		slots := int(max(f.pc.Spec.RolloutStrategy.Concurrency, 1)) - busyAgents
		if slots > 0 {
			move = outdatedAgents[:min(slots, len(outdatedAgents))]
		}
	}
	for _, m := range move {
		if done, err := f.drainStep(ctx, m); err != nil || !done {
			if err != nil {
				return err
			}
			continue
		}
		m.cm.Spec.Version = want
		if err := f.r.Client.Update(ctx, m.cm); err != nil {
			return err
		}
		m.before.Spec.Version, m.before.ResourceVersion = want, m.cm.ResourceVersion
		upgradesStarted.Inc()
	}
	return nil
}

// failed: the machine reported its current formation plan failed.
func (f *formation) failed(m *machine) bool {
	return m.inv != nil && !m.held && m.cm.Status.PlanChecksum != "" && m.inv.Status.Plan.FailedChecksum == m.cm.Status.PlanChecksum
}

// writePlans renders and writes every machine's plan: the init server
// first, the others once a server has bootstrapped (they join it).
func (f *formation) writePlans(ctx context.Context) error {
	if f.secrets == nil {
		return nil
	}
	f.settleEtcdMemberRemovals()
	anchor := f.anchor()
	var etcd []string
	for _, m := range f.machines {
		if m.server() && m.inv != nil && (m.bootstrapped() || m.cm.Status.Version != "") {
			if a := Address(m.inv); a != "" {
				etcd = append(etcd, "https://"+net.JoinHostPort(a, "2379"))
			}
		}
	}
	for _, m := range f.machines {
		if m.inv == nil || m.leaving {
			continue
		}
		if f.server == "" {
			m.wait = waitState{provisioningv1.WaitingForAddressReason, "waiting for the init server's address (its MachineInventory's status.network) or spec.controlPlaneEndpoint"}
			continue
		}
		if !m.cm.Spec.Init && anchor == nil {
			m.wait = waitState{provisioningv1.WaitingForInitReason, "waiting for the init server to bootstrap"}
			continue
		}
		if m.cm.Spec.Version != f.pc.Spec.Version && m.cm.Status.PlanChecksum != "" {
			continue // waits for its turn in the rolling upgrade: its plan stays as it is
		}
		sp := f.specPool(m.cm.Spec.Pool)
		c := render.Cluster{
			Distro: string(f.pc.Spec.Distro), Version: m.cm.Spec.Version, Server: f.server,
			ClusterCIDR: f.pc.Spec.ClusterNetwork.Pods, ServiceCIDR: f.pc.Spec.ClusterNetwork.Services,
			DNSImage: f.pc.Spec.ClusterNetwork.DNSImage,
			Binaries: f.binaries, Secrets: f.secrets,
			EtcdEndpoints: slices.DeleteFunc(slices.Clone(etcd), func(e string) bool { return e == "https://"+net.JoinHostPort(Address(m.inv), "2379") }),
		}
		if f.pc.Spec.Distro == provisioningv1.DistroEdgefleet {
			c.EtcdRemoveMembers = f.etcdRemovalsFor(m)
			c.ClusterCIDR = cmpOr(c.ClusterCIDR, kubedistro.DefaultClusterCIDR)
			c.ServiceCIDR = cmpOr(c.ServiceCIDR, kubedistro.DefaultServiceCIDR)
		}
		if ep := f.pc.Spec.ControlPlaneEndpoint; ep != nil {
			c.TLSSANs = []string{ep.Host}
		}
		if len(f.pc.Spec.Registries) > 0 {
			c.Mirrors = map[string][]string{}
			for _, r := range f.pc.Spec.Registries {
				c.Mirrors[r.Host] = r.Endpoints
			}
		}
		if m.cm.Spec.Init {
			c.ImportManifest = f.manifest
		}
		var taints []string
		for _, t := range sp.pool.NodeTaints {
			if t.Value != "" {
				taints = append(taints, t.Key+"="+t.Value+":"+t.Effect)
			} else {
				taints = append(taints, t.Key+":"+t.Effect)
			}
		}
		mach := render.Machine{
			Name: m.inv.Name, Server: m.server(), Init: m.cm.Spec.Init, NodeIP: Address(m.inv),
			Labels: render.NodeLabels(m.inv.Labels, sp.pool.NodeLabels), Taints: taints, Config: maps.Clone(f.configs[sp.name]),
		}
		if f.pc.Spec.Distro == provisioningv1.DistroEdgefleet {
			mach.RemoveEtcdMembers = f.runningRemovalsFor(m)
		}
		if m.server() && !m.cm.Spec.Init && f.pc.Spec.Distro == provisioningv1.DistroEdgefleet && len(c.EtcdEndpoints) == 0 {
			m.wait = waitState{provisioningv1.WaitingForInitReason, "waiting for a bootstrapped server's address to join its etcd"}
			continue
		}
		_, raw, err := render.Plan(c, mach)
		if err != nil {
			m.wait = waitState{provisioningv1.BootstrapFailedReason, fmt.Sprintf("cannot render the plan: %v", err)}
			continue
		}
		raw = f.keepJoinedEndpoints(ctx, m, c, mach, raw)
		if f.halt != nil && m.cm.Status.PlanChecksum != "" && m.cm.Status.PlanChecksum != nodeplan.Checksum(raw) {
			continue // halted: no machine's plan changes until the spec does
		}
		sum, held, err := f.putPlan(ctx, m.inv, raw)
		if apierrors.IsNotFound(err) {
			m.wait = waitState{provisioningv1.BootstrappingReason, "the machine has no plan Secret yet (the MachineInventory controller re-creates it)"}
			f.requeueAfter(5 * time.Second)
			continue
		}
		if err != nil {
			return err
		}
		m.held = held
		m.cm.Status.PlanChecksum = sum
		if !held {
			f.settleRunningRemovals(m, sum)
		}
	}
	return nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// putPlan writes raw as the machine's own plan: into the plan key, or,
// while a ManagedOSImage upgrade holds the Secret, where that controller
// keeps the machine's own plan (it puts it back after the upgrade). The
// Update carries the resourceVersion read, so a concurrent change is never
// overwritten. nil clears the plan.
func (f *formation) putPlan(ctx context.Context, inv *machinesv1.MachineInventory, raw []byte) (checksum string, held bool, err error) {
	var s corev1.Secret
	if err := f.r.Reader.Get(ctx, client.ObjectKey{Namespace: inv.Namespace, Name: machineregistration.PlanName(inv)}, &s); err != nil {
		return "", false, err
	}
	if !metav1.IsControlledBy(&s, inv) {
		return "", false, fmt.Errorf("plan Secret %s/%s is not the machine's (not controlled by its MachineInventory); refusing to write a plan into it", s.Namespace, s.Name)
	}
	key := nodeplan.SecretKey
	if s.Annotations[managedosimage.AnnotationUpgrade] != "" {
		key, held = managedosimage.PreviousPlanKey, true
	}
	if raw == nil {
		raw = []byte{}
	}
	sum := nodeplan.Checksum(raw)
	if bytes.Equal(s.Data[key], raw) && (s.Data[key] != nil || len(raw) == 0) {
		return sum, held, nil
	}
	if s.Data == nil {
		s.Data = map[string][]byte{}
	}
	s.Data[key] = raw
	if err := f.r.Client.Update(ctx, &s); err != nil {
		return "", false, err
	}
	planWrites.Inc()
	return sum, held, nil
}
