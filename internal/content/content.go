// Package content stores bundle manifests content-addressed, compressed and
// deduplicated as Content objects, split into chunks that stay below etcd's
// request limit, and reads them back verified.
package content

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"sort"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
)

// ChunkSize is the most compressed bytes one Content holds. etcd's default
// request limit is 1.5 MiB and base64 in JSON grows data by a third.
const ChunkSize = 768 << 10

// MaxManifestSize bounds what Load will decompress (a guard against a
// compression bomb in a forged Content).
const MaxManifestSize = 512 << 20

// Manifest is the set of files that make up a bundle, by relative path.
type Manifest struct {
	Resources []fleetv1.BundleResource `json:"resources"`
}

// Encode returns the canonical JSON of m (resources sorted by name) and its ID.
func Encode(m *Manifest) ([]byte, string, error) {
	sorted := append([]fleetv1.BundleResource(nil), m.Resources...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	data, err := json.Marshal(Manifest{Resources: sorted})
	if err != nil {
		return nil, "", err
	}
	return data, ID(data), nil
}

// ID is the content ID of canonical manifest JSON: "s-" + hex sha256.
func ID(data []byte) string { return "s-" + sum(data) }

// Store writes m (and its chunks) unless already present and returns its ID.
// It is idempotent and safe to call concurrently: identical content maps to
// identical names.
func Store(ctx context.Context, c client.Client, m *Manifest) (string, error) {
	data, id, err := Encode(m)
	if err != nil {
		return "", err
	}
	var existing fleetv1.Content
	if err := c.Get(ctx, client.ObjectKey{Name: id}, &existing); err == nil {
		return id, nil
	} else if !apierrors.IsNotFound(err) {
		return "", fmt.Errorf("reading content %s: %w", id, err)
	}
	compressed, err := compress(data)
	if err != nil {
		return "", err
	}
	top := &fleetv1.Content{ObjectMeta: metav1.ObjectMeta{Name: id}, SHA256Sum: sum(data), Size: int64(len(data))}
	if len(compressed) <= ChunkSize {
		top.Data = compressed
	} else {
		for off := 0; off < len(compressed); off += ChunkSize {
			end := min(off+ChunkSize, len(compressed))
			part := compressed[off:end]
			name := "c-" + sum(part)
			chunk := &fleetv1.Content{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: part, SHA256Sum: sum(part)}
			if err := create(ctx, c, chunk); err != nil {
				return "", err
			}
			top.Chunks = append(top.Chunks, name)
		}
		top.ChunkCount = int32(len(top.Chunks))
	}
	// The manifest object is written last, so a reader that finds it finds
	// every chunk too.
	if err := create(ctx, c, top); err != nil {
		return "", err
	}
	return id, nil
}

// Load reads the manifest with the given ID and verifies every checksum.
func Load(ctx context.Context, r client.Reader, id string) (*Manifest, error) {
	var top fleetv1.Content
	if err := r.Get(ctx, client.ObjectKey{Name: id}, &top); err != nil {
		return nil, fmt.Errorf("reading content %s: %w", id, err)
	}
	compressed := top.Data
	if len(top.Chunks) > 0 {
		var buf bytes.Buffer
		for _, name := range top.Chunks {
			var chunk fleetv1.Content
			if err := r.Get(ctx, client.ObjectKey{Name: name}, &chunk); err != nil {
				return nil, fmt.Errorf("reading chunk %s of content %s: %w", name, id, err)
			}
			if sum(chunk.Data) != chunk.SHA256Sum || "c-"+chunk.SHA256Sum != name {
				return nil, fmt.Errorf("chunk %s of content %s is corrupt (checksum mismatch)", name, id)
			}
			buf.Write(chunk.Data)
		}
		compressed = buf.Bytes()
	}
	data, err := decompress(compressed)
	if err != nil {
		return nil, fmt.Errorf("content %s: %w", id, err)
	}
	if ID(data) != id || sum(data) != top.SHA256Sum {
		return nil, fmt.Errorf("content %s is corrupt (checksum mismatch)", id)
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("content %s: %w", id, err)
	}
	return &m, nil
}

// Names returns the Content names a manifest ID occupies (itself and its
// chunks), for garbage collection.
func Names(ctx context.Context, r client.Reader, id string) ([]string, error) {
	var top fleetv1.Content
	if err := r.Get(ctx, client.ObjectKey{Name: id}, &top); err != nil {
		return nil, err
	}
	return append([]string{id}, top.Chunks...), nil
}

func create(ctx context.Context, c client.Client, obj *fleetv1.Content) error {
	if err := c.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("writing content %s: %w", obj.Name, err)
	}
	return nil
}

func compress(data []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(data); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func decompress(data []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("decompressing: %w", err)
	}
	out, err := io.ReadAll(io.LimitReader(zr, MaxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("decompressing: %w", err)
	}
	if len(out) > MaxManifestSize {
		return nil, fmt.Errorf("manifest larger than %d bytes", MaxManifestSize)
	}
	return out, nil
}

func sum(data []byte) string {
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:])
}
