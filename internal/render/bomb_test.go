package render

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/content"
)

func gzB64(t *testing.T, data []byte) string {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}

// TestDecodeFilesBoundsTheWholeBundle: files that are each under the limit
// but together over it (many small compression bombs) fail with an error
// naming the limit, instead of each getting the full per-file allowance.
func TestDecodeFilesBoundsTheWholeBundle(t *testing.T) {
	defer func(v int) { MaxDecodedBundleSize = v }(MaxDecodedBundleSize)
	MaxDecodedBundleSize = 1 << 20
	bomb := gzB64(t, make([]byte, 400<<10)) // 400 KiB of zeros, ~400 B compressed
	m := &content.Manifest{}
	for i := range 3 {
		m.Resources = append(m.Resources, fleetv1.BundleResource{Name: fmt.Sprintf("bomb%d.yaml", i), Content: bomb, Encoding: "base64+gz"})
	}
	if _, err := decodeFiles(&content.Manifest{Resources: m.Resources[:2]}); err != nil {
		t.Fatalf("two files, 800 KiB together, within the 1 MiB budget: %v", err)
	}
	_, err := decodeFiles(m)
	if err == nil || !strings.Contains(err.Error(), "larger than 1 MiB together") || !strings.Contains(err.Error(), "bomb2.yaml") {
		t.Fatalf("three files, 1.2 MiB together: %v, want an error naming the bundle limit and the file", err)
	}
	// One plain file over the budget fails the same way.
	if _, err := decodeFiles(&content.Manifest{Resources: []fleetv1.BundleResource{{Name: "big.yaml", Content: strings.Repeat("x", 2<<20)}}}); err == nil {
		t.Fatal("a 2 MiB plain file passed a 1 MiB budget")
	}
}
