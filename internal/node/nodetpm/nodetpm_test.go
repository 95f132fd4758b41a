package nodetpm_test

import (
	"bytes"
	"crypto/x509"
	"testing"

	"github.com/google/go-attestation/attest"

	"github.com/edgefleet/edgefleet/internal/node/nodetpm"
	"github.com/edgefleet/edgefleet/internal/node/swtpmtest"
	"github.com/edgefleet/edgefleet/internal/wire/machinereg"
)

// A real TPM (swtpm) answers a credential-activation challenge generated for
// its own EK and AK, and the EK certificate swtpm_setup wrote is read back.
func TestActivateCredentialAgainstSwtpm(t *testing.T) {
	sim := swtpmtest.Start(t, swtpmtest.Options{EKCert: true})
	tpm, err := nodetpm.Open(sim.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer tpm.Close()
	hello, err := tpm.Hello()
	if err != nil {
		t.Fatal(err)
	}
	if len(hello.EKCertificate) == 0 {
		t.Fatal("EK certificate written by swtpm_setup was not read")
	}
	cert, err := x509.ParseCertificate(hello.EKCertificate)
	if err != nil {
		t.Fatal(err)
	}
	certPub, _ := x509.MarshalPKIXPublicKey(cert.PublicKey)
	if !bytes.Equal(certPub, hello.EKPublic) {
		t.Fatal("EK certificate does not hold the EK public key")
	}
	ekPub, err := x509.ParsePKIXPublicKey(hello.EKPublic)
	if err != nil {
		t.Fatal(err)
	}
	params := attest.ActivationParameters{EK: ekPub, AK: attest.AttestationParameters{
		Public: hello.AK.Public, CreateData: hello.AK.CreateData, CreateAttestation: hello.AK.CreateAttestation, CreateSignature: hello.AK.CreateSignature,
	}}
	secret, ec, err := params.Generate()
	if err != nil {
		t.Fatal(err)
	}
	got, err := tpm.Activate(&machinereg.Challenge{Credential: ec.Credential, Secret: ec.Secret})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, secret) {
		t.Fatal("activated secret differs")
	}
}
