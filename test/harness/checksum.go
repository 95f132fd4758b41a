package harness

import "github.com/edgefleet/edgefleet/internal/pki"

func checksum(pemData []byte) string { return pki.Checksum(pemData) }
