// Package clusterregistration lets clusters join the fleet: it defines
// ClusterRegistrationToken Secrets (their controller is
// internal/controller/clusterregistrationtoken), serves the join routes on
// the manager's endpoint (register, renew, import manifest) and the agents'
// proxy to the manager's Kubernetes API, and provisions each cluster's
// credential. See docs/registration.md.
package clusterregistration

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/authn"
	"github.com/edgefleet/edgefleet/internal/endpoint"
	"github.com/edgefleet/edgefleet/internal/pki"
	"github.com/edgefleet/edgefleet/internal/wire/clusterjoin"
)

// Options configure registration.
type Options struct {
	ExternalURL *url.URL
	CACertPEM   []byte
	// CredentialTTL defaults to DefaultCredentialTTL.
	CredentialTTL time.Duration
	// AgentImage defaults to DefaultAgentImage.
	AgentImage string
	Log        logr.Logger

	// CredentialMaxLifetime bounds renewals since registration; 0 means
	// DefaultCredentialMaxLifetime, negative means unbounded.
	CredentialMaxLifetime time.Duration
	// JoinRate and JoinBurst limit /v1/register and /v1/import per source
	// IP; JoinRate 0 means DefaultJoinRate, negative means no limit.
	JoinRate  float64
	JoinBurst int
}

// Setup adds the clientID and token indexes, the token Secret cache and
// the join routes.
func Setup(mgr ctrl.Manager, r endpoint.Router, o Options) error {
	if o.CredentialTTL <= 0 {
		o.CredentialTTL = DefaultCredentialTTL
	}
	if o.AgentImage == "" {
		o.AgentImage = DefaultAgentImage
	}
	if err := ValidateAgentImage(o.AgentImage); err != nil {
		return fmt.Errorf("--agent-image: %w", err)
	}
	if o.CredentialMaxLifetime == 0 {
		o.CredentialMaxLifetime = DefaultCredentialMaxLifetime
	}
	if o.JoinRate == 0 {
		o.JoinRate, o.JoinBurst = DefaultJoinRate, DefaultJoinBurst
	}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &fleetv1.Cluster{}, ClientIDIndex, func(o client.Object) []string {
		if id := o.(*fleetv1.Cluster).Spec.ClientID; id != "" {
			return []string{id}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("indexing clusters by clientID: %w", err)
	}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &fleetv1.Cluster{}, RegistrationTokenIndex, indexRegistrationToken); err != nil {
		return fmt.Errorf("indexing clusters by registration token: %w", err)
	}
	direct, err := client.New(mgr.GetConfig(), client.Options{Scheme: mgr.GetScheme()})
	if err != nil {
		return fmt.Errorf("creating registration client: %w", err)
	}
	cs, err := kubernetes.NewForConfig(mgr.GetConfig())
	if err != nil {
		return fmt.Errorf("creating registration clientset: %w", err)
	}
	tokens, err := newTokenSecretCache(mgr.GetConfig(), mgr.GetScheme())
	if err != nil {
		return err
	}
	// On every replica, like the routes that read it (a bare cache would
	// start on the leader only).
	if err := mgr.Add(everyReplica{tokens}); err != nil {
		return fmt.Errorf("adding the token Secret cache: %w", err)
	}
	svc := &Service{
		tokens: tokens, maxLifetime: max(o.CredentialMaxLifetime, 0),
		client: direct, cache: mgr.GetClient(), clientset: cs, auth: &authn.Authenticator{Client: cs},
		caPEM: o.CACertPEM, credentialTTL: o.CredentialTTL, now: time.Now,
		recorder: mgr.GetEventRecorder("edgefleet-registration"),
	}
	h := &handlers{Service: svc, externalURL: o.ExternalURL, agentImage: o.AgentImage, log: o.Log.WithName("registration")}
	proxy, err := ManagerAPIProxy(mgr.GetConfig())
	if err != nil {
		return err
	}
	limit := newSourceLimiter(o.JoinRate, o.JoinBurst)
	r.Handle("POST "+clusterjoin.RegisterPath, limit.wrap(h.register))
	r.Handle("POST "+clusterjoin.RenewPath, http.HandlerFunc(h.renew))
	r.Handle("GET "+clusterjoin.ImportPathPrefix+"{file}", limit.wrap(h.importManifest))
	r.Handle(clusterjoin.ManagerAPIPrefix+"/", &contentGuard{auth: h.auth, cache: mgr.GetClient(), direct: direct, next: proxy})
	return nil
}

// PublishEndpoint writes ConfigMap edgefleet-system/edgefleet-endpoint
// (url, ca.crt, caChecksum) so `edgefleet token create` and `edgefleet
// kubeconfig` can print commands without being told the URL. It runs on the
// leader.
func PublishEndpoint(ctx context.Context, c client.Client, externalURL *url.URL, caCertPEM []byte) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: clusterjoin.SystemNamespace}}
	if err := c.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", ns.Name, err)
	}
	want := map[string]string{"url": externalURL.String(), "ca.crt": string(caCertPEM), "caChecksum": pki.Checksum(caCertPEM)}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: clusterjoin.EndpointConfigMap}, Data: want}
	err := c.Create(ctx, cm)
	if apierrors.IsAlreadyExists(err) {
		if err = c.Get(ctx, client.ObjectKeyFromObject(cm), cm); err == nil {
			cm.Data = want
			err = c.Update(ctx, cm)
		}
	}
	if err != nil {
		return fmt.Errorf("publishing endpoint ConfigMap %s/%s: %w", ns.Name, clusterjoin.EndpointConfigMap, err)
	}
	return nil
}
