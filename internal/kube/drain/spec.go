package drain

import (
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	upgradev1 "github.com/edgefleet/edgefleet/api/upgrade/v1alpha1"
)

// FromSpec reads a DrainSpec (system-upgrade-controller's drain, which
// Elemental's ManagedOSImage reuses) with its defaults: DaemonSet pods
// ignored and emptyDir data deleted unless set false.
func FromSpec(d *upgradev1.DrainSpec) (Options, error) {
	o := Options{IgnoreDaemonSets: true, DeleteEmptyDirData: true}
	if d == nil {
		return o, nil
	}
	if d.IgnoreDaemonSets != nil {
		o.IgnoreDaemonSets = *d.IgnoreDaemonSets
	}
	switch {
	case d.DeleteEmptydirData != nil && d.DeleteLocalData != nil:
		return o, fmt.Errorf("drain: set deleteEmptydirData or its old name deleteLocalData, not both")
	case d.DeleteEmptydirData != nil:
		o.DeleteEmptyDirData = *d.DeleteEmptydirData
	case d.DeleteLocalData != nil:
		o.DeleteEmptyDirData = *d.DeleteLocalData
	}
	o.Force, o.DisableEviction = d.Force, d.DisableEviction
	if d.GracePeriod != nil && *d.GracePeriod >= 0 {
		g := int64(*d.GracePeriod)
		o.GracePeriodSeconds = &g
	}
	o.SkipWaitForDeleteTimeout = time.Duration(d.SkipWaitForDeleteTimeout) * time.Second
	if d.PodSelector != nil {
		s, err := metav1.LabelSelectorAsSelector(d.PodSelector)
		if err != nil {
			return o, fmt.Errorf("drain.podSelector: %w", err)
		}
		o.PodSelector = s
	}
	if d.Timeout != nil && d.Timeout.Duration < 0 {
		return o, fmt.Errorf("drain.timeout must not be negative")
	}
	return o, nil
}
