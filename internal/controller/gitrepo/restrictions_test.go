package gitrepo

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
)

func TestAuthorize(t *testing.T) {
	grr := func(name string, f func(*fleetv1.GitRepoRestriction)) fleetv1.GitRepoRestriction {
		r := fleetv1.GitRepoRestriction{ObjectMeta: metav1.ObjectMeta{Name: name}}
		f(&r)
		return r
	}
	repo := "https://git.example.com/team-a/apps"
	tests := []struct {
		name         string
		restrictions []fleetv1.GitRepoRestriction
		spec         fleetv1.GitRepoSpec
		wantErr      string
		wantSA       string
		wantSecret   string
	}{
		{name: "no restriction allows anything", spec: fleetv1.GitRepoSpec{Repo: repo, ServiceAccount: "root"}, wantSA: "root"},
		{
			name: "defaults fill empty fields",
			restrictions: []fleetv1.GitRepoRestriction{grr("a", func(r *fleetv1.GitRepoRestriction) {
				r.DefaultServiceAccount, r.DefaultClientSecretName = "deployer", "git-creds"
			})},
			spec: fleetv1.GitRepoSpec{Repo: repo}, wantSA: "deployer", wantSecret: "git-creds",
		},
		{
			name: "defaults do not replace what the GitRepo sets",
			restrictions: []fleetv1.GitRepoRestriction{grr("a", func(r *fleetv1.GitRepoRestriction) {
				r.DefaultServiceAccount, r.AllowedServiceAccounts = "deployer", []string{"deployer", "viewer"}
			})},
			spec: fleetv1.GitRepoSpec{Repo: repo, ServiceAccount: "viewer"}, wantSA: "viewer",
		},
		{
			name: "service account outside the allowed set",
			restrictions: []fleetv1.GitRepoRestriction{grr("a", func(r *fleetv1.GitRepoRestriction) {
				r.AllowedServiceAccounts = []string{"deployer"}
			})},
			spec:    fleetv1.GitRepoSpec{Repo: repo, ServiceAccount: "root"},
			wantErr: "disallowed serviceAccount root: root not in allowed set [deployer]",
		},
		{
			name: "repo pattern is an unanchored regular expression",
			restrictions: []fleetv1.GitRepoRestriction{grr("a", func(r *fleetv1.GitRepoRestriction) {
				r.AllowedRepoPatterns = []string{`git\.example\.com/team-a/`}
			})},
			spec: fleetv1.GitRepoSpec{Repo: repo},
		},
		{
			name: "repo matching no pattern",
			restrictions: []fleetv1.GitRepoRestriction{grr("a", func(r *fleetv1.GitRepoRestriction) {
				r.AllowedRepoPatterns = []string{`^https://git\.example\.com/team-b/`}
			})},
			spec:    fleetv1.GitRepoSpec{Repo: repo},
			wantErr: "disallowed repo " + repo + ": " + repo + " not in allowed set [^https://git\\.example\\.com/team-b/]",
		},
		{
			name: "bad pattern is named",
			restrictions: []fleetv1.GitRepoRestriction{grr("a", func(r *fleetv1.GitRepoRestriction) {
				r.AllowedRepoPatterns = []string{`(`}
			})},
			spec:    fleetv1.GitRepoSpec{Repo: repo},
			wantErr: "GitRepoRestriction failed to compile regex '('",
		},
		{
			name: "client secret outside the allowed set",
			restrictions: []fleetv1.GitRepoRestriction{grr("a", func(r *fleetv1.GitRepoRestriction) {
				r.AllowedClientSecretNames = []string{"git-creds"}
			})},
			spec:    fleetv1.GitRepoSpec{Repo: repo, ClientSecretName: "admin-creds"},
			wantErr: "disallowed clientSecretName admin-creds: admin-creds not in allowed set [git-creds]",
		},
		{
			name: "allowed target namespaces require one",
			restrictions: []fleetv1.GitRepoRestriction{grr("a", func(r *fleetv1.GitRepoRestriction) {
				r.AllowedTargetNamespaces = []string{"team-a"}
			})},
			spec:    fleetv1.GitRepoSpec{Repo: repo},
			wantErr: "empty targetNamespace denied, because allowedTargetNamespaces restriction is present",
		},
		{
			name: "target namespace outside the allowed set",
			restrictions: []fleetv1.GitRepoRestriction{grr("a", func(r *fleetv1.GitRepoRestriction) {
				r.AllowedTargetNamespaces = []string{"team-a"}
			})},
			spec:    fleetv1.GitRepoSpec{Repo: repo, TargetNamespace: "kube-system"},
			wantErr: "disallowed targetNamespace kube-system: kube-system not in allowed set [team-a]",
		},
		{
			name: "several restrictions: lists joined, first default by name wins",
			restrictions: []fleetv1.GitRepoRestriction{
				grr("zz", func(r *fleetv1.GitRepoRestriction) {
					r.DefaultServiceAccount, r.AllowedServiceAccounts = "late", []string{"b"}
				}),
				grr("aa", func(r *fleetv1.GitRepoRestriction) {
					r.DefaultServiceAccount, r.AllowedServiceAccounts = "early", []string{"a"}
				}),
			},
			spec: fleetv1.GitRepoSpec{Repo: repo}, wantSA: "early",
		},
		{
			name: "several restrictions: a value allowed by either passes",
			restrictions: []fleetv1.GitRepoRestriction{
				grr("zz", func(r *fleetv1.GitRepoRestriction) { r.AllowedServiceAccounts = []string{"b"} }),
				grr("aa", func(r *fleetv1.GitRepoRestriction) { r.AllowedServiceAccounts = []string{"a"} }),
			},
			spec: fleetv1.GitRepoSpec{Repo: repo, ServiceAccount: "b"}, wantSA: "b",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := tt.spec
			err := authorize(tt.restrictions, &spec)
			switch {
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			}
			if tt.wantErr != "" {
				return
			}
			if spec.ServiceAccount != tt.wantSA || spec.ClientSecretName != tt.wantSecret {
				t.Errorf("serviceAccount %q clientSecretName %q, want %q %q", spec.ServiceAccount, spec.ClientSecretName, tt.wantSA, tt.wantSecret)
			}
		})
	}
}
