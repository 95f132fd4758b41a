package managedosversionchannel_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
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

// pushChannelImage pushes an image made of layers (each a map of files) to
// the registry at host and returns its reference.
func pushChannelImage(t *testing.T, host, repo string, layers ...map[string][]byte) string {
	t.Helper()
	var img v1.Image
	for i, files := range layers {
		l, err := crane.Layer(files)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if img, err = crane.Image(files); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			t.Fatal(err)
		}
	}
	ref := host + "/" + repo + ":1"
	if err := crane.Push(img, ref); err != nil {
		t.Fatal(err)
	}
	return ref
}

// TestOCIChannelImages syncs Elemental-style channel images (type custom)
// from a real registry on loopback: the list is read from /channel.json (or
// options.path) of the flattened image, validated all-or-nothing like a
// json channel; registries follow the manager's source rules.
func TestOCIChannelImages(t *testing.T) {
	reg := httptest.NewServer(registry.New())
	t.Cleanup(reg.Close)
	host := strings.TrimPrefix(reg.URL, "http://")
	// A base layer, then the channel; a later layer replaces an older list.
	elemental := pushChannelImage(t, host, "elemental-channel/sl-micro",
		map[string][]byte{"bin/busybox": []byte("binary"), "channel.json": []byte(`[]`)},
		map[string][]byte{"channel.json": []byte(good)})
	custom := pushChannelImage(t, host, "custom-path", map[string][]byte{"data/versions.json": []byte(good)})
	noList := pushChannelImage(t, host, "no-list", map[string][]byte{"etc/os-release": []byte("ID=x")})
	garbage := pushChannelImage(t, host, "garbage", map[string][]byte{"channel.json": []byte("<html>")})

	c := ctrltest.Start(t,
		func(m ctrl.Manager) error {
			return (&managedosversionchannel.Reconciler{HTTP: seedimage.Sources{AllowInsecure: true}.HTTPClient()}).SetupWithManager(m)
		})
	ctx := context.Background()
	ns := "oci-channels"
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	create := func(name, image, path string) {
		t.Helper()
		ch := &machinesv1.ManagedOSVersionChannel{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: machinesv1.ManagedOSVersionChannelSpec{
			Type: "custom", Options: machinesv1.ChannelOptions{Image: image, Path: path},
		}}
		if err := c.Create(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	wait := func(name, typ, reason, contains string) {
		t.Helper()
		ctrltest.Eventually(t, 30*time.Second, func() error {
			var ch machinesv1.ManagedOSVersionChannel
			if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &ch); err != nil {
				return err
			}
			cond := meta.FindStatusCondition(ch.Status.Conditions, typ)
			if cond == nil || cond.Reason != reason || !strings.Contains(cond.Message, contains) {
				return fmt.Errorf("%s: %+v, want reason %s saying %q", typ, cond, reason, contains)
			}
			return nil
		})
	}
	count := func(channel string) int {
		var list machinesv1.ManagedOSVersionList
		if err := c.List(ctx, &list, client.InNamespace(ns), client.MatchingLabels{machinesv1.LabelChannel: channel}); err != nil {
			t.Fatal(err)
		}
		return len(list.Items)
	}

	t.Run("Elemental's channel image creates its versions", func(t *testing.T) {
		create("elemental", elemental, "")
		wait("elemental", machinesv1.ReadyCondition, machinesv1.SyncedReason, "2 versions synced from "+elemental)
		var v machinesv1.ManagedOSVersion
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "os-v2"}, &v); err != nil || v.Spec.Metadata.UpgradeImage != "registry.example.com/os:v2" {
			t.Fatalf("os-v2: %+v, %v", v.Spec, err)
		}
	})
	t.Run("options.path names another file", func(t *testing.T) {
		create("custom-path", custom, "data/versions.json")
		wait("custom-path", machinesv1.ReadyCondition, machinesv1.SyncedReason, "2 versions")
	})
	t.Run("an image without the list says where it looked", func(t *testing.T) {
		create("no-list", noList, "")
		wait("no-list", machinesv1.StalledCondition, machinesv1.InvalidChannelReason, "no file /channel.json")
		if n := count("no-list"); n != 0 {
			t.Errorf("%d versions", n)
		}
	})
	t.Run("garbage in the image creates nothing", func(t *testing.T) {
		create("garbage", garbage, "")
		wait("garbage", machinesv1.StalledCondition, machinesv1.InvalidChannelReason, "not a JSON list")
		if n := count("garbage"); n != 0 {
			t.Errorf("%d versions", n)
		}
	})
	t.Run("a missing image is retried and reported", func(t *testing.T) {
		create("missing", host+"/nothing/here:1", "")
		wait("missing", machinesv1.ReconcilingCondition, machinesv1.SyncFailedReason, "pulling channel image")
	})
	t.Run("the API server refuses custom without an image", func(t *testing.T) {
		ch := &machinesv1.ManagedOSVersionChannel{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "no-image"}, Spec: machinesv1.ManagedOSVersionChannelSpec{Type: "custom"}}
		if err := c.Create(ctx, ch); err == nil || !strings.Contains(err.Error(), "type custom needs options.image") {
			t.Fatalf("create: %v, want the CRD's message", err)
		}
	})
}

// TestOCIChannelRegistriesFollowTheManagersSourceRules: without
// --seed-allow-insecure-base-urls a loopback, plain-HTTP registry is refused
// and nothing is created.
func TestOCIChannelRegistriesFollowTheManagersSourceRules(t *testing.T) {
	reg := httptest.NewServer(registry.New())
	t.Cleanup(reg.Close)
	ref := pushChannelImage(t, strings.TrimPrefix(reg.URL, "http://"), "c", map[string][]byte{"channel.json": []byte(good)})
	c := ctrltest.Start(t, func(m ctrl.Manager) error {
		return (&managedosversionchannel.Reconciler{HTTP: seedimage.Sources{}.HTTPClient()}).SetupWithManager(m)
	})
	ctx := context.Background()
	ch := &machinesv1.ManagedOSVersionChannel{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "loopback"}, Spec: machinesv1.ManagedOSVersionChannelSpec{
		Type: "custom", Options: machinesv1.ChannelOptions{Image: ref},
	}}
	if err := c.Create(ctx, ch); err != nil {
		t.Fatal(err)
	}
	ctrltest.Eventually(t, 30*time.Second, func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(ch), ch); err != nil {
			return err
		}
		cond := meta.FindStatusCondition(ch.Status.Conditions, machinesv1.ReadyCondition)
		if cond == nil || cond.Reason != machinesv1.SyncFailedReason || !(strings.Contains(cond.Message, "plain HTTP") || strings.Contains(cond.Message, "refus")) {
			return fmt.Errorf("Ready %+v, want SyncFailed refusing the registry", cond)
		}
		return nil
	})
	var list machinesv1.ManagedOSVersionList
	if err := c.List(ctx, &list); err != nil || len(list.Items) != 0 {
		t.Fatalf("versions %v, %v: want none", list.Items, err)
	}
}
