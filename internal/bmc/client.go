// Package bmc talks Redfish to baseboard management controllers through
// gofish: connections with the BMC's own trust (CA bundle or a pinned
// certificate), one cached session per BMC, the few operations edgefleet
// needs (facts, power, virtual media, one-time boot) and errors sorted
// into what a user must fix. Credentials never leave this package in an
// error or a log line.
package bmc

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/stmcginnis/gofish/schemas"
)

// Target is how to reach and log in to one BMC.
type Target struct {
	// Address is https://host[:port] with an optional
	// /redfish/v1/Systems/<id> path.
	Address            string
	Username, Password string
	// CABundle (PEM) or CertSHA256 (hex, the leaf's DER) decide trust;
	// neither means the system roots.
	CABundle   []byte
	CertSHA256 string
}

// key identifies everything a session depends on; a change of any of
// them (a rotated password, a new CA) makes a new session.
func (t Target) key() string {
	h := sha256.New()
	for _, s := range []string{t.Address, t.Username, t.Password, string(t.CABundle), t.CertSHA256} {
		fmt.Fprintf(h, "%d:%s;", len(s), s)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Endpoint and system path of the address.
func (t Target) split() (endpoint, system string, err error) {
	u, err := url.Parse(t.Address)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil {
		return "", "", &Error{Kind: KindInvalid, Msg: "address must be https://host[:port][/redfish/v1/Systems/<id>]"}
	}
	p := strings.TrimSuffix(u.Path, "/")
	switch {
	case p == "" || p == "/redfish/v1":
	case strings.HasPrefix(p, "/redfish/v1/Systems/") && !strings.Contains(strings.TrimPrefix(p, "/redfish/v1/Systems/"), "/"):
		system = p
	default:
		return "", "", &Error{Kind: KindInvalid, Msg: "address path must be empty or /redfish/v1/Systems/<id>"}
	}
	return "https://" + u.Host, system, nil
}

// Kind sorts errors by who must act.
type Kind string

const (
	// KindUnreachable: the BMC did not answer (retry with backoff).
	KindUnreachable Kind = "Unreachable"
	// KindBadCertificate: the BMC's certificate is not trusted.
	KindBadCertificate Kind = "BadCertificate"
	// KindAuthentication: the BMC refused the credentials.
	KindAuthentication Kind = "AuthenticationFailed"
	// KindSystemNotFound: the address names no (single) system.
	KindSystemNotFound Kind = "SystemNotFound"
	// KindInvalid: the spec cannot work as written.
	KindInvalid Kind = "Invalid"
	// KindRefused: the BMC answered an operation with an error.
	KindRefused Kind = "Refused"
)

// Error is a BMC failure with its kind and a message safe to show.
type Error struct {
	Kind Kind
	// Status is the HTTP status the BMC answered (0 without an answer).
	Status int
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

// KindOf is err's kind (KindRefused for errors of unknown origin).
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindRefused
}

// errPinMismatch is what the TLS handshake fails with when the BMC's
// certificate is not the pinned one.
var errPinMismatch = errors.New("the BMC's certificate does not match certificateSHA256")

// transport remembers why the last request failed below HTTP: gofish
// turns transport errors into strings, losing their type.
type transport struct {
	base *http.Transport
	mu   sync.Mutex
	last error
}

// maxAnswer bounds what one BMC answer may hold: BMCs are hostile input,
// and gofish reads answers whole.
const maxAnswer = 4 << 20

func (t *transport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(r)
	t.mu.Lock()
	t.last = err
	t.mu.Unlock()
	if resp != nil && resp.Body != nil {
		resp.Body = &limitedBody{ReadCloser: resp.Body, left: maxAnswer}
	}
	return resp, err
}

// limitedBody fails a read past its limit instead of truncating silently.
type limitedBody struct {
	io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, fmt.Errorf("the BMC's answer is larger than %d MiB", maxAnswer>>20)
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	return n, err
}

func (t *transport) lastErr() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.last
}

func newTransport(t Target) (*transport, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	switch {
	case t.CertSHA256 != "":
		want := strings.ToLower(t.CertSHA256)
		// The pin replaces chain verification: BMCs mostly have
		// self-signed certificates without our host names.
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errPinMismatch
			}
			sum := sha256.Sum256(cs.PeerCertificates[0].Raw)
			if hex.EncodeToString(sum[:]) != want {
				return fmt.Errorf("%w (it is %s)", errPinMismatch, hex.EncodeToString(sum[:]))
			}
			return nil
		}
	case len(t.CABundle) > 0:
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(t.CABundle) {
			return nil, &Error{Kind: KindInvalid, Msg: "caBundle holds no PEM certificate"}
		}
		cfg.RootCAs = pool
	}
	return &transport{base: &http.Transport{
		TLSClientConfig:     cfg,
		TLSHandshakeTimeout: 10 * time.Second,
		// iDRAC suffixes ETags with -gzip for compressed answers, which
		// then fail If-Match (redfish.md §1.4).
		DisableCompression:    true,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
	}}, nil
}

// classify turns a gofish or transport error into an *Error.
func classify(err error, tr *transport, what string) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var rf *schemas.Error
	if errors.As(err, &rf) && rf.HTTPReturnedStatusCode != 0 {
		msg := fmt.Sprintf("%s: the BMC answered HTTP %d", what, rf.HTTPReturnedStatusCode)
		if ids := messageIDs(rf); ids != "" {
			msg += " " + ids
		}
		kind := KindRefused
		if rf.HTTPReturnedStatusCode == http.StatusUnauthorized || rf.HTTPReturnedStatusCode == http.StatusForbidden {
			kind = KindAuthentication
			msg += ": check the username and password in the credentials Secret"
		}
		return &Error{Kind: kind, Status: rf.HTTPReturnedStatusCode, Msg: msg}
	}
	if terr := tr.lastErr(); terr != nil {
		var verr *tls.CertificateVerificationError
		var uerr x509.UnknownAuthorityError
		var herr x509.HostnameError
		switch {
		case errors.Is(terr, errPinMismatch):
			return &Error{Kind: KindBadCertificate, Msg: what + ": " + pinMessage(terr)}
		case errors.As(terr, &verr), errors.As(terr, &uerr), errors.As(terr, &herr):
			return &Error{Kind: KindBadCertificate, Msg: what + ": the BMC's certificate is not trusted (" + verifyMessage(terr) + "): set caBundle to the CA that signed it, or certificateSHA256 to its fingerprint"}
		}
		return &Error{Kind: KindUnreachable, Msg: what + ": " + sanitize(terr.Error())}
	}
	return &Error{Kind: KindRefused, Msg: what + ": " + sanitize(err.Error())}
}

func pinMessage(err error) string {
	s := err.Error()
	if i := strings.Index(s, errPinMismatch.Error()); i >= 0 {
		return s[i:]
	}
	return errPinMismatch.Error()
}

func verifyMessage(err error) string {
	var verr *tls.CertificateVerificationError
	if errors.As(err, &verr) {
		return verr.Err.Error()
	}
	return err.Error()
}

func messageIDs(e *schemas.Error) string {
	var ids []string
	if e.Code != "" {
		ids = append(ids, e.Code)
	}
	for _, x := range e.ExtendedInfos {
		if x.MessageID != "" && x.MessageID != e.Code {
			ids = append(ids, x.MessageID)
		}
	}
	if len(ids) == 0 {
		return ""
	}
	return "(" + strings.Join(ids, ", ") + ")"
}

// sanitize cuts what a BMC or the network said to a sane length.
func sanitize(s string) string {
	s = strings.ToValidUTF8(strings.TrimSpace(s), "?")
	if len(s) > 512 {
		s = s[:512] + "…"
	}
	return s
}
