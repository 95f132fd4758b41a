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

// Package v1alpha1 contains the machines.edgefleet.io/v1alpha1 API for
// onboarding bare-metal and edge machines: MachineRegistrations (registration
// endpoints with install and registration settings), MachineInventories (one
// per registered machine) and SeedImages (bootable installation media).
//
// Field names follow Rancher Elemental's elemental.cattle.io API wherever
// users are likely to carry configuration over (for example config.cloud-config
// and the kebab-case install and registration settings, which are handed to
// the machine as they are).
//
// This package is part of the module github.com/edgefleet/edgefleet/api and
// may import only the standard library and k8s.io/apimachinery (free-form
// JSON is runtime.RawExtension), so clients can use it without edgefleet's
// dependencies. api/conventions_test.go checks the rules kept by hand.
//
// +kubebuilder:object:generate=true
// +groupName=machines.edgefleet.io
package v1alpha1
