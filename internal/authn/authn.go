// Package authn tells the manager's endpoint who is calling: a bearer token
// is checked with the manager's kube-apiserver (TokenReview), a client
// certificate was already verified against the manager CA by TLS. Positive
// answers are cached briefly so proxied requests do not pay a TokenReview
// each.
package authn

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/cache"
	"k8s.io/client-go/kubernetes"
)

// CacheTTL is how long a successful TokenReview is reused. A revoked token
// (deleted ServiceAccount) stops working at most this long after.
const CacheTTL = 10 * time.Second

// FailureCacheTTL is how long a refused token is refused without asking the
// kube-apiserver again: a flood of bad tokens costs one TokenReview per
// distinct token per period, not one per request.
const FailureCacheTTL = 5 * time.Second

// cacheSize bounds each cache (least recently used entries go first), so a
// flood of distinct tokens cannot grow memory.
const cacheSize = 10000

// User is an authenticated caller.
type User struct {
	Name   string
	UID    string
	Groups []string
	Extra  map[string][]string
}

// ErrUnauthenticated means no valid credential came with the request.
var ErrUnauthenticated = errors.New("no valid credential: send a bearer token or a client certificate the manager trusts")

// Authenticator authenticates requests.
type Authenticator struct {
	Client kubernetes.Interface

	once   sync.Once
	good   *cache.LRUExpireCache // sha256(token) -> *User
	failed *cache.LRUExpireCache // sha256(token) -> struct{}
}

func (a *Authenticator) caches() (good, failed *cache.LRUExpireCache) {
	a.once.Do(func() {
		a.good = cache.NewLRUExpireCache(cacheSize)
		a.failed = cache.NewLRUExpireCache(cacheSize)
	})
	return a.good, a.failed
}

// BearerToken returns the request's bearer token, if any.
func BearerToken(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// Authenticate identifies the caller of r.
func (a *Authenticator) Authenticate(ctx context.Context, r *http.Request) (*User, error) {
	if tok := BearerToken(r); tok != "" {
		return a.Token(ctx, tok)
	}
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		cert := r.TLS.VerifiedChains[0][0]
		if cert.Subject.CommonName == "" {
			return nil, ErrUnauthenticated
		}
		return &User{Name: cert.Subject.CommonName, Groups: append(append([]string(nil), cert.Subject.Organization...), "system:authenticated")}, nil
	}
	return nil, ErrUnauthenticated
}

// Token checks a bearer token with a TokenReview. Both answers are cached
// briefly: successes for CacheTTL, refusals for FailureCacheTTL.
func (a *Authenticator) Token(ctx context.Context, token string) (*User, error) {
	key := sha256.Sum256([]byte(token))
	good, failed := a.caches()
	if u, ok := good.Get(key); ok {
		return u.(*User), nil
	}
	if _, ok := failed.Get(key); ok {
		return nil, ErrUnauthenticated
	}
	tr, err := a.Client.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: token}}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("reviewing token: %w", err)
	}
	if !tr.Status.Authenticated {
		failed.Add(key, struct{}{}, FailureCacheTTL)
		return nil, ErrUnauthenticated
	}
	u := &User{Name: tr.Status.User.Username, UID: tr.Status.User.UID, Groups: tr.Status.User.Groups}
	if len(tr.Status.User.Extra) > 0 {
		u.Extra = map[string][]string{}
		for k, v := range tr.Status.User.Extra {
			u.Extra[k] = v
		}
	}
	good.Add(key, u, CacheTTL)
	return u, nil
}

// ServiceAccount splits "system:serviceaccount:<ns>:<name>".
func (u *User) ServiceAccount() (namespace, name string, ok bool) {
	rest, ok := strings.CutPrefix(u.Name, "system:serviceaccount:")
	if !ok {
		return "", "", false
	}
	namespace, name, ok = strings.Cut(rest, ":")
	return namespace, name, ok
}
