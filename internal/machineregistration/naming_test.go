package machineregistration

import (
	"crypto/x509"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/node/nodetpm"
	"github.com/edgefleet/edgefleet/internal/node/swtpmtest"
	"github.com/edgefleet/edgefleet/internal/wire/machinereg"
)

// Names come from SMBIOS data the machine sends: whatever it sends, the
// name is a valid DNS-1123 subdomain of at most 58 characters, and names
// that differ only past the cut stay distinct.
func TestSanitizeNameHostileInput(t *testing.T) {
	long := strings.Repeat("a", 300)
	tests := []struct{ in, want string }{
		{"Acme Corp./6B29", "acme-corp.6b29"},
		{"../../etc/passwd", "etc-passwd"},
		{"kube-system/default", "kube-system-default"},
		{"--..--", ""},
		{"\x00\u202e\u0130NJECT", "inject"},
		{"a..b", "a.b"},
	}
	for _, tc := range tests {
		got := sanitizeName(tc.in)
		if tc.want == "" {
			if got != "" {
				t.Errorf("sanitizeName(%q) = %q, want nothing", tc.in, got)
			}
			continue
		}
		if got != tc.want {
			t.Errorf("sanitizeName(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	a, b := sanitizeName(long+"x"), sanitizeName(long+"y")
	if a == b || len(a) != 58 || len(b) != 58 || !strings.HasPrefix(a, strings.Repeat("a", 49)+"-") {
		t.Errorf("long names %q and %q: want distinct 58-character names with a hash suffix", a, b)
	}
	if sanitizeName(long+"x") != a {
		t.Error("the same long input gave two names")
	}
	if got := sanitizeName(strings.Repeat("é", 1<<20)); len(got) > 58 {
		t.Errorf("a megabyte of input gave %d characters", len(got))
	}
}

// FuzzInventoryMessage drives the manager's handling of a machine's
// inventory message with arbitrary bytes: decoding with the protocol
// limits, then naming and labelling the inventory from it. It never
// panics, and what it produces stays valid and bounded: a valid name of at
// most 58 characters, at most as many labels as the message and the
// registration allow, each a valid label, annotations within the message's
// limits.
func FuzzInventoryMessage(f *testing.F) {
	f.Add([]byte(`{"type":"inventory","inventory":{"data":{"System Information/UUID":"x","System Information/Serial Number":"../../default"},"labels":{"a":"b"}}}`))
	f.Add([]byte(`{"type":"inventory","inventory":{"data":{"System Information/Manufacturer":"Acme Corp.","Runtime/Arch":"amd64"},"labels":{"machines.edgefleet.io/x":"y","bad key!":"v"},"annotations":{"k":"v"}}}`))
	f.Add([]byte(`{"type":"inventory","inventory":{"data":{"System Information/UUID":"` + strings.Repeat("Z", 1000) + `"}}}`))
	mr := &machinesv1.MachineRegistration{Spec: machinesv1.MachineRegistrationSpec{
		MachineName: "${System Information/Serial Number}-${System Information/UUID}",
		MachineInventoryLabels: map[string]string{
			"uuid": "${System Information/UUID}", "vendor": "${System Information/Manufacturer}", "rnd": "r-${Random/Hex/8}",
		},
		MachineInventoryAnnotations: map[string]string{"serial": "${System Information/Serial Number}"},
	}}
	h := &Handler{}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := machinereg.Decode(data)
		if err != nil || m.Type != machinereg.TypeInventory {
			return
		}
		in := m.Inventory
		name := inventoryName(mr, in.Data)
		if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 || len(name) > 58 {
			t.Fatalf("inventory name %q: %v", name, errs)
		}
		labels, annotations, _ := h.renderMetadata(mr, nil, in)
		if max := len(in.Labels) + len(mr.Spec.MachineInventoryLabels) + 3; len(labels) > max {
			t.Fatalf("%d labels from a message with %d", len(labels), len(in.Labels))
		}
		for k, v := range labels {
			if errs := validation.IsQualifiedName(k); len(errs) > 0 {
				t.Fatalf("label key %q: %v", k, errs)
			}
			if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
				t.Fatalf("label %s=%q: %v", k, v, errs)
			}
			if strings.HasPrefix(k, reservedDomain) && in.Labels[k] != "" && labels[k] == in.Labels[k] {
				t.Fatalf("the machine set reserved label %s", k)
			}
		}
		for k, v := range annotations {
			if len(k) > machinereg.MaxKeyBytes || len(v) > 2*machinereg.MaxValueBytes {
				t.Fatalf("annotation %s is %d bytes", k, len(v))
			}
		}
	})
}

// FuzzHelloProcessing feeds the manager's handling of a hello message —
// the auth policy check, parsing the EK, the EK certificate and the AK,
// making the credential-activation challenge, checking an emulated TPM's
// signature — with arbitrary bytes. Seeds
// include a genuine swtpm hello when swtpm is installed, so the fuzzer
// starts from input that gets all the way to a challenge.
func FuzzHelloProcessing(f *testing.F) {
	f.Add([]byte(`{"type":"hello","hello":{"version":1,"auth":"tpm","inventoryName":"m-1","tpm":{"ekPublic":"AQ==","ak":{"public":"AQ==","createData":"","createAttestation":"","createSignature":""}}}}`))
	f.Add([]byte(`{"type":"hello","hello":{"version":1,"auth":"emulated-tpm","emulatedTPMPublicKey":"MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=","machineID":"c2ln"}}`))
	if _, err := exec.LookPath("swtpm"); err == nil {
		sim := swtpmtest.Start(f, swtpmtest.Options{EKCert: true})
		tpm, err := nodetpm.Open(sim.Socket)
		if err != nil {
			f.Fatal(err)
		}
		hello, err := tpm.Hello()
		tpm.Close()
		if err != nil {
			f.Fatal(err)
		}
		seed, err := machinereg.Encode(&machinereg.Message{Type: machinereg.TypeHello, Hello: &machinereg.Hello{Version: 1, Auth: machinereg.AuthTPM, TPM: hello}})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(seed)
	}
	cfg := &machinesv1.RegistrationConfig{Auth: machinesv1.AuthTPMOrFallback, Fallback: []machinesv1.FallbackAuth{machinesv1.FallbackEmulatedTPM, machinesv1.FallbackMAC}}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := machinereg.Decode(data)
		if err != nil || m.Type != machinereg.TypeHello {
			return
		}
		h := m.Hello
		if !slices.Contains(allowedMethods(cfg), h.Auth) && h.Auth != machinereg.AuthSysUUID {
			t.Fatalf("decoded auth %q is unknown", h.Auth)
		}
		switch h.Auth {
		case machinereg.AuthTPM:
			_, _ = ekCertificate(h.TPM)
			ekPub, err := x509.ParsePKIXPublicKey(h.TPM.EKPublic)
			if err != nil {
				return
			}
			secret, ec, err := tpmChallenge(ekPub, h.TPM)
			if err == nil && (len(secret) == 0 || ec == nil || len(ec.Credential) == 0) {
				t.Fatal("a challenge without a secret")
			}
		case machinereg.AuthEmulatedTPM:
			if machinereg.VerifyEmulatedTPM(h.EmulatedTPMPublicKey, "/v1/machines/register/x", []byte("nonce"), []byte(h.MachineID)) == nil {
				t.Fatal("a signature not made for this nonce verified")
			}
		}
	})
}
