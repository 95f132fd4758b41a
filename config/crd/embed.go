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

// Package crd embeds the CustomResourceDefinitions generated from the API
// types in api/ (by hack/generate.sh into bases/).
package crd

import (
	"embed"
	"fmt"
	"io/fs"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

// FS holds the generated CRD manifests, one per file, as bases/*.yaml.
//
//go:embed bases/*.yaml
var FS embed.FS

// DownstreamFS holds the CRDs of kinds that live on downstream clusters
// (cluster upgrade Plans), as downstream/*.yaml: the agent installs them
// there; the manager does not.
//
//go:embed downstream/*.yaml
var DownstreamFS embed.FS

// CustomResourceDefinitions parses every embedded CRD manifest, in file-name
// order. Each call returns fresh objects that the caller may modify.
func CustomResourceDefinitions() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	return parse(FS, "bases/*.yaml")
}

// DownstreamCustomResourceDefinitions parses the CRDs the agent installs on
// its downstream cluster, in file-name order.
func DownstreamCustomResourceDefinitions() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	return parse(DownstreamFS, "downstream/*.yaml")
}

func parse(fsys embed.FS, pattern string) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	files, err := fs.Glob(fsys, pattern)
	if err != nil {
		return nil, fmt.Errorf("listing embedded CRDs: %w", err)
	}
	crds := make([]*apiextensionsv1.CustomResourceDefinition, 0, len(files))
	for _, file := range files {
		data, err := fsys.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("reading embedded CRD %s: %w", file, err)
		}
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.UnmarshalStrict(data, crd); err != nil {
			return nil, fmt.Errorf("parsing embedded CRD %s: %w", file, err)
		}
		gvk := crd.GroupVersionKind()
		if gvk != apiextensionsv1.SchemeGroupVersion.WithKind("CustomResourceDefinition") {
			return nil, fmt.Errorf("embedded CRD %s: unexpected apiVersion %q and kind %q", file, crd.APIVersion, crd.Kind)
		}
		if crd.Name == "" {
			return nil, fmt.Errorf("embedded CRD %s has no name", file)
		}
		crds = append(crds, crd)
	}
	if len(crds) == 0 {
		return nil, fmt.Errorf("no CRDs embedded")
	}
	return crds, nil
}
