// Package webhook receives push events from GitHub, GitLab, Gitea/Gogs,
// Bitbucket Cloud and Bitbucket Server at POST /webhooks/git, verifies them against the GitRepo's webhook secret
// (or the manager-wide one) and asks the GitRepo controller for an
// immediate sync by setting status.webhookCommit. The payload is never
// trusted for content: the controller still asks the repository itself
// which commit the branch points to.
package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/gitops"
)

// Path is where the manager's endpoint serves the handler.
const Path = "/webhooks/git"

// ManagerSecretName is the manager-wide webhook Secret (key SecretKey), in
// the manager's system namespace, used by GitRepos without webhookSecret.
const ManagerSecretName = "edgefleet-webhook"

// SecretKey is the key holding the shared secret in a webhook Secret, for
// every provider. A key named after the provider (ProviderSecretKey, Fleet's
// names) wins over it, so a Fleet gitjob-webhook Secret works unchanged.
const SecretKey = "token"

// ProviderSecretKey is the Secret key Rancher Fleet reads for a provider's
// secret: github, gitlab, bitbucket, bitbucket-server, gogs (Gitea, which
// Fleet serves through its Gogs support, reads gogs too).
func ProviderSecretKey(p Provider) string {
	if p == Gitea {
		return string(Gogs)
	}
	return string(p)
}

// Bounds on what an unauthenticated caller can make the manager hold: a
// payload is read whole before its signature can be checked, so at most
// DefaultMaxInFlight payloads of DefaultMaxPayload bytes are in memory, and
// each must arrive within DefaultReadTimeout.
const (
	// DefaultMaxPayload is well above a push event (GitLab and Gitea list
	// at most 20 commits; GitHub's payload for a push of hundreds of
	// commits stays below it). A larger push is refused with 413 and the
	// commit is picked up by polling.
	DefaultMaxPayload = 1 << 20
	// DefaultMaxInFlight events are read and verified at once; more get
	// 503 with Retry-After, which git hosts retry.
	DefaultMaxInFlight = 8
	// DefaultReadTimeout bounds reading one payload.
	DefaultReadTimeout = 10 * time.Second
)

// rejected is the one answer to a signed push that triggers nothing, whether
// no GitRepo follows the repository and ref, or the signature matches none
// of their secrets, or a secret is missing: an unauthenticated caller must
// not learn which repositories, GitRepos or secrets exist. The manager's log
// says which GitRepo rejected it and why.
const rejected = "no GitRepo accepted this event: either none follows this repository and ref, or the signature does not match the webhook secret (the provider's key, e.g. \"github\", else the \"token\" key of the GitRepo's webhookSecret Secret, or of the manager-wide " + ManagerSecretName + " Secret); the manager's log names the reason"

// Provider identifies the git host that sent an event.
type Provider string

// Providers.
const (
	GitHub Provider = "github"
	GitLab Provider = "gitlab"
	Gitea  Provider = "gitea"
	Gogs   Provider = "gogs"
	// Bitbucket is Bitbucket Cloud (bitbucket.org).
	Bitbucket Provider = "bitbucket"
	// BitbucketServer is Bitbucket Server / Data Center.
	BitbucketServer Provider = "bitbucket-server"
)

// Handler serves POST /webhooks/git.
type Handler struct {
	// Reader lists GitRepos and reads Secrets; uncached, so the handler
	// works on every replica and before caches sync.
	Reader client.Reader
	// Writer patches GitRepo status.
	Writer client.Client
	// SystemNamespace holds ManagerSecretName.
	SystemNamespace string
	Log             logr.Logger
	// MaxPayload, MaxInFlight and ReadTimeout default to DefaultMaxPayload,
	// DefaultMaxInFlight and DefaultReadTimeout.
	MaxPayload  int64
	MaxInFlight int
	ReadTimeout time.Duration

	initOnce sync.Once
	inFlight chan struct{}
}

func (h *Handler) init() {
	h.initOnce.Do(func() {
		if h.MaxPayload <= 0 {
			h.MaxPayload = DefaultMaxPayload
		}
		if h.MaxInFlight <= 0 {
			h.MaxInFlight = DefaultMaxInFlight
		}
		if h.ReadTimeout <= 0 {
			h.ReadTimeout = DefaultReadTimeout
		}
		h.inFlight = make(chan struct{}, h.MaxInFlight)
	})
}

// event is what the handler needs from a push payload.
type event struct {
	provider  Provider
	name      string // the event type header
	signature string // the signature (or GitLab token) header
	ref       string
	after     string
	urls      []string
}

// detect reads the provider and event headers. Gitea sends Gogs' and
// GitHub's headers too, so it is checked first. Both Bitbucket flavours send
// X-Event-Key and sign with X-Hub-Signature ("sha256=" + hex HMAC); Cloud
// also sends X-Hook-UUID, Server X-Request-Id.
func detect(h http.Header) (*event, bool) {
	switch {
	case h.Get("X-Event-Key") != "" && h.Get("X-Hook-UUID") != "":
		return &event{provider: Bitbucket, name: h.Get("X-Event-Key"), signature: h.Get("X-Hub-Signature")}, true
	case h.Get("X-Event-Key") != "":
		return &event{provider: BitbucketServer, name: h.Get("X-Event-Key"), signature: h.Get("X-Hub-Signature")}, true
	case h.Get("X-Gitea-Event") != "":
		return &event{provider: Gitea, name: h.Get("X-Gitea-Event"), signature: h.Get("X-Gitea-Signature")}, true
	case h.Get("X-Gogs-Event") != "":
		return &event{provider: Gogs, name: h.Get("X-Gogs-Event"), signature: h.Get("X-Gogs-Signature")}, true
	case h.Get("X-Gitlab-Event") != "":
		return &event{provider: GitLab, name: h.Get("X-Gitlab-Event"), signature: h.Get("X-Gitlab-Token")}, true
	case h.Get("X-GitHub-Event") != "":
		return &event{provider: GitHub, name: h.Get("X-GitHub-Event"), signature: h.Get("X-Hub-Signature-256")}, true
	}
	return nil, false
}

func (e *event) isPush() bool {
	switch e.provider {
	case GitLab:
		return e.name == "Push Hook" || e.name == "Tag Push Hook"
	case Bitbucket:
		return e.name == "repo:push"
	case BitbucketServer:
		return e.name == "repo:refs_changed"
	default:
		return e.name == "push"
	}
}

type payload struct {
	Ref        string `json:"ref"`
	After      string `json:"after"`
	Repository struct {
		HTMLURL     string `json:"html_url"`
		CloneURL    string `json:"clone_url"`
		SSHURL      string `json:"ssh_url"`
		GitURL      string `json:"git_url"`
		URL         string `json:"url"`
		GitHTTPURL  string `json:"git_http_url"`
		GitSSHURL   string `json:"git_ssh_url"`
		Homepage    string `json:"homepage"`
		WebsiteLink string `json:"website"`
	} `json:"repository"`
	Project struct {
		WebURL     string `json:"web_url"`
		GitHTTPURL string `json:"git_http_url"`
		GitSSHURL  string `json:"git_ssh_url"`
	} `json:"project"`
}

// bitbucketPayload is what the handler reads from Bitbucket Cloud's
// repo:push and Bitbucket Server's repo:refs_changed events. Only the first
// change counts: one push event names one ref in practice, and the commit
// is asked from the repository anyway.
type bitbucketPayload struct {
	// Cloud.
	Push struct {
		Changes []struct {
			New *struct {
				Type   string `json:"type"` // branch or tag
				Name   string `json:"name"`
				Target struct {
					Hash string `json:"hash"`
				} `json:"target"`
			} `json:"new"`
		} `json:"changes"`
	} `json:"push"`
	// Server.
	Changes []struct {
		RefID  string `json:"refId"`
		ToHash string `json:"toHash"`
	} `json:"changes"`
	Repository struct {
		Links struct {
			HTML  bitbucketLink   `json:"html"`
			Self  json.RawMessage `json:"self"`
			Clone []bitbucketLink `json:"clone"`
		} `json:"links"`
	} `json:"repository"`
}

type bitbucketLink struct {
	Href string `json:"href"`
}

func (e *event) parseBitbucket(body []byte) error {
	var p bitbucketPayload
	if err := json.Unmarshal(body, &p); err != nil {
		return fmt.Errorf("the payload is not a Bitbucket push event: %v", err)
	}
	if e.provider == Bitbucket {
		for _, c := range p.Push.Changes {
			if c.New == nil || c.New.Name == "" {
				continue // a deleted branch
			}
			prefix := "refs/heads/"
			if c.New.Type == "tag" {
				prefix = "refs/tags/"
			}
			e.ref, e.after = prefix+c.New.Name, c.New.Target.Hash
			break
		}
	} else if len(p.Changes) > 0 {
		e.ref, e.after = p.Changes[0].RefID, p.Changes[0].ToHash
	}
	links := append([]bitbucketLink{p.Repository.Links.HTML}, p.Repository.Links.Clone...)
	// Cloud's self link is an object, Server's a list.
	var self []bitbucketLink
	if json.Unmarshal(p.Repository.Links.Self, &self) == nil {
		links = append(links, self...)
	}
	for _, l := range links {
		if l.Href == "" {
			continue
		}
		u := gitops.NormalizeURL(l.Href)
		// Bitbucket Server's links name the repository /scm/<project>/<repo>
		// (clone) or /projects/<p>/repos/<r>/browse (self); the clone form
		// is what a GitRepo uses.
		if strings.Contains(u, "/projects/") {
			continue
		}
		e.urls = append(e.urls, u)
	}
	if e.ref == "" || len(e.urls) == 0 {
		return errors.New("the payload has no ref or repository URL: is this a push event?")
	}
	return nil
}

func (e *event) parse(body []byte) error {
	if e.provider == Bitbucket || e.provider == BitbucketServer {
		return e.parseBitbucket(body)
	}
	var p payload
	if err := json.Unmarshal(body, &p); err != nil {
		return fmt.Errorf("the payload is not JSON: %v (set the webhook's content type to application/json)", err)
	}
	e.ref, e.after = p.Ref, p.After
	r := p.Repository
	for _, u := range []string{r.HTMLURL, r.CloneURL, r.SSHURL, r.GitURL, r.URL, r.GitHTTPURL, r.GitSSHURL, r.Homepage, p.Project.WebURL, p.Project.GitHTTPURL, p.Project.GitSSHURL} {
		if u != "" {
			e.urls = append(e.urls, gitops.NormalizeURL(u))
		}
	}
	if e.ref == "" || len(e.urls) == 0 {
		return errors.New("the payload has no ref or repository URL: is this a push event?")
	}
	return nil
}

// Verify checks an event's signature header against secret: GitHub's
// X-Hub-Signature-256 and both Bitbucket's X-Hub-Signature ("sha256=" + hex
// HMAC-SHA256 of the body), Gitea's and Gogs' hex HMAC-SHA256, GitLab's
// X-Gitlab-Token (the secret itself).
// It returns errMissingSignature when the header is empty.
func Verify(p Provider, body []byte, header string, secret []byte) error {
	if header == "" {
		return errMissingSignature
	}
	switch p {
	case GitLab:
		if subtle.ConstantTimeCompare([]byte(header), secret) != 1 {
			return errBadSignature
		}
		return nil
	case GitHub, Bitbucket, BitbucketServer:
		hexSig, ok := strings.CutPrefix(header, "sha256=")
		if !ok {
			return errBadSignature
		}
		header = hexSig
	}
	got, err := hex.DecodeString(header)
	if err != nil {
		return errBadSignature
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	if !hmac.Equal(got, mac.Sum(nil)) {
		return errBadSignature
	}
	return nil
}

var (
	errMissingSignature = errors.New("the request has no signature")
	errBadSignature     = errors.New("the signature does not match the secret")
)

// Sign is what a git host sends for body and secret (for tests and tools).
func Sign(p Provider, body []byte, secret []byte) (header, value string) {
	if p == GitLab {
		return "X-Gitlab-Token", string(secret)
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	sig := hex.EncodeToString(mac.Sum(nil))
	switch p {
	case Gitea:
		return "X-Gitea-Signature", sig
	case Gogs:
		return "X-Gogs-Signature", sig
	case Bitbucket, BitbucketServer:
		return "X-Hub-Signature", "sha256=" + sig
	}
	return "X-Hub-Signature-256", "sha256=" + sig
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.init()
	ctx := r.Context()
	ev, ok := detect(r.Header)
	if !ok {
		http.Error(w, "unknown git host: expected a GitHub, GitLab, Gitea, Gogs or Bitbucket event header (X-GitHub-Event, X-Gitlab-Event, X-Gitea-Event, X-Gogs-Event, X-Event-Key)", http.StatusBadRequest)
		return
	}
	// Everything decidable from the headers is decided before the body is
	// read.
	if ev.name == "ping" || ev.name == "diagnostics:ping" {
		fmt.Fprintln(w, "pong")
		return
	}
	if !ev.isPush() {
		fmt.Fprintf(w, "ignored %s event %q: only push events trigger a sync\n", ev.provider, ev.name)
		return
	}
	if ev.signature == "" {
		http.Error(w, "the request is not signed: set the webhook's secret to the "+strconv.Quote(ProviderSecretKey(ev.provider))+" (or \"token\") key of the GitRepo's webhookSecret Secret (or of "+ManagerSecretName+")", http.StatusUnauthorized)
		return
	}
	if r.ContentLength > h.MaxPayload {
		http.Error(w, fmt.Sprintf("payload larger than %d bytes: the manager picks the commit up by polling", h.MaxPayload), http.StatusRequestEntityTooLarge)
		return
	}
	select {
	case h.inFlight <- struct{}{}:
		defer func() { <-h.inFlight }()
	default:
		w.Header().Set("Retry-After", "10")
		http.Error(w, "too many webhook deliveries in progress; retry later", http.StatusServiceUnavailable)
		return
	}
	body, status, msg := h.readBody(w, r)
	if status != http.StatusOK {
		http.Error(w, msg, status)
		return
	}
	if err := ev.parse(body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	status, msg = h.trigger(ctx, ev, body)
	if status != http.StatusOK {
		http.Error(w, msg, status)
		return
	}
	fmt.Fprintln(w, msg)
}

// readBody reads at most MaxPayload bytes within ReadTimeout.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, int, string) {
	// Not every ResponseWriter supports deadlines (tests' recorders); the
	// endpoint's does.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(h.ReadTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.MaxPayload))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return nil, http.StatusRequestEntityTooLarge, fmt.Sprintf("payload larger than %d bytes: the manager picks the commit up by polling", h.MaxPayload)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return nil, http.StatusRequestTimeout, fmt.Sprintf("the payload did not arrive within %s", h.ReadTimeout)
	case err != nil:
		return nil, http.StatusBadRequest, "reading the payload: " + err.Error()
	}
	return body, http.StatusOK, ""
}

// trigger verifies ev for every GitRepo watching its repository and ref and
// sets their webhookCommit. A GitRepo counts only if the signature is valid
// with its secret, so a forged event triggers nothing.
func (h *Handler) trigger(ctx context.Context, ev *event, body []byte) (int, string) {
	log := h.Log.WithValues("provider", ev.provider, "ref", ev.ref, "commit", ev.after)
	var list fleetv1.GitRepoList
	if err := h.Reader.List(ctx, &list); err != nil {
		log.Error(err, "Listing GitRepos for a webhook")
		return http.StatusServiceUnavailable, "listing GitRepos failed; the git host will retry"
	}
	urls := map[string]bool{}
	for _, u := range ev.urls {
		urls[u] = true
	}
	var triggered []string
	for i := range list.Items {
		gr := &list.Items[i]
		if !urls[gitops.NormalizeURL(gr.Spec.Repo)] || !refMatches(gr, ev.ref) {
			continue
		}
		key := gr.Namespace + "/" + gr.Name
		secret, err := h.secretFor(ctx, gr, ev.provider)
		if err != nil {
			log.Info("Rejecting webhook", "GitRepo", klog.KObj(gr), "reason", err.Error())
			continue
		}
		if err := Verify(ev.provider, body, ev.signature, secret); err != nil {
			log.Info("Rejecting webhook", "GitRepo", klog.KObj(gr), "reason", err.Error())
			continue
		}
		if err := h.setWebhookCommit(ctx, gr, ev.after); err != nil {
			log.Error(err, "Triggering sync", "GitRepo", klog.KObj(gr))
			return http.StatusServiceUnavailable, "updating GitRepo " + key + " failed; the git host will retry"
		}
		log.Info("Webhook triggers sync", "GitRepo", klog.KObj(gr))
		triggered = append(triggered, key)
	}
	if len(triggered) == 0 {
		log.Info("Webhook triggered no GitRepo", "repositories", ev.urls)
		return http.StatusForbidden, rejected
	}
	sort.Strings(triggered)
	return http.StatusOK, "sync triggered for " + strings.Join(triggered, ", ")
}

// refMatches tells whether a push to ref concerns gr: its branch, or its
// revision as a tag or branch.
func refMatches(gr *fleetv1.GitRepo, ref string) bool {
	if rev := gr.Spec.Revision; rev != "" {
		return ref == "refs/tags/"+rev || ref == "refs/heads/"+rev
	}
	branch := gr.Spec.Branch
	if branch == "" {
		branch = gitops.DefaultBranch
	}
	return ref == "refs/heads/"+branch
}

// secretFor is the GitRepo's webhook secret for provider p, or the
// manager-wide one: the provider's key (Fleet's name), else "token".
func (h *Handler) secretFor(ctx context.Context, gr *fleetv1.GitRepo, p Provider) ([]byte, error) {
	ns, name := gr.Namespace, gr.Spec.WebhookSecret
	if name == "" {
		ns, name = h.SystemNamespace, ManagerSecretName
	}
	var s corev1.Secret
	if err := h.Reader.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &s); err != nil {
		if apierrors.IsNotFound(err) {
			if gr.Spec.WebhookSecret == "" {
				return nil, fmt.Errorf("no webhook secret configured: set spec.webhookSecret or create %s/%s with key %q", ns, name, SecretKey)
			}
			return nil, fmt.Errorf("webhookSecret %s/%s does not exist", ns, name)
		}
		return nil, fmt.Errorf("reading webhook secret %s/%s: %w", ns, name, err)
	}
	if token := s.Data[ProviderSecretKey(p)]; len(token) > 0 {
		return token, nil
	}
	token := s.Data[SecretKey]
	if len(token) == 0 {
		return nil, fmt.Errorf("webhook secret %s/%s has neither a %q nor a %q key", ns, name, ProviderSecretKey(p), SecretKey)
	}
	return token, nil
}

func (h *Handler) setWebhookCommit(ctx context.Context, gr *fleetv1.GitRepo, commit string) error {
	if commit == "" {
		commit = "unknown"
	}
	if gr.Status.WebhookCommit == commit {
		return nil
	}
	orig := gr.DeepCopy()
	gr.Status.WebhookCommit = commit
	if err := h.Writer.Status().Patch(ctx, gr, client.MergeFrom(orig)); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	return nil
}
