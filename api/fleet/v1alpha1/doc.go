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

// Package v1alpha1 contains the fleet.edgefleet.io/v1alpha1 API: downstream
// Clusters and ClusterGroups, ClusterRegistrationTokens for agent
// registration, and the GitRepo → Bundle → BundleDeployment chain that
// delivers workloads to clusters.
//
// Field names follow Rancher Fleet's fleet.cattle.io/v1alpha1 API wherever
// users are likely to carry manifests or fleet.yaml files over.
//
// This package is part of the module github.com/edgefleet/edgefleet/api and
// may import only the standard library and k8s.io/apimachinery (free-form
// JSON is runtime.RawExtension), so clients can use it without edgefleet's
// dependencies. api/conventions_test.go checks the rules kept by hand.
//
// +kubebuilder:object:generate=true
// +groupName=fleet.edgefleet.io
package v1alpha1
