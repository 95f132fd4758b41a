package bundlereader

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"fmt"
	"io"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
)

func gzipBase64(data []byte) string {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	// Writes to a bytes.Buffer cannot fail.
	_, _ = zw.Write(data)
	_ = zw.Close()
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}

// Compressed returns r with its content gzip-compressed and base64-encoded
// (Fleet's "base64+gz"), the form used for resources inline in a Bundle.
func Compressed(r fleetv1.BundleResource) (fleetv1.BundleResource, error) {
	if r.Encoding == fleetv1.BundleResourceEncodingBase64Gzip {
		return r, nil
	}
	if r.Encoding != "" {
		return r, fmt.Errorf("resource %s: unknown encoding %q", r.Name, r.Encoding)
	}
	r.Content = gzipBase64([]byte(r.Content))
	r.Encoding = fleetv1.BundleResourceEncodingBase64Gzip
	return r, nil
}

// Decoded returns the raw bytes of a resource in any supported encoding.
func Decoded(r fleetv1.BundleResource) ([]byte, error) {
	switch r.Encoding {
	case "":
		return []byte(r.Content), nil
	case fleetv1.BundleResourceEncodingBase64Gzip:
		raw, err := base64.StdEncoding.DecodeString(r.Content)
		if err != nil {
			return nil, fmt.Errorf("resource %s: %w", r.Name, err)
		}
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("resource %s: %w", r.Name, err)
		}
		data, err := io.ReadAll(zr)
		if err != nil {
			return nil, fmt.Errorf("resource %s: %w", r.Name, err)
		}
		return data, nil
	default:
		return nil, fmt.Errorf("resource %s: unknown encoding %q", r.Name, r.Encoding)
	}
}
