/*
Copyright 2026 The edgefleet Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package v1alpha1

import (
	"fmt"
	"reflect"
	"strings"
)

// Normalized returns the config with each section taken from whichever
// spelling sets it (config.install or config.elemental.install, and so on
// for registration and reset) and config.elemental cleared, so everything
// downstream reads one layout. A section set in both spellings with
// different content is an error naming the sections.
func (c MachineRegistrationConfig) Normalized() (MachineRegistrationConfig, error) {
	out := *c.DeepCopy()
	out.Elemental = nil
	e := c.Elemental
	if e == nil {
		return out, nil
	}
	var conflicts []string
	if e.Install != nil {
		if c.Install != nil && !reflect.DeepEqual(c.Install, e.Install) {
			conflicts = append(conflicts, "install")
		}
		out.Install = e.Install.DeepCopy()
	}
	if e.Registration != nil {
		if c.Registration != nil && !reflect.DeepEqual(c.Registration, e.Registration) {
			conflicts = append(conflicts, "registration")
		}
		out.Registration = e.Registration.DeepCopy()
	}
	if e.Reset != nil {
		if c.Reset != nil && !reflect.DeepEqual(c.Reset, e.Reset) {
			conflicts = append(conflicts, "reset")
		}
		out.Reset = e.Reset.DeepCopy()
	}
	if len(conflicts) > 0 {
		var b strings.Builder
		for i, s := range conflicts {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "config.%s and config.elemental.%s", s, s)
		}
		return c, fmt.Errorf("%s are both set and differ: keep one spelling (Elemental's config.elemental.* or config.*), or make them equal", b.String())
	}
	return out, nil
}

// IsEnabled reports whether the reset is allowed (nil: not allowed).
func (r *ResetConfig) IsEnabled() bool { return r != nil && r.Enabled }

// Defaults fills the reset settings Elemental defaults to true.
func (r ResetConfig) Defaults() ResetConfig {
	t := true
	if r.ResetPersistent == nil {
		r.ResetPersistent = &t
	}
	if r.ResetOEM == nil {
		r.ResetOEM = &t
	}
	if r.Reboot == nil {
		r.Reboot = &t
	}
	return r
}
