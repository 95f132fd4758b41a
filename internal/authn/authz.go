package authn

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"

	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/cache"
	"k8s.io/client-go/kubernetes"
)

// AuthzCacheTTL is how long a SubjectAccessReview's answer is reused: a
// removed RoleBinding stops granting at most this long after.
const AuthzCacheTTL = 5 * time.Second

// Authorizer asks the manager's kube-apiserver whether a caller may do
// something (SubjectAccessReview), so the manager's RBAC decides who may use
// the endpoint's authenticated routes.
type Authorizer struct {
	Client kubernetes.Interface

	once  sync.Once
	cache *cache.LRUExpireCache // sha256(user, attributes) -> decision
}

type decision struct {
	allowed bool
	reason  string
}

// Allowed reports whether u may do what attrs (resource) or path/verb
// (non-resource, when attrs is nil) describe; reason explains a refusal.
func (a *Authorizer) Allowed(ctx context.Context, u *User, attrs *authzv1.ResourceAttributes, nonResource *authzv1.NonResourceAttributes) (allowed bool, reason string, err error) {
	a.once.Do(func() { a.cache = cache.NewLRUExpireCache(cacheSize) })
	key := decisionKey(u, attrs, nonResource)
	if d, ok := a.cache.Get(key); ok {
		return d.(decision).allowed, d.(decision).reason, nil
	}
	extra := map[string]authzv1.ExtraValue{}
	for k, v := range u.Extra {
		extra[k] = v
	}
	sar := &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
		User: u.Name, UID: u.UID, Groups: u.Groups, Extra: extra,
		ResourceAttributes: attrs, NonResourceAttributes: nonResource,
	}}
	res, err := a.Client.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
	if err != nil {
		return false, "", fmt.Errorf("checking access with a SubjectAccessReview: %w", err)
	}
	d := decision{allowed: res.Status.Allowed && !res.Status.Denied, reason: res.Status.Reason}
	a.cache.Add(key, d, AuthzCacheTTL)
	return d.allowed, d.reason, nil
}

func decisionKey(u *User, attrs *authzv1.ResourceAttributes, nonResource *authzv1.NonResourceAttributes) [32]byte {
	groups := append([]string(nil), u.Groups...)
	sort.Strings(groups)
	b, _ := json.Marshal([]any{u.Name, u.UID, groups, u.Extra, attrs, nonResource})
	return sha256.Sum256(b)
}
