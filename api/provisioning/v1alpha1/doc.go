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

// Package v1alpha1 holds the provisioning.edgefleet.io API: clusters formed
// from registered machines (ProvisionedCluster, with a control-plane pool
// and worker pools choosing MachineInventories by label) and one
// ClusterMachine per adopted machine. The vocabulary is Cluster API's
// (docs/adr/0012): replicas, version, controlPlaneEndpoint, clusterNetwork,
// rolloutStrategy, paused.
//
// This package is part of the module github.com/edgefleet/edgefleet/api and
// may import only the standard library and k8s.io/apimachinery.
//
// +kubebuilder:object:generate=true
// +groupName=provisioning.edgefleet.io
package v1alpha1
