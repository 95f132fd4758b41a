package targeting

import (
	"crypto/sha256"
	"encoding/hex"

	fleetv1 "github.com/edgefleet/edgefleet/api/fleet/v1alpha1"
	"github.com/edgefleet/edgefleet/internal/content"
	"github.com/edgefleet/edgefleet/internal/jsonvalue"
)

// DeploymentID identifies what an agent deploys: contentsID + ":" + the hex
// sha256 of the options' canonical JSON. diff and correctDrift are left out,
// so changing how drift is detected or corrected does not redeploy.
func DeploymentID(contentsID string, opts fleetv1.BundleDeploymentOptions) string {
	sanitized := *opts.DeepCopy()
	sanitized.Diff = nil
	sanitized.CorrectDrift = nil
	return string(content.NewDeploymentID(contentsID, hashJSON(sanitized)))
}

// hashJSON hashes v's JSON with object keys sorted at every level, so Helm
// values that differ only in key order hash alike.
func hashJSON(v any) string {
	sum := sha256.Sum256(jsonvalue.Canonical(v))
	return hex.EncodeToString(sum[:])
}
