package authn

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

type countingRT struct {
	next    http.RoundTripper
	reviews *atomic.Int64
}

func (c countingRT) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.HasSuffix(r.URL.Path, "/tokenreviews") {
		c.reviews.Add(1)
	}
	return c.next.RoundTrip(r)
}

// TestRefusedTokensAreCachedBriefly: against a real kube-apiserver, a
// flood with one bad token costs one TokenReview per FailureCacheTTL, and a
// good token is still accepted (and cached) alongside. Runs only with
// KUBEBUILDER_ASSETS.
func TestRefusedTokensAreCachedBriefly(t *testing.T) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Skip("KUBEBUILDER_ASSETS not set")
	}
	env := &envtest.Environment{}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting envtest: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	var reviews atomic.Int64
	counted := rest.CopyConfig(cfg)
	counted.Wrap(func(rt http.RoundTripper) http.RoundTripper { return countingRT{next: rt, reviews: &reviews} })
	admin := kubernetes.NewForConfigOrDie(cfg)
	ctx := context.Background()
	if _, err := admin.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "good"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tr, err := admin.CoreV1().ServiceAccounts("default").CreateToken(ctx, "good", &authnv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a := &Authenticator{Client: kubernetes.NewForConfigOrDie(counted)}
	for range 100 {
		if _, err := a.Token(ctx, "not-a-token"); !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("bad token: %v, want ErrUnauthenticated", err)
		}
	}
	if n := reviews.Load(); n != 1 {
		t.Fatalf("100 requests with one bad token cost %d TokenReviews, want 1", n)
	}
	for range 10 {
		u, err := a.Token(ctx, tr.Status.Token)
		if err != nil || u.Name != "system:serviceaccount:default:good" {
			t.Fatalf("good token: %v %v", u, err)
		}
	}
	if n := reviews.Load(); n != 2 {
		t.Fatalf("then 10 requests with a good token: %d TokenReviews in all, want 2", n)
	}
}
