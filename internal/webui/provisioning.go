package webui

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	provisioningv1 "github.com/edgefleet/edgefleet/api/provisioning/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/authn"
	"github.com/edgefleet/edgefleet/internal/provisioning/adopt"
)

// The Create cluster page's two server-side helpers. Both authenticate the
// caller like the API proxy; the preview reads the inventories *as them*.
const (
	// PreviewPath answers, for a ProvisionedCluster POSTed as JSON, which
	// machines each pool would adopt now: `edgefleet cluster preview`'s
	// answer (adopt.Pools and adopt.Match, the controller's own code) over
	// the MachineInventories the caller may list in the cluster's namespace.
	// Nothing is written.
	PreviewPath = "/ui/api/provisioning/preview"
	// ReleasesPath lists the Kubernetes versions cluster formation may
	// install per distro (`edgefleet server --kubernetes-releases`).
	ReleasesPath = "/ui/api/provisioning/releases"
)

// PoolPreview is one pool's match, as the page shows it.
type PoolPreview struct {
	Name     string `json:"name"`
	Selector string `json:"selector"`
	Replicas int32  `json:"replicas"`
	// Matching is how many inventories the selector matches (every group below).
	Matching int `json:"matching"`
	// Adopted are held by this cluster's pool already.
	Adopted []string `json:"adopted"`
	// WouldAdopt are the Ready free machines the pool takes now; AlsoAvailable
	// are Ready free ones it does not need.
	WouldAdopt    []string `json:"wouldAdopt"`
	AlsoAvailable []string `json:"alsoAvailable"`
	NotReady      []string `json:"notReady"`
	// Taken match but another cluster (or an earlier pool) holds them.
	Taken   []TakenMachine `json:"taken"`
	Missing int            `json:"missing"`
	// Message says what the pool would wait for ("" when it has enough).
	Message string `json:"message,omitempty"`
}

// TakenMachine is a matching machine someone else holds.
type TakenMachine struct {
	Name string `json:"name"`
	// By is "cluster/pool".
	By string `json:"by"`
}

// Preview is the answer of PreviewPath.
type Preview struct {
	Namespace string `json:"namespace"`
	// Inventories is how many MachineInventories the namespace holds.
	Inventories int           `json:"inventories"`
	Pools       []PoolPreview `json:"pools"`
}

// Releases is the answer of ReleasesPath.
type Releases struct {
	// Configured is false when the manager has no list: any version in the
	// distro's spelling goes (the edgefleet distro then needs spec.binaries).
	Configured bool                `json:"configured"`
	Versions   map[string][]string `json:"versions"`
}

type provisioningRoutes struct {
	p        *proxy
	releases Releases
}

func newProvisioningRoutes(p *proxy, versions map[string][]string) *provisioningRoutes {
	r := Releases{Configured: versions != nil, Versions: versions}
	if r.Versions == nil {
		r.Versions = map[string][]string{}
	}
	return &provisioningRoutes{p: p, releases: r}
}

func (h *provisioningRoutes) serveReleases(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeStatus(w, http.StatusMethodNotAllowed, "the release list is read-only")
		return
	}
	if !fromUI(w, r) {
		return
	}
	if _, ok := h.p.authenticate(w, r); !ok {
		return
	}
	writeJSON(w, h.releases)
}

func (h *provisioningRoutes) servePreview(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeStatus(w, http.StatusMethodNotAllowed, "POST the ProvisionedCluster to preview")
		return
	}
	if !fromUI(w, r) {
		return
	}
	user, ok := h.p.authenticate(w, r)
	if !ok {
		return
	}
	pc := &provisioningv1.ProvisionedCluster{}
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(pc); err != nil {
		writeStatus(w, http.StatusBadRequest, "the preview takes a ProvisionedCluster as JSON: "+err.Error())
		return
	}
	if pc.Namespace == "" {
		writeStatus(w, http.StatusBadRequest, "the preview needs metadata.namespace: the namespace whose MachineInventories the pools choose from")
		return
	}
	if errs := validation.IsDNS1123Label(pc.Namespace); len(errs) > 0 {
		writeStatus(w, http.StatusBadRequest, fmt.Sprintf("metadata.namespace %q is not a namespace name: %s", pc.Namespace, strings.Join(errs, "; ")))
		return
	}
	pools, err := adopt.Pools(pc)
	if err != nil {
		writeStatus(w, http.StatusUnprocessableEntity, err.Error())
		return
	}
	invs, code, msg := h.listInventories(r, user, pc.Namespace)
	if code != 0 {
		writeStatus(w, code, msg)
		return
	}
	out := Preview{Namespace: pc.Namespace, Inventories: len(invs), Pools: []PoolPreview{}}
	for _, m := range adopt.Match(pc.Name, pools, invs) {
		take, rest := m.WouldAdopt()
		pp := PoolPreview{Name: m.Pool.Name, Selector: m.Pool.Selector.String(), Replicas: m.Pool.Replicas,
			Adopted: orEmpty(m.Adopted), WouldAdopt: orEmpty(take), AlsoAvailable: orEmpty(rest), NotReady: orEmpty(m.NotReady),
			Taken: []TakenMachine{}, Missing: m.Missing(), Message: m.Message()}
		for _, name := range slices.Sorted(maps.Keys(m.Taken)) {
			pp.Taken = append(pp.Taken, TakenMachine{Name: name, By: m.Taken[name]})
		}
		pp.Matching = len(m.Adopted) + len(m.Available) + len(m.NotReady) + len(m.Taken)
		out.Pools = append(out.Pools, pp)
	}
	writeJSON(w, out)
}

// listInventories lists the namespace's MachineInventories impersonating
// user, page by page; a refusal comes back with the API's code and message.
func (h *provisioningRoutes) listInventories(r *http.Request, user *authn.User, ns string) ([]machinesv1.MachineInventory, int, string) {
	var all []machinesv1.MachineInventory
	cont := ""
	for {
		q := url.Values{"limit": {"500"}}
		if cont != "" {
			q.Set("continue", cont)
		}
		var page matchList
		if code, msg := h.p.getAs(r.Context(), user, q, 64<<20, "the MachineInventories of "+ns, &page,
			"apis", machinesv1.GroupVersion.Group, machinesv1.GroupVersion.Version, "namespaces", url.PathEscape(ns), "machineinventories"); code != 0 {
			return nil, code, msg
		}
		for _, it := range page.Items {
			inv := machinesv1.MachineInventory{ObjectMeta: metav1.ObjectMeta{Name: it.Metadata.Name, Namespace: ns, Labels: it.Metadata.Labels,
				DeletionTimestamp: it.Metadata.DeletionTimestamp}}
			for _, c := range it.Status.Conditions {
				inv.Status.Conditions = append(inv.Status.Conditions, metav1.Condition{Type: c.Type, Status: metav1.ConditionStatus(c.Status)})
			}
			all = append(all, inv)
		}
		if cont = page.Metadata.Continue; cont == "" {
			return all, 0, ""
		}
	}
}

// matchList is a MachineInventoryList as far as matching reads it (name,
// labels, deletion, condition statuses): decoding nothing else (managed
// fields, plan reports, hardware) keeps a preview over thousands of
// machines cheap.
type matchList struct {
	Metadata struct {
		Continue string `json:"continue"`
	} `json:"metadata"`
	Items []struct {
		Metadata struct {
			Name              string            `json:"name"`
			Labels            map[string]string `json:"labels"`
			DeletionTimestamp *metav1.Time      `json:"deletionTimestamp"`
		} `json:"metadata"`
		Status struct {
			Conditions []struct {
				Type   string `json:"type"`
				Status string `json:"status"`
			} `json:"conditions"`
		} `json:"status"`
	} `json:"items"`
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
