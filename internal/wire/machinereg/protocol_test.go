package machinereg

import (
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr string
	}{
		{"hello tpm", `{"type":"hello","hello":{"version":1,"auth":"tpm","tpm":{"ekPublic":"AQ==","ak":{"public":"AQ==","createData":"","createAttestation":"","createSignature":""}}}}`, ""},
		{"hello mac", `{"type":"hello","hello":{"version":1,"auth":"mac","machineID":"02:00:00:00:00:01"}}`, ""},
		{"ready", `{"type":"ready","ready":{"version":1}}`, ""},
		{"not json", `{"type":`, "not valid JSON"},
		{"trailing data", `{"type":"ready","ready":{"version":1}} {}`, "data after"},
		{"unknown field", `{"type":"ready","ready":{"version":1},"extra":1}`, "unknown field"},
		{"unknown type", `{"type":"shell"}`, "unknown message type"},
		{"missing body", `{"type":"hello"}`, "no hello body"},
		{"two bodies", `{"type":"ready","ready":{"version":1},"proof":{}}`, "also has a proof body"},
		{"bad version", `{"type":"hello","hello":{"version":0,"auth":"mac","machineID":"x"}}`, "not a protocol version"},
		{"bad auth", `{"type":"hello","hello":{"version":1,"auth":"none"}}`, "not one of"},
		{"tpm without data", `{"type":"hello","hello":{"version":1,"auth":"tpm"}}`, "no tpm data"},
		{"mac without id", `{"type":"hello","hello":{"version":1,"auth":"mac"}}`, "no machineID"},
		{"NUL in key", `{"type":"inventory","inventory":{"data":{"a\u0000":"b"}}}`, "not valid UTF-8 text"},
		{"long value", `{"type":"inventory","inventory":{"data":{"a":"` + strings.Repeat("x", MaxValueBytes+1) + `"}}}`, "more than the limit"},
		{"oversized", `{"type":"hello","hello":{"version":1,"auth":"mac","machineID":"` + strings.Repeat("x", MaxMessageBytes) + `"}}`, "more than the limit"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode([]byte(tc.in))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestEmulatedTPMChallenge(t *testing.T) {
	e, err := NewEmulatedTPM([]byte("seed"))
	if err != nil {
		t.Fatal(err)
	}
	same, _ := NewEmulatedTPM([]byte("seed"))
	other, _ := NewEmulatedTPM([]byte("other seed"))
	if IdentityHash(e.PublicKey()) != IdentityHash(same.PublicKey()) || IdentityHash(e.PublicKey()) == IdentityHash(other.PublicKey()) {
		t.Fatal("identity must follow the seed")
	}
	nonce := []byte("nonce-1")
	sig := e.Sign("/v1/machines/register/a", nonce)
	if err := VerifyEmulatedTPM(e.PublicKey(), "/v1/machines/register/a", nonce, sig); err != nil {
		t.Fatal(err)
	}
	for name, check := range map[string]error{
		"other nonce":        VerifyEmulatedTPM(e.PublicKey(), "/v1/machines/register/a", []byte("nonce-2"), sig),
		"other registration": VerifyEmulatedTPM(e.PublicKey(), "/v1/machines/register/b", nonce, sig),
		"other key":          VerifyEmulatedTPM(other.PublicKey(), "/v1/machines/register/a", nonce, sig),
	} {
		if check == nil {
			t.Errorf("%s: a signature verified where it must not", name)
		}
	}
}

// FuzzDecodeMessage: the decoder never panics, and whatever it accepts
// encodes again and decodes to the same message type.
func FuzzDecodeMessage(f *testing.F) {
	f.Add([]byte(`{"type":"hello","hello":{"version":1,"auth":"emulated-tpm","emulatedTPMPublicKey":"AQID"}}`))
	f.Add([]byte(`{"type":"inventory","inventory":{"data":{"System Information/UUID":"x"},"labels":{"a":"b"}}}`))
	f.Add([]byte(`{"type":"error","error":{"code":"BadMessage","message":"m"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(data)
		if err != nil {
			return
		}
		again, err := Encode(m)
		if err != nil {
			t.Fatalf("accepted message does not encode: %v", err)
		}
		m2, err := Decode(again)
		if err != nil || m2.Type != m.Type {
			t.Fatalf("re-decoding %s: %v", again, err)
		}
	})
}
