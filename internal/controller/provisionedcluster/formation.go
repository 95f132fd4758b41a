package provisionedcluster

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	provisioningv1 "github.com/edgefleet/edgefleet/api/provisioning/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/controller/conditions"
	"github.com/edgefleet/edgefleet/internal/provisioning/adopt"
	"github.com/edgefleet/edgefleet/internal/provisioning/nodeops"
	"github.com/edgefleet/edgefleet/internal/provisioning/render"
	"github.com/edgefleet/edgefleet/internal/wire/kubedistro"
)

// machine is one ClusterMachine with its inventory (nil when lost).
type machine struct {
	cm  *provisioningv1.ClusterMachine
	inv *machinesv1.MachineInventory
	// before is cm as read, for the status patch.
	before *provisioningv1.ClusterMachine
	// held: a ManagedOSImage upgrade holds the plan Secret.
	held bool
	// wait says why no plan was written this time.
	wait waitState
	// leaving: a server being scaled down whose plan is its LeaveEtcdPlan
	// (writePlans leaves it alone).
	leaving bool
}

type waitState struct{ reason, message string }

func (m *machine) server() bool { return m.cm.Spec.Role == provisioningv1.RoleServer }

func (m *machine) bootstrapped() bool {
	return meta.IsStatusConditionTrue(m.cm.Status.Conditions, provisioningv1.BootstrappedCondition)
}

func (m *machine) nodeReady() bool {
	return meta.IsStatusConditionTrue(m.cm.Status.Conditions, provisioningv1.NodeReadyCondition)
}

// formation is one reconcile of one ProvisionedCluster.
type formation struct {
	r   *Reconciler
	pc  *provisioningv1.ProvisionedCluster
	now time.Time
	// before is pc as read, the base of the reconcile's status patch.
	before *provisioningv1.ProvisionedCluster

	pools []adopt.Pool
	// inventories are the ones this cluster claimed (claimIndex).
	inventories []machinesv1.MachineInventory
	machines    []*machine
	// candidates are inventories and the free ones the pools select
	// (match); matches is what adoption found among them.
	candidates []machinesv1.MachineInventory
	matches    []adopt.PoolMatch

	secrets  *render.Secrets
	manifest []byte
	server   string
	binaries kubedistro.Binaries
	configs  map[string]map[string]any

	fleetCluster *fleetv1.Cluster
	// downstream reaches the formed cluster through its tunnel (nil when
	// not connected or not configured); nodes is its nodes' state.
	downstream kubernetes.Interface
	nodes      map[string]nodeops.NodeState

	// halt names a machine whose plan failed: no further machine changes.
	halt *machine
	// health is each pool's health check result, by pool name.
	health map[string]healthRow
	// verdicts are the health checks' verdicts of this reconcile (machines
	// of pools with a healthCheck, when the cluster's nodes were read).
	verdicts map[*machine]verdict
	// resumed restarts the health checks' timers: after a short-circuit
	// every node gets its full timeout again (health.go).
	resumed time.Time
	requeue time.Duration
	// waiting collects what the cluster waits for (Ready's message).
	waiting []string
	reason  string
}

func (f *formation) requeueAfter(d time.Duration) {
	if f.requeue == 0 || d < f.requeue {
		f.requeue = d
	}
}

func (f *formation) wait(reason, msg string) {
	if f.reason == "" {
		f.reason = reason
	}
	f.waiting = append(f.waiting, msg)
}

// load reads the inventories this cluster claimed and its ClusterMachines.
func (f *formation) load(ctx context.Context) error {
	c := f.r.Client
	var invs machinesv1.MachineInventoryList
	if err := c.List(ctx, &invs, client.InNamespace(f.pc.Namespace), client.MatchingFields{claimIndex: f.pc.Name}); err != nil {
		return err
	}
	f.inventories = invs.Items
	byName := map[string]*machinesv1.MachineInventory{}
	for i := range f.inventories {
		byName[f.inventories[i].Name] = &f.inventories[i]
	}
	var cms provisioningv1.ClusterMachineList
	if err := c.List(ctx, &cms, client.InNamespace(f.pc.Namespace), client.MatchingLabels{provisioningv1.ClusterLabel: f.pc.Name}); err != nil {
		return err
	}
	f.machines = nil
	for i := range cms.Items {
		cm := &cms.Items[i]
		if !metav1.IsControlledBy(cm, f.pc) {
			continue
		}
		m := &machine{cm: cm, before: cm.DeepCopy()}
		if inv := byName[cm.Spec.InventoryName]; inv != nil && inv.DeletionTimestamp.IsZero() {
			if cl, pool := adopt.ClaimOf(inv); cl == f.pc.Name && pool == cm.Spec.Pool {
				m.inv = inv
			}
		}
		f.machines = append(f.machines, m)
	}
	slices.SortFunc(f.machines, func(a, b *machine) int { return cmp.Compare(a.cm.Name, b.cm.Name) })
	return nil
}

// run is the reconcile's phases, in order.
func (f *formation) run(ctx context.Context) error {
	pc, st, gen := f.pc, &f.pc.Status, f.pc.Generation
	if !f.validate() {
		return nil
	}
	if err := f.load(ctx); err != nil {
		return err
	}
	if err := f.dropLost(ctx); err != nil {
		return err
	}
	if err := f.settleClaims(ctx); err != nil {
		return err
	}
	if err := f.linkFleetCluster(ctx); err != nil {
		return err
	}
	f.connect(ctx)
	if !pc.Spec.Paused {
		if err := f.remediate(ctx); err != nil {
			return err
		}
		if err := f.scale(ctx); err != nil {
			return err
		}
		if err := f.ensureSecrets(ctx); err != nil {
			return err
		}
		if err := f.ensureJoin(ctx); err != nil {
			return err
		}
		if err := f.chooseInit(ctx); err != nil {
			return err
		}
		f.resolveServer()
		if err := f.rollVersions(ctx); err != nil {
			return err
		}
		if err := f.writePlans(ctx); err != nil {
			return err
		}
	} else {
		if err := f.match(ctx); err != nil {
			return err
		}
		f.resolveServer()
	}
	if err := f.machineStatuses(ctx); err != nil {
		return err
	}
	f.clusterStatus(gen)
	st.Server = f.server
	return nil
}

// validate checks what the API server could not: the version against the
// configured list, the binaries, the pools' selectors and configs.
func (f *formation) validate() bool {
	pc, st, gen := f.pc, &f.pc.Status, f.pc.Generation
	st.AvailableVersions = f.r.Versions[pc.Spec.Distro]
	if list := st.AvailableVersions; len(list) > 0 && !slices.Contains(list, pc.Spec.Version) {
		conditions.MarkStalled(&st.Conditions, provisioningv1.UnknownVersionReason, fmt.Sprintf(
			"spec.version %q is not a %s version this manager can install; available: %s (status.availableVersions). No machine was adopted or changed",
			pc.Spec.Version, pc.Spec.Distro, strings.Join(list, ", ")), gen)
		return false
	}
	pools, err := adopt.Pools(pc)
	if err != nil {
		conditions.MarkStalled(&st.Conditions, provisioningv1.InvalidSpecReason, err.Error(), gen)
		return false
	}
	f.pools = pools
	f.configs = map[string]map[string]any{}
	for _, p := range f.specPools() {
		if p.pool.Config == nil || len(p.pool.Config.Raw) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(p.pool.Config.Raw, &m); err != nil {
			conditions.MarkStalled(&st.Conditions, provisioningv1.InvalidSpecReason, fmt.Sprintf("pool %s: config must be an object of config.yaml keys: %v", p.name, err), gen)
			return false
		}
		f.configs[p.name] = m
	}
	switch {
	case pc.Spec.Binaries != nil:
		f.binaries = kubedistro.Binaries{Image: pc.Spec.Binaries.Image, Dir: pc.Spec.Binaries.Dir}
	case pc.Spec.Distro == provisioningv1.DistroEdgefleet:
		b, ok := f.r.Releases[pc.Spec.Version]
		if !ok {
			conditions.MarkStalled(&st.Conditions, provisioningv1.InvalidSpecReason, fmt.Sprintf(
				"the edgefleet distro needs binaries for %s: set spec.binaries.image (an OCI image with them) or spec.binaries.dir (a folder on the machines); the manager has no release of that version configured", pc.Spec.Version), gen)
			return false
		}
		f.binaries = b
	}
	return true
}

type specPool struct {
	name string
	pool *provisioningv1.MachinePool
	role provisioningv1.Role
}

func (f *formation) specPools() []specPool {
	out := []specPool{{provisioningv1.ControlPlanePool, &f.pc.Spec.ControlPlane, provisioningv1.RoleServer}}
	for i := range f.pc.Spec.Workers {
		w := &f.pc.Spec.Workers[i]
		out = append(out, specPool{w.Name, &w.MachinePool, provisioningv1.RoleAgent})
	}
	return out
}

func (f *formation) specPool(name string) *specPool {
	for _, p := range f.specPools() {
		if p.name == name {
			return &p
		}
	}
	return nil
}

// dropLost removes ClusterMachines whose inventory is gone (deleted, or no
// longer claimed by this cluster): the pool adopts another machine.
func (f *formation) dropLost(ctx context.Context) error {
	kept := f.machines[:0]
	for _, m := range f.machines {
		if m.inv != nil && f.specPool(m.cm.Spec.Pool) != nil {
			kept = append(kept, m)
			continue
		}
		if m.inv == nil {
			log.FromContext(ctx).Info("Adopted machine lost: its MachineInventory is gone or no longer claimed", "ClusterMachine", klog.KObj(m.cm))
			f.r.Events.Eventf(f.pc, m.cm, corev1.EventTypeWarning, provisioningv1.MachineLostReason, "Remove",
				"MachineInventory %s is gone or no longer claimed by this cluster; its ClusterMachine is removed and the pool adopts another machine", m.cm.Spec.InventoryName)
			machinesLost.Inc()
		} else if err := f.release(ctx, m); err != nil { // its pool was removed from the spec
			return err
		}
		if err := f.r.Client.Delete(ctx, m.cm); client.IgnoreNotFound(err) != nil {
			return err
		}
	}
	f.machines = kept
	return nil
}

// settleClaims finishes or releases this cluster's claims without a
// ClusterMachine: within the grace period they get their ClusterMachine
// (phase two), older ones are released. (Claims of clusters that no longer
// exist are released by Reconcile's releaseStaleClaims.)
func (f *formation) settleClaims(ctx context.Context) error {
	has := map[string]bool{}
	for _, m := range f.machines {
		has[m.cm.Spec.InventoryName] = true
	}
	for i := range f.inventories {
		inv := &f.inventories[i]
		cl, pool := adopt.ClaimOf(inv)
		if cl != f.pc.Name || has[inv.Name] {
			continue
		}
		age := adopt.ClaimAge(inv, f.now)
		if age >= f.r.Grace || f.specPool(pool) == nil || f.pc.Spec.Paused {
			log.FromContext(ctx).Info("Releasing a claim that has no ClusterMachine", "MachineInventory", klog.KObj(inv))
			if err := adopt.Release(ctx, f.r.Client, inv, f.pc.Name); err != nil {
				return err
			}
			continue
		}
		if err := f.createMachine(ctx, inv, pool); err != nil {
			return err
		}
	}
	return nil
}

// scale adopts machines for pools short of replicas and releases the
// surplus of pools above them.
func (f *formation) scale(ctx context.Context) error {
	if err := f.match(ctx); err != nil {
		return err
	}
	byName := map[string]*machinesv1.MachineInventory{}
	for i := range f.candidates {
		byName[f.candidates[i].Name] = &f.candidates[i]
	}
	for _, pm := range f.matches {
		var current []*machine
		for _, m := range f.machines {
			if m.cm.Spec.Pool == pm.Pool.Name {
				current = append(current, m)
			}
		}
		need := int(pm.Pool.Replicas) - len(current)
		for _, name := range pm.Available {
			if need <= 0 {
				break
			}
			inv := byName[name]
			ok, err := adopt.Claim(ctx, f.r.Client, inv, f.pc.Name, pm.Pool.Name, f.now)
			if err != nil {
				return err
			}
			if !ok {
				claimConflicts.Inc()
				f.requeueAfter(time.Second)
				continue
			}
			if err := f.createMachine(ctx, inv, pm.Pool.Name); err != nil {
				return err
			}
			need--
		}
		if need > 0 {
			f.wait(provisioningv1.WaitingForMachinesReason, pm.Message())
		}
		if surplus := len(current) - int(pm.Pool.Replicas); surplus > 0 {
			if err := f.scaleDown(ctx, current, surplus); err != nil {
				return err
			}
		}
	}
	return nil
}

// createMachine is phase two of adoption: the ClusterMachine named after
// the inventory, owned by the cluster.
func (f *formation) createMachine(ctx context.Context, inv *machinesv1.MachineInventory, pool string) error {
	sp := f.specPool(pool)
	cm := &provisioningv1.ClusterMachine{
		ObjectMeta: metav1.ObjectMeta{Namespace: f.pc.Namespace, Name: inv.Name, Labels: map[string]string{
			provisioningv1.ClusterLabel: f.pc.Name, provisioningv1.PoolLabel: pool,
		}},
		Spec: provisioningv1.ClusterMachineSpec{ClusterName: f.pc.Name, Pool: pool, Role: sp.role, InventoryName: inv.Name, Version: f.pc.Spec.Version},
	}
	if err := controllerutil.SetControllerReference(f.pc, cm, f.r.Client.Scheme()); err != nil {
		return err
	}
	err := f.r.Client.Create(ctx, cm)
	if apierrors.IsAlreadyExists(err) {
		existing := &provisioningv1.ClusterMachine{}
		if err := f.r.Client.Get(ctx, client.ObjectKeyFromObject(cm), existing); err != nil {
			return err
		}
		if !metav1.IsControlledBy(existing, f.pc) {
			// Another cluster's leftover of the same name: give the claim
			// back rather than share the machine.
			return adopt.Release(ctx, f.r.Client, inv, f.pc.Name)
		}
		cm = existing
	} else if err != nil {
		return fmt.Errorf("creating ClusterMachine %s: %w", inv.Name, err)
	} else {
		adoptions.Inc()
		log.FromContext(ctx).Info("Adopted machine", "MachineInventory", klog.KObj(inv), "pool", pool)
	}
	f.machines = append(f.machines, &machine{cm: cm, inv: inv, before: cm.DeepCopy()})
	return nil
}

// scaleDown releases surplus machines: not ready ones first, never the
// init server while others remain, then the last by name.
func (f *formation) scaleDown(ctx context.Context, current []*machine, surplus int) error {
	order := slices.Clone(current)
	slices.SortFunc(order, func(a, b *machine) int {
		ra, rb := a.bootstrapped() && a.nodeReady(), b.bootstrapped() && b.nodeReady()
		if ra != rb {
			if !ra {
				return -1
			}
			return 1
		}
		if a.cm.Spec.Init != b.cm.Spec.Init {
			if !a.cm.Spec.Init {
				return -1
			}
			return 1
		}
		return cmp.Compare(b.cm.Name, a.cm.Name)
	})
	for _, m := range order[:surplus] {
		if done, err := f.drainStep(ctx, m); err != nil || !done {
			if err != nil {
				return err
			}
			continue
		}
		if done, err := f.leaveEtcdStep(ctx, m); err != nil || !done {
			if err != nil {
				return err
			}
			continue
		}
		if err := f.release(ctx, m); err != nil {
			return err
		}
		if err := f.r.Client.Delete(ctx, m.cm); client.IgnoreNotFound(err) != nil {
			return err
		}
		f.machines = slices.DeleteFunc(f.machines, func(x *machine) bool { return x == m })
	}
	return nil
}

// release gives a machine back: reset when its registration allows it
// (deleting the inventory revokes the machine's credential; the node resets
// at its next registration and comes back as a new machine,
// docs/os/install.md), otherwise its plan is cleared and the claim removed.
func (f *formation) release(ctx context.Context, m *machine) error {
	inv := m.inv
	if inv == nil {
		return nil
	}
	releases.Inc()
	if f.resetAllowed(ctx, inv) {
		log.FromContext(ctx).Info("Releasing machine by reset", "MachineInventory", klog.KObj(inv))
		f.r.Events.Eventf(f.pc, inv, corev1.EventTypeNormal, "Released", "Reset", "Released machine %s: its MachineInventory is deleted so the machine resets and registers again", inv.Name)
		if err := client.IgnoreNotFound(f.r.Client.Delete(ctx, inv)); err != nil {
			return err
		}
		return f.deleteNode(ctx, inv.Name)
	}
	release := render.ReleasePlan
	if m.leaving {
		release = render.LeaveEtcdPlan // as applied: not rewritten
	}
	raw, err := release(string(f.pc.Spec.Distro))
	if err != nil {
		return err
	}
	if _, _, err := f.putPlan(ctx, inv, raw); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	f.r.Events.Eventf(f.pc, inv, corev1.EventTypeNormal, "Released", "Release", "Released machine %s: its plan stops its Kubernetes or is cleared (its registration does not allow a reset)", inv.Name)
	if err := adopt.Release(ctx, f.r.Client, inv, f.pc.Name); err != nil {
		return err
	}
	return f.deleteNode(ctx, inv.Name)
}

// deleteNode removes a released machine's Node from the formed cluster
// (when it is reachable; a node of an unreachable cluster stays NotReady
// there until its admin removes it).
func (f *formation) deleteNode(ctx context.Context, node string) error {
	if f.downstream == nil {
		return nil
	}
	if err := nodeops.DeleteNode(ctx, f.downstream, node); err != nil {
		log.FromContext(ctx).Error(err, "Deleting a released machine's Node through the tunnel failed; it stays NotReady in the cluster", "node", node)
	}
	f.r.nodeCache.Delete(client.ObjectKeyFromObject(f.fleetCluster))
	return nil
}

func (f *formation) resetAllowed(ctx context.Context, inv *machinesv1.MachineInventory) bool {
	ref := inv.Spec.RegistrationRef
	if ref == nil || ref.Name == "" {
		return false
	}
	ns := ref.Namespace
	if ns == "" {
		ns = inv.Namespace
	}
	var reg machinesv1.MachineRegistration
	if err := f.r.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: ref.Name}, &reg); err != nil {
		return false
	}
	cfg, err := reg.Spec.Config.Normalized()
	return err == nil && cfg.Reset.IsEnabled()
}

// chooseInit makes the first control-plane machine the init server when
// no server has bootstrapped and none is marked.
func (f *formation) chooseInit(ctx context.Context) error {
	var first *machine
	for _, m := range f.machines {
		if !m.server() {
			continue
		}
		if m.cm.Spec.Init || m.bootstrapped() {
			return nil
		}
		if first == nil {
			first = m
		}
	}
	if first == nil {
		return nil
	}
	first.cm.Spec.Init = true
	if err := f.r.Client.Update(ctx, first.cm); err != nil {
		return err
	}
	first.before.Spec.Init, first.before.ResourceVersion = true, first.cm.ResourceVersion
	return nil
}

// anchor is the server joining machines join: the init server once it
// bootstrapped, else any bootstrapped server (the init machine was lost).
func (f *formation) anchor() *machine {
	var any *machine
	for _, m := range f.machines {
		if !m.server() {
			continue
		}
		if m.cm.Spec.Init {
			if m.bootstrapped() || m.cm.Status.Version != "" {
				return m
			}
			continue
		}
		if any == nil && (m.bootstrapped() || m.cm.Status.Version != "") {
			any = m
		}
	}
	return any
}

func (f *formation) initMachine() *machine {
	for _, m := range f.machines {
		if m.server() && m.cm.Spec.Init {
			return m
		}
	}
	return nil
}

// resolveServer sets the API URL: the control-plane endpoint, or the init
// (else anchor) server's address at 6443.
func (f *formation) resolveServer() {
	if ep := f.pc.Spec.ControlPlaneEndpoint; ep != nil {
		port := ep.Port
		if port == 0 {
			port = kubedistro.DefaultAPIServerPort
		}
		f.server = "https://" + net.JoinHostPort(ep.Host, strconv.Itoa(int(port)))
		return
	}
	m := f.initMachine()
	if a := f.anchor(); a != nil {
		m = a
	}
	if m == nil || m.inv == nil {
		return
	}
	if addr := Address(m.inv); addr != "" {
		f.server = "https://" + net.JoinHostPort(addr, strconv.Itoa(kubedistro.DefaultAPIServerPort))
	}
}

// Address is a machine's address: its primary address, else its first
// non-loopback IPv4 address.
func Address(inv *machinesv1.MachineInventory) string {
	if a := inv.Status.Network.PrimaryAddress; net.ParseIP(a) != nil {
		return a
	}
	for _, a := range inv.Status.Network.Addresses {
		ip := net.ParseIP(strings.Split(a, "/")[0])
		if ip != nil && ip.To4() != nil && !ip.IsLoopback() {
			return ip.String()
		}
	}
	return ""
}
