package bundlereader

import (
	"regexp"
	"strings"

	"github.com/edgefleet/edgefleet/internal/kubenames"
)

// MaxNameLength keeps derived bundle names usable as Helm release names,
// which Fleet derives from them too.
const MaxNameLength = 53

var (
	disallowedNameChars = regexp.MustCompile(`[^a-z0-9-]+`)
	repeatedDashes      = regexp.MustCompile(`-{2,}`)
)

// SafeName turns s (for example "myapp/apps/web_ui") into a DNS-safe name of
// at most MaxNameLength characters, the way Fleet names bundles: lowercase,
// every run of other characters becomes "-", and a name that is too long is
// cut and ends in a short hash of the whole, so distinct inputs stay
// distinct.
func SafeName(s string) string {
	name := strings.ToLower(s)
	name = disallowedNameChars.ReplaceAllString(name, "-")
	name = repeatedDashes.ReplaceAllString(name, "-")
	name = strings.Trim(name, "-")
	if len(name) <= MaxNameLength {
		return name
	}
	return kubenames.Shorten(name, MaxNameLength, kubenames.HashHex(s, 5), "-")
}
