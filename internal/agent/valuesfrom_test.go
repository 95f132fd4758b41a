package agent

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/test/harness"
)

func TestValuesFromDownstreamConfigMapsAndSecrets(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a control plane")
	}
	ctx := context.Background()
	c := harness.StartClusters(t, 1, harness.ClusterOptions{})[0].Client
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "apps"}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "site"},
		Data: map[string]string{"values.yaml": "site: berlin\nimage: {tag: v2}\n"}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "creds"},
		Data: map[string][]byte{"db": []byte("password: s3cret\n"), "bad": []byte("- not a map\n")}}); err != nil {
		t.Fatal(err)
	}
	base := fleetv1.BundleDeploymentOptions{DefaultNamespace: "apps", Helm: &fleetv1.HelmOptions{
		Values: &runtime.RawExtension{Raw: []byte(`{"site":"none","image":{"repo":"web","tag":"v1"}}`)},
	}}
	tests := []struct {
		name    string
		from    []fleetv1.ValueFrom
		want    map[string]any
		wantErr string
	}{
		{name: "configmap default key in the bundle namespace, then secret: later wins, maps merge deeply",
			from: []fleetv1.ValueFrom{
				{ConfigMapKeyRef: &fleetv1.ConfigMapKeySelector{Name: "site"}},
				{SecretKeyRef: &fleetv1.SecretKeySelector{Name: "creds", Namespace: "kube-system", Key: "db"}},
			},
			want: map[string]any{"site": "berlin", "password": "s3cret", "image": map[string]any{"repo": "web", "tag": "v2"}}},
		{name: "missing configmap names it", from: []fleetv1.ValueFrom{{ConfigMapKeyRef: &fleetv1.ConfigMapKeySelector{Name: "nope"}}}, wantErr: "ConfigMap apps/nope"},
		{name: "missing key names it", from: []fleetv1.ValueFrom{{SecretKeyRef: &fleetv1.SecretKeySelector{Name: "creds", Namespace: "kube-system", Key: "x"}}}, wantErr: `no key "x"`},
		{name: "not a map", from: []fleetv1.ValueFrom{{SecretKeyRef: &fleetv1.SecretKeySelector{Name: "creds", Namespace: "kube-system", Key: "bad"}}}, wantErr: "not a YAML map"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := *base.DeepCopy()
			opts.Helm.ValuesFrom = tt.from
			got, err := resolveValuesFrom(ctx, c, opts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want error with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var values map[string]any
			if err := json.Unmarshal(got.Helm.Values.Raw, &values); err != nil {
				t.Fatal(err)
			}
			gotJSON, _ := json.Marshal(values)
			wantJSON, _ := json.Marshal(tt.want)
			if string(gotJSON) != string(wantJSON) {
				t.Fatalf("values = %s, want %s", gotJSON, wantJSON)
			}
			if string(base.Helm.Values.Raw) != `{"site":"none","image":{"repo":"web","tag":"v1"}}` {
				t.Fatal("input options were modified")
			}
		})
	}
}
