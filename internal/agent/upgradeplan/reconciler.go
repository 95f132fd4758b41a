package upgradeplan

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	upgradev1 "github.com/edgefleet/edgefleet/api/upgrade/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/controller/conditions"
)

// SUC's condition types, set next to Ready/Reconciling/Stalled.
const (
	CondLatestResolved = "LatestResolved"
	CondValidated      = "Validated"
	CondComplete       = "Complete"
)

// Reasons the controller sets.
const (
	ReasonInvalid      = "Invalid"
	ReasonValid        = "Valid"
	ReasonVersion      = "Version"
	ReasonChannel      = "Channel"
	ReasonChannelError = "ChannelError"
	ReasonJobFailed    = "JobFailed"
	ReasonDrainFailed  = "DrainFailed"
	ReasonApplying     = "Applying"
	ReasonComplete     = "Complete"
	ReasonNoNodes      = "NoNodes"
)

// Reconciler runs Plans on the cluster it is connected to.
type Reconciler struct {
	// Client reads through the cache (Plans, Nodes, the controller's Jobs)
	// and writes.
	Client client.Client
	// Reader reads uncached: pods of a node, Secrets.
	Reader client.Reader
	// HTTP asks channel servers.
	HTTP *http.Client
	// ClusterID is sent to channel servers (X-SUC-Cluster-ID).
	ClusterID string
	// Jobs are the agent-wide Job settings.
	Jobs JobSettings
	// Poll is how often a draining or upgrading plan is looked at again
	// besides its Jobs' and nodes' events.
	Poll time.Duration
	// Now is the clock (tests).
	Now func() time.Time
}

// node is one selected node's place in the plan.
type nodeState struct {
	node  *corev1.Node
	job   *batchv1.Job
	state upgradev1.NodeUpgradeState
	since *metav1.Time
	msg   string
}

// Reconcile moves one Plan forward: resolve the version, select nodes,
// finish nodes whose Job completed, stop at a failure, start nodes within
// concurrency (cordon, drain, Job), and report.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	logger := log.FromContext(ctx)
	plan := &upgradev1.Plan{}
	if err := r.Client.Get(ctx, req.NamespacedName, plan); err != nil {
		if apierrors.IsNotFound(err) {
			// Gone (SUC leaves its nodes cordoned, SUC#71): make the nodes
			// it cordoned schedulable again.
			return ctrl.Result{}, r.releaseNodes(ctx, req.NamespacedName)
		}
		return ctrl.Result{}, err
	}
	if plan.DeletionTimestamp != nil {
		return ctrl.Result{}, nil
	}
	before := plan.DeepCopy()
	gen := plan.Generation
	st := &plan.Status
	conds := &st.Conditions

	if err := Validate(plan); err != nil {
		conditions.Set(conds, CondValidated, metav1.ConditionFalse, ReasonInvalid, err.Error(), gen)
		conditions.MarkStalled(conds, ReasonInvalid, err.Error(), gen)
		return ctrl.Result{}, conditions.PatchStatus(ctx, r.Client, before, plan, &st.ObservedGeneration, nil)
	}
	conditions.Set(conds, CondValidated, metav1.ConditionTrue, ReasonValid, "the plan is valid", gen)

	version, requeue, err := r.latestVersion(ctx, plan)
	if err != nil {
		// A channel outage is retried; nothing changes on the nodes.
		conditions.Set(conds, CondLatestResolved, metav1.ConditionFalse, ReasonChannelError, err.Error(), gen)
		conditions.Set(conds, conditions.Ready, metav1.ConditionFalse, ReasonChannelError, err.Error(), gen)
		conditions.MarkReconciling(conds, ReasonChannelError, err.Error(), gen)
		if perr := conditions.PatchStatus(ctx, r.Client, before, plan, &st.ObservedGeneration, err); perr != nil {
			return ctrl.Result{}, perr
		}
		return ctrl.Result{RequeueAfter: time.Minute}, nil
	}

	secretHashes, err := r.secretHashes(ctx, plan)
	if err != nil {
		var missing *missingSecret
		if errors.As(err, &missing) {
			conditions.Set(conds, CondValidated, metav1.ConditionFalse, ReasonInvalid, err.Error(), gen)
			conditions.MarkStalled(conds, ReasonInvalid, err.Error(), gen)
			return ctrl.Result{RequeueAfter: time.Minute}, conditions.PatchStatus(ctx, r.Client, before, plan, &st.ObservedGeneration, nil)
		}
		return ctrl.Result{}, err
	}
	hash := Hash(plan, version, secretHashes)
	if st.LatestHash != hash || plan.Generation != st.ObservedGeneration {
		// A new version (or service account, or secret), or a changed
		// spec: earlier drain failures are tried again. Failed Jobs of
		// this hash still stop the plan until they are deleted.
		st.Nodes = nil
	}
	st.LatestVersion, st.LatestHash = version, hash

	nodes, err := r.selectNodes(ctx, plan)
	if err != nil {
		return ctrl.Result{}, err
	}
	var jobs batchv1.JobList
	if err := r.Client.List(ctx, &jobs, client.InNamespace(plan.Namespace), client.MatchingLabels{LabelController: ControllerName, LabelPlan: plan.Name}); err != nil {
		return ctrl.Result{}, fmt.Errorf("listing the plan's Jobs: %w", err)
	}
	if err := r.releaseUnselected(ctx, plan, nodes, jobs.Items); err != nil {
		return ctrl.Result{}, err
	}
	jobOf := map[string]*batchv1.Job{}
	for i := range jobs.Items {
		j := &jobs.Items[i]
		if j.Labels[NodeLabel(plan.Name)] == hash && metav1.IsControlledBy(j, plan) {
			jobOf[j.Labels[LabelNode]] = j
		}
	}
	previous := map[string]upgradev1.NodeUpgradeStatus{}
	for _, n := range st.Nodes {
		previous[n.Name] = n
	}

	now := metav1.NewTime(r.Now())
	var total, upgraded int32
	var active, waiting, failed []*nodeState
	for i := range nodes {
		n := &nodes[i]
		total++
		if n.Labels[NodeLabel(plan.Name)] == hash {
			upgraded++
			continue
		}
		s := &nodeState{node: n, job: jobOf[n.Name]}
		prev, had := previous[n.Name]
		if had {
			s.state, s.since, s.msg = prev.State, prev.Since, prev.Message
		}
		switch {
		case s.job != nil && jobDone(s.job, batchv1.JobComplete):
			if err := r.finishNode(ctx, plan, n, hash); err != nil {
				return ctrl.Result{}, err
			}
			upgraded++
			continue
		case s.job != nil && jobDone(s.job, batchv1.JobFailed):
			s.state, s.msg = upgradev1.NodeFailed, "Job "+s.job.Name+" failed: "+jobFailure(s.job)
			failed = append(failed, s)
		case s.job != nil:
			s.state = upgradev1.NodeUpgrading
			active = append(active, s)
		case had && prev.State == upgradev1.NodeFailed && prev.Job == "":
			// A drain that failed stays failed until the spec changes.
			failed = append(failed, s)
		case had && prev.State == upgradev1.NodeFailed:
			// Its failed Job was deleted: the node is tried again.
			s.state, s.since, s.msg = "", nil, ""
			waiting = append(waiting, s)
		case had:
			active = append(active, s)
		default:
			waiting = append(waiting, s)
		}
	}

	// A failure stops the plan: no node starts, nodes under way finish.
	if len(failed) == 0 {
		sortCandidates(waiting, plan, hash)
		for len(active) < int(plan.Spec.Concurrency) && len(waiting) > 0 {
			s := waiting[0]
			waiting = waiting[1:]
			s.state, s.since = upgradev1.NodeCordoning, &now
			active = append(active, s)
		}
	}
	var stillActive []*nodeState
	for _, s := range active {
		if s.job == nil {
			if err := r.startNode(ctx, plan, s, version, hash, now.Time); err != nil {
				return ctrl.Result{}, err
			}
		}
		if s.state == upgradev1.NodeFailed {
			failed = append(failed, s)
			continue
		}
		stillActive = append(stillActive, s)
	}
	active = stillActive

	st.Total, st.Upgraded = total, upgraded
	st.Applying = nil
	st.Nodes = nil
	for _, s := range append(append([]*nodeState{}, active...), failed...) {
		if s.state != upgradev1.NodeFailed {
			st.Applying = append(st.Applying, s.node.Name)
		}
		ns := upgradev1.NodeUpgradeStatus{Name: s.node.Name, State: s.state, Since: s.since, Message: truncate(s.msg, 1024)}
		if s.job != nil {
			ns.Job = s.job.Name
		}
		if len(st.Nodes) < 1000 {
			st.Nodes = append(st.Nodes, ns)
		}
	}
	sort.Strings(st.Applying)
	sort.Slice(st.Nodes, func(i, j int) bool { return st.Nodes[i].Name < st.Nodes[j].Name })

	result := ctrl.Result{RequeueAfter: requeue}
	switch {
	case len(failed) > 0:
		f := failed[0]
		reason := ReasonJobFailed
		if f.job == nil {
			reason = ReasonDrainFailed
		}
		msg := fmt.Sprintf("node %s failed, the plan is stopped (no further nodes start; %d of %d upgraded): %s", f.node.Name, upgraded, total, f.msg)
		if len(failed) > 1 {
			msg += fmt.Sprintf(" (and %d more nodes failed)", len(failed)-1)
		}
		conditions.Set(conds, CondComplete, metav1.ConditionFalse, reason, msg, gen)
		conditions.MarkStalled(conds, reason, msg, gen)
		logger.Info("Plan stopped by a failed node", "Node", klog.KObj(f.node), "reason", reason)
	case total == 0:
		msg := "the node selector selects no node"
		conditions.Set(conds, CondComplete, metav1.ConditionTrue, ReasonNoNodes, msg, gen)
		conditions.MarkReady(conds, ReasonNoNodes, msg, gen)
	case upgraded == total:
		msg := fmt.Sprintf("all %d nodes run version %s", total, version)
		conditions.Set(conds, CondComplete, metav1.ConditionTrue, ReasonComplete, msg, gen)
		conditions.MarkReady(conds, ReasonComplete, msg, gen)
	default:
		msg := fmt.Sprintf("%d of %d nodes upgraded to %s; applying on %s", upgraded, total, version, strings.Join(st.Applying, ", "))
		conditions.Set(conds, CondComplete, metav1.ConditionFalse, ReasonApplying, msg, gen)
		conditions.Set(conds, conditions.Ready, metav1.ConditionFalse, ReasonApplying, msg, gen)
		conditions.MarkReconciling(conds, ReasonApplying, msg, gen)
		if result.RequeueAfter == 0 || result.RequeueAfter > r.Poll {
			result.RequeueAfter = r.Poll
		}
	}
	if err := conditions.PatchStatus(ctx, r.Client, before, plan, &st.ObservedGeneration, nil); err != nil {
		if apierrors.IsConflict(err) {
			// Read from a cache a step behind our own last write: look
			// again shortly, without the error backoff (everything done
			// above is idempotent).
			return ctrl.Result{RequeueAfter: 100 * time.Millisecond}, nil
		}
		return ctrl.Result{}, err
	}
	return result, nil
}

// Validate refuses what the controller cannot act on, with the fix.
func Validate(p *upgradev1.Plan) error {
	var errs []string
	if msgs := validation.IsDNS1123Label(p.Name); len(msgs) > 0 {
		errs = append(errs, "the plan's name must be a DNS label of at most 63 characters (it is part of the node label plan.upgrade.cattle.io/<name>): "+strings.Join(msgs, "; "))
	}
	if p.Spec.Upgrade == nil || p.Spec.Upgrade.Image == "" {
		errs = append(errs, "spec.upgrade.image is required")
	}
	if p.Spec.Prepare != nil && p.Spec.Prepare.Image == "" {
		errs = append(errs, "spec.prepare.image is required when prepare is set")
	}
	if p.Spec.Version == "" && p.Spec.Channel == "" {
		errs = append(errs, "set spec.version or spec.channel")
	}
	if p.Spec.Concurrency < 1 {
		errs = append(errs, "spec.concurrency must be at least 1")
	}
	if p.Spec.NodeSelector != nil {
		if _, err := metav1.LabelSelectorAsSelector(p.Spec.NodeSelector); err != nil {
			errs = append(errs, "spec.nodeSelector: "+err.Error())
		}
	}
	if d := p.Spec.Drain; d != nil {
		if d.DeleteLocalData != nil && d.DeleteEmptydirData != nil {
			errs = append(errs, "spec.drain: set deleteEmptydirData or its old name deleteLocalData, not both")
		}
		if d.PodSelector != nil {
			if _, err := metav1.LabelSelectorAsSelector(d.PodSelector); err != nil {
				errs = append(errs, "spec.drain.podSelector: "+err.Error())
			}
		}
		if d.Timeout != nil && d.Timeout.Duration < 0 {
			errs = append(errs, "spec.drain.timeout must not be negative")
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// latestVersion is spec.version, or the channel's answer (asked at most
// every ChannelPollInterval; the answer is kept in status.latestVersion).
func (r *Reconciler) latestVersion(ctx context.Context, p *upgradev1.Plan) (string, time.Duration, error) {
	gen := p.Generation
	if p.Spec.Version != "" {
		conditions.Set(&p.Status.Conditions, CondLatestResolved, metav1.ConditionTrue, ReasonVersion, "spec.version "+p.Spec.Version, gen)
		return p.Spec.Version, 0, nil
	}
	c := meta.FindStatusCondition(p.Status.Conditions, CondLatestResolved)
	if c != nil && c.Status == metav1.ConditionTrue && c.Reason == ReasonChannel && c.ObservedGeneration == gen && p.Status.LatestVersion != "" {
		if age := r.Now().Sub(c.LastTransitionTime.Time); age < ChannelPollInterval {
			return p.Status.LatestVersion, ChannelPollInterval - age, nil
		}
	}
	v, err := ResolveChannel(ctx, r.HTTP, p.Spec.Channel, r.ClusterID, p.Status.LatestVersion)
	if err != nil {
		return "", 0, err
	}
	// A fresh transition time restarts the poll interval.
	meta.RemoveStatusCondition(&p.Status.Conditions, CondLatestResolved)
	conditions.Set(&p.Status.Conditions, CondLatestResolved, metav1.ConditionTrue, ReasonChannel, "channel "+p.Spec.Channel+" names "+v, gen)
	return v, ChannelPollInterval, nil
}

type missingSecret struct{ msg string }

func (e *missingSecret) Error() string { return e.msg }

func (r *Reconciler) secretHashes(ctx context.Context, p *upgradev1.Plan) ([]string, error) {
	var out []string
	for _, s := range p.Spec.Secrets {
		if s.IgnoreUpdates {
			continue
		}
		sec := &corev1.Secret{}
		if err := r.Reader.Get(ctx, types.NamespacedName{Namespace: p.Namespace, Name: s.Name}, sec); err != nil {
			if apierrors.IsNotFound(err) {
				return nil, &missingSecret{fmt.Sprintf("spec.secrets: Secret %s/%s does not exist; create it or remove it from the plan", p.Namespace, s.Name)}
			}
			return nil, fmt.Errorf("reading Secret %s/%s: %w", p.Namespace, s.Name, err)
		}
		out = append(out, SecretHash(sec))
	}
	return out, nil
}

// selectNodes lists the nodes the plan selects: its selector AND a hostname
// label AND not disabled for this plan (nodes done are counted by the
// caller).
func (r *Reconciler) selectNodes(ctx context.Context, p *upgradev1.Plan) ([]corev1.Node, error) {
	sel := labels.Everything()
	if p.Spec.NodeSelector != nil {
		s, err := metav1.LabelSelectorAsSelector(p.Spec.NodeSelector)
		if err != nil {
			return nil, err
		}
		sel = s
	}
	exists, _ := labels.NewRequirement(hostnameLabel, selection.Exists, nil)
	notDisabled, _ := labels.NewRequirement(NodeLabel(p.Name), selection.NotEquals, []string{Disabled})
	sel = sel.Add(*exists, *notDisabled)
	var nodes corev1.NodeList
	if err := r.Client.List(ctx, &nodes, client.MatchingLabelsSelector{Selector: sel}); err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	return nodes.Items, nil
}

// sortCandidates orders waiting nodes as SUC does: by sha256 of node UID,
// plan UID and hash, a shuffle that is the same on every pass. Nodes this
// plan cordoned already (a spec change or a new version reset their state)
// come first, so no node stays cordoned waiting for its turn.
func sortCandidates(s []*nodeState, p *upgradev1.Plan, hash string) {
	mine := p.Namespace + "/" + p.Name
	key := func(n *corev1.Node) string {
		h := sha256.Sum256([]byte(string(n.UID) + string(p.UID) + hash))
		first := "1"
		if n.Annotations[AnnotationCordonedBy] == mine {
			first = "0"
		}
		return first + hex.EncodeToString(h[:])
	}
	sort.Slice(s, func(i, j int) bool { return key(s[i].node) < key(s[j].node) })
}

// startNode moves a node towards its Job: cordon, drain, then create it.
func (r *Reconciler) startNode(ctx context.Context, p *upgradev1.Plan, s *nodeState, version, hash string, now time.Time) error {
	n := s.node
	if (p.Spec.Cordon || p.Spec.Drain != nil) && !n.Spec.Unschedulable {
		if err := cordon(ctx, r.Client, n, p.Namespace+"/"+p.Name); err != nil {
			return err
		}
	}
	if d := p.Spec.Drain; d != nil {
		if s.state != upgradev1.NodeDraining {
			s.state, s.since = upgradev1.NodeDraining, &metav1.Time{Time: now}
		}
		res, err := drainNode(ctx, r.Client, r.Reader, n.Name, d, now)
		var refused *drainRefused
		if errors.As(err, &refused) {
			s.state, s.msg = upgradev1.NodeFailed, refused.msg
			return nil
		}
		if err != nil {
			return err
		}
		if !res.done {
			s.msg = res.waiting
			if d.Timeout != nil && d.Timeout.Duration > 0 && s.since != nil && now.Sub(s.since.Time) > d.Timeout.Duration {
				s.state, s.msg = upgradev1.NodeFailed, fmt.Sprintf("drain timed out after %s: %s", d.Timeout.Duration, res.waiting)
			}
			return nil
		}
	}
	job := NewJob(p, n, version, hash, r.Jobs)
	if err := r.Client.Create(ctx, job); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating Job %s for node %s: %w", job.Name, n.Name, err)
	}
	s.job, s.state, s.since, s.msg = job, upgradev1.NodeUpgrading, &metav1.Time{Time: now}, ""
	return nil
}

// AnnotationCordonedBy on a node names the plan (namespace/name) that
// cordoned it: only that plan makes it schedulable again, so a node someone
// else cordoned stays cordoned.
const AnnotationCordonedBy = "upgrade.edgefleet.io/cordoned-by"

// finishNode labels a node done with hash and makes it schedulable again
// when the plan cordoned it.
func (r *Reconciler) finishNode(ctx context.Context, p *upgradev1.Plan, n *corev1.Node, hash string) error {
	patch := client.MergeFrom(n.DeepCopy())
	done := n.DeepCopy()
	if done.Labels == nil {
		done.Labels = map[string]string{}
	}
	done.Labels[NodeLabel(p.Name)] = hash
	if done.Annotations[AnnotationCordonedBy] == p.Namespace+"/"+p.Name {
		done.Spec.Unschedulable = false
		delete(done.Annotations, AnnotationCordonedBy)
	}
	if err := r.Client.Patch(ctx, done, patch); err != nil {
		return fmt.Errorf("labelling node %s done: %w", n.Name, err)
	}
	return nil
}

func cordon(ctx context.Context, c client.Client, n *corev1.Node, by string) error {
	patch := client.MergeFrom(n.DeepCopy())
	n.Spec.Unschedulable = true
	if n.Annotations == nil {
		n.Annotations = map[string]string{}
	}
	n.Annotations[AnnotationCordonedBy] = by
	if err := c.Patch(ctx, n, patch); err != nil {
		return fmt.Errorf("cordoning node %s: %w", n.Name, err)
	}
	return nil
}

// releaseUnselected uncordons the nodes this plan cordoned that left its
// selector before their upgrade Job started (relabelled mid-drain, say):
// SUC keeps them cordoned until the plan is deleted; nothing will upgrade
// them, so they are given back now. A node whose Job still runs keeps its
// cordon until the Job ends.
func (r *Reconciler) releaseUnselected(ctx context.Context, p *upgradev1.Plan, selected []corev1.Node, jobs []batchv1.Job) error {
	mine := p.Namespace + "/" + p.Name
	var nodes corev1.NodeList
	if err := r.Client.List(ctx, &nodes); err != nil {
		return fmt.Errorf("listing nodes: %w", err)
	}
	for i := range nodes.Items {
		n := &nodes.Items[i]
		if n.Annotations[AnnotationCordonedBy] != mine || slices.ContainsFunc(selected, func(s corev1.Node) bool { return s.Name == n.Name }) {
			continue
		}
		if slices.ContainsFunc(jobs, func(j batchv1.Job) bool {
			return j.Labels[LabelNode] == n.Name && !jobDone(&j, batchv1.JobComplete) && !jobDone(&j, batchv1.JobFailed)
		}) {
			continue
		}
		patch := client.MergeFrom(n.DeepCopy())
		n.Spec.Unschedulable = false
		delete(n.Annotations, AnnotationCordonedBy)
		if err := r.Client.Patch(ctx, n, patch); err != nil {
			return fmt.Errorf("uncordoning node %s, which left plan %s's selector: %w", n.Name, mine, err)
		}
		log.FromContext(ctx).Info("Uncordoned a node that left the plan's selector before its upgrade", "Node", klog.KObj(n))
	}
	return nil
}

// releaseNodes uncordons the nodes a deleted plan cordoned.
func (r *Reconciler) releaseNodes(ctx context.Context, plan types.NamespacedName) error {
	var nodes corev1.NodeList
	if err := r.Client.List(ctx, &nodes); err != nil {
		return fmt.Errorf("listing nodes: %w", err)
	}
	for i := range nodes.Items {
		n := &nodes.Items[i]
		if n.Annotations[AnnotationCordonedBy] != plan.String() {
			continue
		}
		patch := client.MergeFrom(n.DeepCopy())
		n.Spec.Unschedulable = false
		delete(n.Annotations, AnnotationCordonedBy)
		if err := r.Client.Patch(ctx, n, patch); err != nil {
			return fmt.Errorf("uncordoning node %s after plan %s was deleted: %w", n.Name, plan, err)
		}
		log.FromContext(ctx).Info("Uncordoned the node of a deleted plan", "Node", klog.KObj(n))
	}
	return nil
}

func jobDone(j *batchv1.Job, t batchv1.JobConditionType) bool {
	for _, c := range j.Status.Conditions {
		if c.Type == t && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

func jobFailure(j *batchv1.Job) string {
	for _, c := range j.Status.Conditions {
		if c.Type == batchv1.JobFailed && c.Status == corev1.ConditionTrue {
			return strings.TrimSpace(c.Reason + ": " + c.Message)
		}
	}
	return "failed"
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }
