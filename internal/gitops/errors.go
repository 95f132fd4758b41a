package gitops

import (
	"errors"
	"fmt"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/transport"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/netguard"
)

// AllowLocalFlag is the `edgefleet server` flag that sets
// Fetcher.AllowLocal.
const AllowLocalFlag = "allow-local-git-repos"

// Error is a fetch failure with the reason a user acts on.
type Error struct {
	Reason string
	Err    error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// ReasonOf is err's reason, or "" when err is not a fetch failure.
func ReasonOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

// classify turns a transport error into an Error with advice.
func classify(repoURL string, err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	msg := err.Error()
	switch {
	case netguard.IsRefused(err):
		// Nothing was sent: say so, and nothing about the destination.
		var r *netguard.RefusedError
		errors.As(err, &r)
		return &Error{Reason: fleetv1.NetworkNotAllowedReason, Err: fmt.Errorf("fetching %s was %w", repoURL, r)}
	case errors.Is(err, transport.ErrAuthenticationRequired):
		return &Error{Reason: fleetv1.AuthenticationFailedReason, Err: fmt.Errorf("%s rejected the credentials (%v): check username/password or token in the clientSecretName Secret", repoURL, err)}
	case errors.Is(err, transport.ErrAuthorizationFailed):
		return &Error{Reason: fleetv1.AuthenticationFailedReason, Err: fmt.Errorf("%s denied access (%v): the credentials in the clientSecretName Secret lack read access", repoURL, err)}
	case strings.Contains(msg, "unable to authenticate"), strings.Contains(msg, "known_hosts"), strings.Contains(msg, "knownhosts"):
		return &Error{Reason: fleetv1.AuthenticationFailedReason, Err: fmt.Errorf("ssh to %s failed: %v", repoURL, err)}
	case errors.Is(err, transport.ErrRepositoryNotFound):
		return &Error{Reason: fleetv1.RepositoryUnreachableReason, Err: fmt.Errorf("repository %s not found: check spec.repo (a private repository without credentials also looks like this)", repoURL)}
	case strings.Contains(msg, "x509:"), strings.Contains(msg, "certificate"):
		return &Error{Reason: fleetv1.RepositoryUnreachableReason, Err: fmt.Errorf("TLS to %s failed: %v (set spec.caBundle to the server's CA)", repoURL, err)}
	}
	return &Error{Reason: fleetv1.RepositoryUnreachableReason, Err: fmt.Errorf("cannot reach %s: %v", repoURL, err)}
}

// redactErr hides credentials carried in URLs inside err's message, keeping
// its reason and what it wraps (context cancellation, transport errors).
func redactErr(err error) error {
	if err == nil {
		return nil
	}
	msg := RedactURLs(err.Error())
	var e *Error
	if errors.As(err, &e) {
		return &Error{Reason: e.Reason, Err: &redactedError{msg: msg, err: e.Err}}
	}
	return &redactedError{msg: msg, err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }
