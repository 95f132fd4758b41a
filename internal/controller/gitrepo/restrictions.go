package gitrepo

import (
	"fmt"
	"regexp"
	"slices"
	"sort"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
)

// restriction is the GitRepoRestrictions of one namespace merged as Fleet
// merges them: by name, the first non-empty default wins and the allow
// lists are joined.
type restriction struct {
	defaultServiceAccount, defaultClientSecretName string
	serviceAccounts, repoPatterns                  []string
	clientSecretNames, targetNamespaces            []string
}

func mergeRestrictions(items []fleetv1.GitRepoRestriction) restriction {
	items = slices.Clone(items)
	sort.Slice(items, func(i, j int) bool { return items[i].Name < items[j].Name })
	var r restriction
	for _, it := range items {
		if r.defaultServiceAccount == "" {
			r.defaultServiceAccount = it.DefaultServiceAccount
		}
		if r.defaultClientSecretName == "" {
			r.defaultClientSecretName = it.DefaultClientSecretName
		}
		r.serviceAccounts = append(r.serviceAccounts, it.AllowedServiceAccounts...)
		r.repoPatterns = append(r.repoPatterns, it.AllowedRepoPatterns...)
		r.clientSecretNames = append(r.clientSecretNames, it.AllowedClientSecretNames...)
		r.targetNamespaces = append(r.targetNamespaces, it.AllowedTargetNamespaces...)
	}
	return r
}

// authorize checks a GitRepo's spec against the namespace's
// GitRepoRestrictions and fills in their defaults (serviceAccount,
// clientSecretName), in place. The errors are worded as Fleet's, so scripts
// matching them keep working. No restriction allows everything.
func authorize(items []fleetv1.GitRepoRestriction, spec *fleetv1.GitRepoSpec) error {
	if len(items) == 0 {
		return nil
	}
	r := mergeRestrictions(items)
	if len(r.targetNamespaces) > 0 && spec.TargetNamespace == "" {
		return fmt.Errorf("empty targetNamespace denied, because allowedTargetNamespaces restriction is present")
	}
	if err := allowed(spec.TargetNamespace, r.targetNamespaces); err != nil {
		return fmt.Errorf("disallowed targetNamespace %s: %w", spec.TargetNamespace, err)
	}
	if err := allowed(spec.ServiceAccount, r.serviceAccounts); err != nil {
		return fmt.Errorf("disallowed serviceAccount %s: %w", spec.ServiceAccount, err)
	}
	if err := allowedRepo(spec.Repo, r.repoPatterns); err != nil {
		return fmt.Errorf("disallowed repo %s: %w", spec.Repo, err)
	}
	if err := allowed(spec.ClientSecretName, r.clientSecretNames); err != nil {
		return fmt.Errorf("disallowed clientSecretName %s: %w", spec.ClientSecretName, err)
	}
	// Defaults only fill what the GitRepo leaves empty, and are trusted as
	// the restriction's author wrote them (Fleet does not check them
	// against the allow lists either).
	if spec.ServiceAccount == "" {
		spec.ServiceAccount = r.defaultServiceAccount
	}
	if spec.ClientSecretName == "" {
		spec.ClientSecretName = r.defaultClientSecretName
	}
	return nil
}

// allowed: an empty value (a default applies) or an empty list passes.
func allowed(v string, list []string) error {
	if v == "" || len(list) == 0 || slices.Contains(list, v) {
		return nil
	}
	return fmt.Errorf("%s not in allowed set %v", v, list)
}

// allowedRepo: each pattern is an exact URL or an unanchored regular
// expression, as in Fleet.
func allowedRepo(repo string, patterns []string) error {
	if len(patterns) == 0 {
		return nil
	}
	for _, p := range patterns {
		if p == repo {
			return nil
		}
		re, err := regexp.Compile(p)
		if err != nil {
			return fmt.Errorf("GitRepoRestriction failed to compile regex '%s': %w", p, err)
		}
		if re.MatchString(repo) {
			return nil
		}
	}
	return fmt.Errorf("%s not in allowed set %v", repo, patterns)
}
