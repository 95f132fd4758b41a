package machineregistration_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	machinesv1 "github.com/edgefleet/edgefleet/api/machines/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/machineregistration"
	"github.com/edgefleet/edgefleet/internal/node/nodetpm"
	"github.com/edgefleet/edgefleet/internal/node/swtpmtest"
	"github.com/edgefleet/edgefleet/internal/wire/machinereg"
)

func writeFile(path, data string) error { return os.WriteFile(path, []byte(data), 0o644) }

// dialRaw opens a registration websocket the way an attacker would: with the
// protocol package only, no register client logic.
func dialRaw(t *testing.T, e *env, regURL string) (*machinereg.Conn, *http.Response, error) {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(e.caPEM))
	d := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: pool}, HandshakeTimeout: 5 * time.Second}
	ws, resp, err := d.Dial(strings.Replace(regURL, "https://", "wss://", 1), nil)
	if err != nil {
		return nil, resp, err
	}
	t.Cleanup(func() { ws.Close() })
	return machinereg.NewConn(ws), resp, nil
}

func openTPM(t *testing.T, sim *swtpmtest.TPM) (*nodetpm.TPM, *machinereg.TPMHello) {
	t.Helper()
	tpm, err := nodetpm.Open(sim.Socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tpm.Close() })
	h, err := tpm.Hello()
	if err != nil {
		t.Fatal(err)
	}
	return tpm, h
}

// expectRefused reads until the manager's Error and the close that follows.
func expectRefused(t *testing.T, conn *machinereg.Conn, code string) {
	t.Helper()
	_, err := conn.Receive(machinereg.TypeReady, machinereg.TypeChallenge, machinereg.TypeConfig)
	var pe *machinereg.Error
	if !errors.As(err, &pe) || pe.Code != code {
		t.Fatalf("got %v, want an error %s", err, code)
	}
	_, _, err = conn.WS.ReadMessage()
	if !websocket.IsCloseError(err, websocket.ClosePolicyViolation, websocket.CloseProtocolError, websocket.CloseMessageTooBig) {
		t.Fatalf("connection not closed by the manager after the error: %v", err)
	}
}

func (e *env) expectNoInventory(t *testing.T) {
	t.Helper()
	if inv := e.inventories(t); len(inv) != 0 {
		t.Fatalf("an inventory was created: %s", inv[0].Name)
	}
}

func TestRegistrationAttacksAreRefused(t *testing.T) {
	e := startEnv(t)
	// TOFU so a genuine swtpm gets past authentication (the replay case);
	// the tpm-ca case still requires the CA.
	regURL := e.registration(t, "secure", machinesv1.MachineRegistrationSpec{TPM: machinesv1.TPMTrustPolicy{TrustOnFirstUse: true}})
	simA := swtpmtest.Start(t, swtpmtest.Options{EKCert: true})
	simB := swtpmtest.Start(t, swtpmtest.Options{EKCert: true})

	t.Run("wrong registration token gets 401", func(t *testing.T) {
		bad := regURL[:strings.LastIndex(regURL, "/")+1] + strings.Repeat("0", 48)
		_, resp, err := dialRaw(t, e, bad)
		if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("dial with a wrong token: %v (response %v), want 401", err, resp)
		}
		e.expectNoInventory(t)
	})

	t.Run("EK and AK from different TPMs", func(t *testing.T) {
		_, helloA := openTPM(t, simA)
		tpmB, helloB := openTPM(t, simB)
		forged := &machinereg.TPMHello{EKPublic: helloA.EKPublic, AK: helloB.AK}
		conn, _, err := dialRaw(t, e, regURL)
		if err != nil {
			t.Fatal(err)
		}
		if err := conn.Send(&machinereg.Message{Type: machinereg.TypeHello, Hello: &machinereg.Hello{Version: 1, Auth: machinereg.AuthTPM, TPM: forged}}); err != nil {
			t.Fatal(err)
		}
		m, err := conn.Receive(machinereg.TypeChallenge)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tpmB.Activate(m.Challenge); err == nil {
			t.Fatal("TPM B activated a credential made for TPM A's EK")
		}
		guess := make([]byte, 32)
		_, _ = rand.Read(guess)
		if err := conn.Send(&machinereg.Message{Type: machinereg.TypeProof, Proof: &machinereg.Proof{Secret: guess}}); err != nil {
			t.Fatal(err)
		}
		expectRefused(t, conn, machinereg.CodeAuthFailed)
		e.expectNoInventory(t)
	})

	t.Run("EK certificate of another TPM", func(t *testing.T) {
		_, helloA := openTPM(t, simA)
		_, helloB := openTPM(t, simB)
		forged := *helloB
		forged.EKCertificate = helloA.EKCertificate
		conn, _, err := dialRaw(t, e, regURL)
		if err != nil {
			t.Fatal(err)
		}
		if err := conn.Send(&machinereg.Message{Type: machinereg.TypeHello, Hello: &machinereg.Hello{Version: 1, Auth: machinereg.AuthTPM, TPM: &forged}}); err != nil {
			t.Fatal(err)
		}
		expectRefused(t, conn, machinereg.CodeAuthFailed)
		e.expectNoInventory(t)
	})

	t.Run("auth method not allowed by the registration", func(t *testing.T) {
		conn, _, err := dialRaw(t, e, regURL)
		if err != nil {
			t.Fatal(err)
		}
		if err := conn.Send(&machinereg.Message{Type: machinereg.TypeHello, Hello: &machinereg.Hello{Version: 1, Auth: machinereg.AuthMAC, MachineID: "02:00:00:00:00:01"}}); err != nil {
			t.Fatal(err)
		}
		expectRefused(t, conn, machinereg.CodeAuthFailed)
		e.expectNoInventory(t)
	})

	t.Run("oversized message", func(t *testing.T) {
		conn, _, err := dialRaw(t, e, regURL)
		if err != nil {
			t.Fatal(err)
		}
		big := `{"type":"hello","hello":{"version":1,"auth":"mac","machineID":"` + strings.Repeat("a", machinereg.MaxMessageBytes) + `"}}`
		_ = conn.WS.WriteMessage(websocket.TextMessage, []byte(big))
		_, _, err = conn.WS.ReadMessage()
		for err == nil {
			_, _, err = conn.WS.ReadMessage()
		}
		if !websocket.IsCloseError(err, websocket.CloseMessageTooBig) {
			t.Fatalf("after an oversized message: %v, want close 1009", err)
		}
		e.expectNoInventory(t)
	})

	t.Run("malformed message", func(t *testing.T) {
		conn, _, err := dialRaw(t, e, regURL)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.WS.WriteMessage(websocket.TextMessage, []byte(`{"type":"hello","hello":{"version":1,"auth":"tpm"`))
		expectRefused(t, conn, machinereg.CodeBadMessage)
		e.expectNoInventory(t)
	})

	t.Run("replayed TPM exchange", func(t *testing.T) {
		tpmA, helloA := openTPM(t, simA)
		// A genuine exchange, recorded by an eavesdropper.
		conn, _, err := dialRaw(t, e, regURL)
		if err != nil {
			t.Fatal(err)
		}
		hello := &machinereg.Message{Type: machinereg.TypeHello, Hello: &machinereg.Hello{Version: 1, Auth: machinereg.AuthTPM, TPM: helloA}}
		if err := conn.Send(hello); err != nil {
			t.Fatal(err)
		}
		m, err := conn.Receive(machinereg.TypeChallenge)
		if err != nil {
			t.Fatal(err)
		}
		secret, err := tpmA.Activate(m.Challenge)
		if err != nil {
			t.Fatal(err)
		}
		proof := &machinereg.Message{Type: machinereg.TypeProof, Proof: &machinereg.Proof{Secret: secret}}
		if err := conn.Send(proof); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Receive(machinereg.TypeReady); err != nil {
			t.Fatal(err)
		}
		conn.Close()
		// The recording played back: the manager draws a new secret.
		replay, _, err := dialRaw(t, e, regURL)
		if err != nil {
			t.Fatal(err)
		}
		if err := replay.Send(hello); err != nil {
			t.Fatal(err)
		}
		if _, err := replay.Receive(machinereg.TypeChallenge); err != nil {
			t.Fatal(err)
		}
		if err := replay.Send(proof); err != nil {
			t.Fatal(err)
		}
		expectRefused(t, replay, machinereg.CodeAuthFailed)
		e.expectNoInventory(t)
	})

	t.Run("EK certificate not from the tpm-ca", func(t *testing.T) {
		ctx := context.Background()
		ca := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: machineregistration.TPMCASecretName, Namespace: e.ns}, Data: map[string][]byte{"ca.crt": simA.CACertPEM}}
		if err := e.c.Create(ctx, ca); err != nil {
			t.Fatal(err)
		}
		defer e.c.Delete(ctx, ca)
		for _, tc := range []struct {
			sim  *swtpmtest.TPM
			want string // "" = accepted
		}{{simB, machinereg.CodeAuthFailed}, {simA, ""}} {
			_, h := openTPM(t, tc.sim)
			conn, _, err := dialRaw(t, e, regURL)
			if err != nil {
				t.Fatal(err)
			}
			if err := conn.Send(&machinereg.Message{Type: machinereg.TypeHello, Hello: &machinereg.Hello{Version: 1, Auth: machinereg.AuthTPM, TPM: h}}); err != nil {
				t.Fatal(err)
			}
			if tc.want != "" {
				expectRefused(t, conn, tc.want)
				continue
			}
			if _, err := conn.Receive(machinereg.TypeChallenge); err != nil {
				t.Fatalf("TPM with an EK certificate from the trusted CA: %v", err)
			}
		}
		e.expectNoInventory(t)
	})
}

// An inventory message over the limits ends the registration after the
// identity was proven, and still nothing is created.
func TestOversizedInventoryCreatesNothing(t *testing.T) {
	e := startEnv(t)
	regURL := e.registration(t, "emu", machinesv1.MachineRegistrationSpec{Config: machinesv1.MachineRegistrationConfig{Registration: &machinesv1.RegistrationConfig{EmulateTPM: true}}})
	emu, _ := machinereg.NewEmulatedTPM([]byte("seed"))
	conn, _, err := dialRaw(t, e, regURL)
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.Send(&machinereg.Message{Type: machinereg.TypeHello, Hello: &machinereg.Hello{Version: 1, Auth: machinereg.AuthEmulatedTPM, EmulatedTPMPublicKey: emu.PublicKey()}}); err != nil {
		t.Fatal(err)
	}
	m, err := conn.Receive(machinereg.TypeChallenge)
	if err != nil {
		t.Fatal(err)
	}
	path := regURL[strings.Index(regURL, "/v1/"):]
	if err := conn.Send(&machinereg.Message{Type: machinereg.TypeProof, Proof: &machinereg.Proof{Signature: emu.Sign(path, m.Challenge.Nonce)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Receive(machinereg.TypeReady); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString(`{"type":"inventory","inventory":{"data":{`)
	for i := range machinereg.MaxInventoryKeys + 1 {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"k%d":"v"`, i)
	}
	b.WriteString(`}}}`)
	_ = conn.WS.WriteMessage(websocket.TextMessage, []byte(b.String()))
	expectRefused(t, conn, machinereg.CodeBadMessage)
	e.expectNoInventory(t)
}
