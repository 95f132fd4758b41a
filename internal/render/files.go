package render

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"

	"github.com/edgefleet/edgefleet/internal/content"
)

// files is a bundle's content by cleaned relative path ("chart/Chart.yaml").
type files map[string][]byte

// decodeFiles decodes every resource of m. Paths are cleaned and must stay
// inside the bundle, so a forged manifest cannot make kustomize or Helm read
// outside of it.
func decodeFiles(m *content.Manifest) (files, error) {
	out := files{}
	if m == nil {
		return out, nil
	}
	// One budget for the whole bundle: many small compressed files must
	// not expand, together, beyond what one file may.
	budget := int64(MaxDecodedBundleSize)
	for i, r := range m.Resources {
		name, err := cleanPath(r.Name)
		if err != nil {
			return nil, &Error{File: r.Name, Err: err}
		}
		if name == "" {
			// Fleet names unnamed resources by position; keep them reachable.
			name = fmt.Sprintf("manifests/file%03d.yaml", i)
		}
		data, err := decodeContent(r.Content, r.Encoding, budget)
		if err != nil {
			return nil, &Error{File: name, Err: err}
		}
		budget -= int64(len(data))
		out[name] = data
	}
	return out, nil
}

// MaxDecodedBundleSize bounds a bundle's files together once decoded and
// decompressed: a compression bomb (or many) in a forged Content fails with
// an error instead of exhausting the agent's memory.
var MaxDecodedBundleSize = content.MaxManifestSize

// errBundleTooLarge names the limit and what to do.
func errBundleTooLarge() error {
	return fmt.Errorf("the bundle's files are larger than %d MiB together once decoded and decompressed: split the bundle", MaxDecodedBundleSize>>20)
}

// decodeContent decodes one file, failing when it exceeds budget bytes.
func decodeContent(s, encoding string, budget int64) ([]byte, error) {
	switch encoding {
	case "":
		if int64(len(s)) > budget {
			return nil, errBundleTooLarge()
		}
		return []byte(s), nil
	case "base64":
		data, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("decoding base64 content: %w", err)
		}
		if int64(len(data)) > budget {
			return nil, errBundleTooLarge()
		}
		return data, nil
	case "base64+gz":
		raw, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("decoding base64 content: %w", err)
		}
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("decompressing content: %w", err)
		}
		defer func() { _ = zr.Close() }()
		data, err := io.ReadAll(io.LimitReader(zr, budget+1))
		if err != nil {
			return nil, fmt.Errorf("decompressing content: %w", err)
		}
		if int64(len(data)) > budget {
			return nil, errBundleTooLarge()
		}
		return data, nil
	default:
		return nil, fmt.Errorf("unknown encoding %q (want \"\", \"base64\" or \"base64+gz\")", encoding)
	}
}

// cleanPath turns "./a//b/../c.yaml" into "a/c.yaml" and rejects paths that
// leave the bundle. "" and "." mean the bundle root and clean to "".
func cleanPath(p string) (string, error) {
	p = strings.ReplaceAll(p, "\\", "/")
	if strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("path %q must be relative to the bundle root", p)
	}
	c := path.Clean(p)
	if c == "." {
		return "", nil
	}
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("path %q points outside the bundle", p)
	}
	return c, nil
}

// sortedNames returns the file names in fs in lexical order.
func (fs files) sortedNames() []string {
	names := make([]string, 0, len(fs))
	for n := range fs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// under returns the files below dir ("" is the root), keyed by their path
// relative to dir.
func (fs files) under(dir string) files {
	if dir == "" {
		return fs
	}
	prefix := dir + "/"
	out := files{}
	for n, d := range fs {
		if rel, ok := strings.CutPrefix(n, prefix); ok {
			out[rel] = d
		}
	}
	return out
}

// kustomizationNames are the file names kustomize accepts, in its order.
var kustomizationNames = []string{"kustomization.yaml", "kustomization.yml", "Kustomization"}

// kustomizationIn returns the path of the kustomization file in dir, if any.
func (fs files) kustomizationIn(dir string) (string, bool) {
	for _, n := range kustomizationNames {
		p := path.Join(dir, n)
		if _, ok := fs[p]; ok {
			return p, true
		}
	}
	return "", false
}

func joinPath(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

var errNoFile = errors.New("no such file in the bundle")
