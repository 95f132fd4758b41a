package managedosversionchannel_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/controller/internal/ctrltest"
	"github.com/edgefleet/edgefleet/internal/controller/managedosversionchannel"
	"github.com/edgefleet/edgefleet/internal/seedimage"
)

const good = `[
 {"metadata":{"name":"os-v1"},"spec":{"version":"v1","type":"container","metadata":{"upgradeImage":"registry.example.com/os:v1","displayName":"OS 1"}}},
 {"metadata":{"name":"os-v2"},"spec":{"version":"v2","metadata":{"upgradeImage":"registry.example.com/os:v2"}}}
]`

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, body, wantErr string
		n                   int
	}{
		{name: "elemental format", body: good, n: 2},
		{name: "empty list", body: `[]`},
		{name: "html", body: `<html>oops</html>`, wantErr: "not a JSON list"},
		{name: "object", body: `{"versions":[]}`, wantErr: "not a JSON list"},
		{name: "bad name", body: `[{"metadata":{"name":"OS V1"},"spec":{"version":"v1","metadata":{"upgradeImage":"r.example.com/os:v1"}}}]`, wantErr: "metadata.name"},
		{name: "duplicate", body: `[{"metadata":{"name":"a"},"spec":{"version":"v1","metadata":{"upgradeImage":"r.example.com/os:v1"}}},{"metadata":{"name":"a"},"spec":{"version":"v1","metadata":{"upgradeImage":"r.example.com/os:v1"}}}]`, wantErr: "twice"},
		{name: "no version", body: `[{"metadata":{"name":"a"},"spec":{"metadata":{"upgradeImage":"r.example.com/os:v1"}}}]`, wantErr: "spec.version"},
		{name: "bad image", body: `[{"metadata":{"name":"a"},"spec":{"version":"v1","metadata":{"upgradeImage":"not an image!"}}}]`, wantErr: "upgradeImage"},
		{name: "iso type", body: `[{"metadata":{"name":"a"},"spec":{"version":"v1","type":"iso","metadata":{"upgradeImage":"r.example.com/os:v1"}}}]`, wantErr: "only container"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := managedosversionchannel.Parse([]byte(tc.body))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || len(got) != tc.n {
				t.Fatalf("got %d entries, %v; want %d", len(got), err, tc.n)
			}
		})
	}
}

// channelServer serves a channel on loopback; its content can change.
type channelServer struct {
	mu   sync.Mutex
	body map[string]string
}

func (s *channelServer) set(path, body string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.body[path] = body
}

func (s *channelServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	body, ok := s.body[r.URL.Path]
	s.mu.Unlock()
	if !ok {
		http.Error(w, "no such channel", http.StatusInternalServerError)
		return
	}
	fmt.Fprint(w, body)
}

func TestManagedOSVersionChannelSync(t *testing.T) {
	srv := &channelServer{body: map[string]string{}}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	c := ctrltest.Start(t, func(m ctrl.Manager) error {
		return (&managedosversionchannel.Reconciler{HTTP: seedimage.Sources{AllowInsecure: true}.HTTPClient()}).SetupWithManager(m)
	})
	ctx := context.Background()
	ns := "channels"
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	create := func(name, path string) *machinesv1.ManagedOSVersionChannel {
		ch := &machinesv1.ManagedOSVersionChannel{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: machinesv1.ManagedOSVersionChannelSpec{
			Type: "json", Options: machinesv1.ChannelOptions{URI: ts.URL + path}, SyncInterval: metav1.Duration{Duration: time.Hour},
		}}
		if err := c.Create(ctx, ch); err != nil {
			t.Fatal(err)
		}
		return ch
	}
	waitReady := func(name, typ, reason, contains string) {
		t.Helper()
		ctrltest.Eventually(t, 20*time.Second, func() error {
			var ch machinesv1.ManagedOSVersionChannel
			if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &ch); err != nil {
				return err
			}
			cond := meta.FindStatusCondition(ch.Status.Conditions, typ)
			if cond == nil || cond.Reason != reason || !strings.Contains(cond.Message, contains) || ch.Status.ObservedGeneration != ch.Generation {
				return fmt.Errorf("%s: %+v, want reason %s saying %q", typ, cond, reason, contains)
			}
			return nil
		})
	}
	versions := func(channel string) map[string]machinesv1.ManagedOSVersion {
		var list machinesv1.ManagedOSVersionList
		if err := c.List(ctx, &list, client.InNamespace(ns), client.MatchingLabels{machinesv1.LabelChannel: channel}); err != nil {
			t.Fatal(err)
		}
		out := map[string]machinesv1.ManagedOSVersion{}
		for _, v := range list.Items {
			out[v.Name] = v
		}
		return out
	}

	t.Run("a valid channel creates its versions", func(t *testing.T) {
		srv.set("/good.json", good)
		create("good", "/good.json")
		waitReady("good", machinesv1.ReadyCondition, machinesv1.SyncedReason, "2 versions")
		v := versions("good")
		if v["os-v2"].Spec.Metadata.UpgradeImage != "registry.example.com/os:v2" || v["os-v1"].Spec.Version != "v1" || len(v) != 2 {
			t.Fatalf("versions %+v", v)
		}
	})

	t.Run("a changed channel updates and adds versions on the next sync", func(t *testing.T) {
		srv.set("/good.json", strings.Replace(good, `]`, `,{"metadata":{"name":"os-v3"},"spec":{"version":"v3","metadata":{"upgradeImage":"registry.example.com/os:v3"}}}]`, 1))
		// A spec change syncs at once (the interval is an hour).
		ctrltest.Eventually(t, 10*time.Second, func() error {
			var ch machinesv1.ManagedOSVersionChannel
			if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "good"}, &ch); err != nil {
				return err
			}
			ch.Spec.SyncInterval = metav1.Duration{Duration: 2 * time.Hour}
			return c.Update(ctx, &ch)
		})
		waitReady("good", machinesv1.ReadyCondition, machinesv1.SyncedReason, "3 versions")
		if v := versions("good"); v["os-v3"].Spec.Metadata.UpgradeImage != "registry.example.com/os:v3" || len(v) != 3 {
			t.Fatalf("versions %+v", v)
		}
	})

	t.Run("garbage creates nothing and says why", func(t *testing.T) {
		srv.set("/garbage.json", "<html>502 Bad Gateway</html>")
		create("garbage", "/garbage.json")
		waitReady("garbage", machinesv1.StalledCondition, machinesv1.InvalidChannelReason, "not a JSON list")
		if v := versions("garbage"); len(v) != 0 {
			t.Fatalf("garbage created %v", v)
		}
	})

	t.Run("one invalid entry creates nothing", func(t *testing.T) {
		srv.set("/half.json", `[{"metadata":{"name":"ok"},"spec":{"version":"v1","metadata":{"upgradeImage":"r.example.com/os:v1"}}},{"metadata":{"name":"bad"},"spec":{"version":"","metadata":{"upgradeImage":"r.example.com/os:v2"}}}]`)
		create("half", "/half.json")
		waitReady("half", machinesv1.StalledCondition, machinesv1.InvalidChannelReason, "[1].spec.version")
		if v := versions("half"); len(v) != 0 {
			t.Fatalf("half-valid channel created %v", v)
		}
	})

	t.Run("a server error is retried and reported", func(t *testing.T) {
		create("down", "/missing.json")
		waitReady("down", machinesv1.ReconcilingCondition, machinesv1.SyncFailedReason, "500")
		// Retried every syncInterval (an hour here), not at once: the
		// status written after a failure must not trigger the next fetch
		// (it did: thousands of fetches a minute of a channel that never
		// synced).
		attempts := func() int32 {
			var ch machinesv1.ManagedOSVersionChannel
			if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "down"}, &ch); err != nil {
				t.Fatal(err)
			}
			return ch.Status.FailedSynchronizationAttempts
		}
		first := attempts()
		time.Sleep(3 * time.Second)
		if n := attempts(); n > first+1 {
			t.Errorf("failedSynchronizationAttempts went from %d to %d in 3 s with a 1 h syncInterval: failed fetches retry in a loop", first, n)
		}
	})
}

func TestChannelURLsFollowTheManagersSourceRules(t *testing.T) {
	ts := httptest.NewServer(&channelServer{body: map[string]string{"/c.json": good}})
	t.Cleanup(ts.Close)
	c := ctrltest.Start(t, func(m ctrl.Manager) error {
		return (&managedosversionchannel.Reconciler{HTTP: seedimage.Sources{}.HTTPClient()}).SetupWithManager(m)
	})
	ctx := context.Background()
	ch := &machinesv1.ManagedOSVersionChannel{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "loopback"}, Spec: machinesv1.ManagedOSVersionChannelSpec{
		Type: "json", Options: machinesv1.ChannelOptions{URI: ts.URL + "/c.json"},
	}}
	if err := c.Create(ctx, ch); err != nil {
		t.Fatal(err)
	}
	ctrltest.Eventually(t, 20*time.Second, func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(ch), ch); err != nil {
			return err
		}
		cond := meta.FindStatusCondition(ch.Status.Conditions, machinesv1.ReadyCondition)
		if cond == nil || cond.Reason != machinesv1.SyncFailedReason || !strings.Contains(cond.Message, "plain HTTP") {
			return fmt.Errorf("Ready %+v, want SyncFailed refusing plain HTTP", cond)
		}
		return nil
	})
	var list machinesv1.ManagedOSVersionList
	if err := c.List(ctx, &list); err != nil || len(list.Items) != 0 {
		t.Fatalf("versions %v, %v: want none", list.Items, err)
	}
}
