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

// Package v1alpha1 holds the upgrade.edgefleet.io API: cluster upgrade
// Plans with the fields and semantics of rancher/system-upgrade-controller's
// upgrade.cattle.io/v1 Plan, executed on each downstream cluster by the
// cluster agent (docs/spec/upgradeplan.md, ADR 0014). Like the other API
// packages it imports only apimachinery; api/conventions_test.go checks the
// rules kept by hand.
//
// +kubebuilder:object:generate=true
// +groupName=upgrade.edgefleet.io
package v1alpha1
