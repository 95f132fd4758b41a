// Package kubenames checks the names and labels that edgefleet takes from
// outside (a fleet.yaml, a registering agent or machine), with one wording
// for what is wrong.
package kubenames

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// ValidateLabelKey checks a label (or annotation) key: an optional DNS
// prefix and "/", then a name of at most 63 characters.
func ValidateLabelKey(k string) error {
	if errs := validation.IsQualifiedName(k); len(errs) > 0 {
		return fmt.Errorf("label key %q is invalid: %s", k, strings.Join(errs, "; "))
	}
	return nil
}

// ValidateLabel checks a label's key and value.
func ValidateLabel(k, v string) error {
	if err := ValidateLabelKey(k); err != nil {
		return err
	}
	if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
		return fmt.Errorf("label %s=%q has an invalid value: %s", k, v, strings.Join(errs, "; "))
	}
	return nil
}
