package clusterregistration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/authn"
	"github.com/edgefleet/edgefleet/internal/content"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
)

// contentsPath is where a Content is read through the agents' API proxy.
var contentsPath = clusterjoin.ManagerAPIPrefix + "/apis/" + fleetv1.GroupVersion.String() + "/contents/"

// contentGuard answers a cluster credential's GET of a Content itself: the
// Content must be, or be a chunk of, the content of a BundleDeployment in
// that cluster's namespace. Cluster credentials have no RBAC right on
// Contents (names are content hashes, but a hash is no secret: it appears
// in every BundleDeployment, Bundle and status), so this is the only way an
// agent reads them, and it reads only its own bundles'. Every other request
// goes to next unchanged.
type contentGuard struct {
	auth   *authn.Authenticator
	cache  client.Reader // the manager cache: BundleDeployments
	direct client.Reader // Contents (large, never cached)
	next   http.Handler

	mu     sync.Mutex
	chunks map[string][]string // content name → its chunks; immutable
}

// maxChunkLists bounds the chunk-list memo (a few hundred bytes each).
const maxChunkLists = 4096

func (g *contentGuard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutPrefix(r.URL.Path, contentsPath)
	if !ok || r.Method != http.MethodGet || name == "" || strings.Contains(name, "/") {
		g.next.ServeHTTP(w, r)
		return
	}
	ns, isCluster := g.clusterNamespace(r)
	if !isCluster {
		g.next.ServeHTTP(w, r)
		return
	}
	allowed, err := g.allowed(r.Context(), ns, name)
	if err != nil {
		writeStatus(w, apierrors.NewServiceUnavailable(fmt.Sprintf("checking access to content %s: %v", name, err)))
		return
	}
	if !allowed {
		writeStatus(w, apierrors.NewForbidden(fleetv1.GroupVersion.WithResource("contents").GroupResource(), name,
			fmt.Errorf("no BundleDeployment in namespace %s uses this content: a cluster reads only its own bundles' content", ns)))
		return
	}
	var c fleetv1.Content
	if err := g.direct.Get(r.Context(), client.ObjectKey{Name: name}, &c); err != nil {
		if status, ok := err.(apierrors.APIStatus); ok {
			writeStatus(w, status)
			return
		}
		writeStatus(w, apierrors.NewServiceUnavailable(fmt.Sprintf("reading content %s: %v", name, err)))
		return
	}
	c.APIVersion, c.Kind = fleetv1.GroupVersion.String(), "Content"
	c.ManagedFields = nil
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(&c)
}

// clusterNamespace returns the cluster namespace whose credential r
// carries. Anything else (no token, an admin's, an invalid one) is left to
// the kube-apiserver behind the proxy.
func (g *contentGuard) clusterNamespace(r *http.Request) (string, bool) {
	tok := authn.BearerToken(r)
	if tok == "" {
		return "", false
	}
	u, err := g.auth.Token(r.Context(), tok)
	if err != nil {
		return "", false
	}
	ns, sa, ok := u.ServiceAccount()
	if !ok || sa != clusterjoin.ClusterServiceAccount {
		return "", false
	}
	return ns, true
}

// allowed: name is the content, or one of its chunks, of a
// BundleDeployment (current or staged) in ns.
func (g *contentGuard) allowed(ctx context.Context, ns, name string) (bool, error) {
	var bds fleetv1.BundleDeploymentList
	if err := g.cache.List(ctx, &bds, client.InNamespace(ns)); err != nil {
		return false, err
	}
	var ids []string
	for i := range bds.Items {
		for _, d := range []string{bds.Items[i].Spec.DeploymentID, bds.Items[i].Spec.StagedDeploymentID} {
			if id := content.DeploymentID(d).ContentsID(); id != "" {
				if id == name {
					return true, nil
				}
				ids = append(ids, id)
			}
		}
	}
	if !strings.HasPrefix(name, "c-") {
		return false, nil
	}
	for _, id := range ids {
		chunks, err := g.chunksOf(ctx, id)
		if err != nil {
			return false, err
		}
		for _, c := range chunks {
			if c == name {
				return true, nil
			}
		}
	}
	return false, nil
}

// chunksOf returns the chunk names of content id, memoised: a Content's name
// is the hash of what it holds, so its chunk list never changes.
func (g *contentGuard) chunksOf(ctx context.Context, id string) ([]string, error) {
	g.mu.Lock()
	chunks, ok := g.chunks[id]
	g.mu.Unlock()
	if ok {
		return chunks, nil
	}
	var c fleetv1.Content
	if err := g.direct.Get(ctx, client.ObjectKey{Name: id}, &c); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	g.mu.Lock()
	if g.chunks == nil || len(g.chunks) >= maxChunkLists {
		g.chunks = map[string][]string{}
	}
	g.chunks[id] = c.Chunks
	g.mu.Unlock()
	return c.Chunks, nil
}

// writeStatus writes a Kubernetes Status, so clients see the usual
// Forbidden/NotFound errors.
func writeStatus(w http.ResponseWriter, err apierrors.APIStatus) {
	st := err.Status()
	st.APIVersion, st.Kind = "v1", "Status"
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(int(st.Code))
	_ = json.NewEncoder(w).Encode(&st)
}
