package machineregistration

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/big"
	"regexp"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/edgefleet/edgefleet/internal/kubenames"
)

// templateRef matches ${Section/Key...}, Elemental's template syntax.
var templateRef = regexp.MustCompile(`\$\{([^}]*)\}`)

// render replaces every ${path} in tmpl with the machine's data. Random/UUID,
// Random/Hex/N (N ≤ 32) and Random/Int/MAX are generated. An unknown path is
// an error naming it, so the caller can skip the label and say why.
func render(tmpl string, data map[string]string) (string, error) {
	var missing []string
	out := templateRef.ReplaceAllStringFunc(tmpl, func(ref string) string {
		path := strings.TrimSpace(ref[2 : len(ref)-1])
		if v, ok := randomValue(path); ok {
			return v
		}
		v, ok := data[path]
		if !ok || strings.TrimSpace(v) == "" {
			missing = append(missing, path)
			return ""
		}
		return v
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("the machine has no value for %s", quoteAll(missing))
	}
	return out, nil
}

func quoteAll(s []string) string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = strconv.Quote("${" + v + "}")
	}
	return strings.Join(q, ", ")
}

// hasRandom reports whether a template draws random values; such labels keep
// their first value across re-registrations.
func hasRandom(tmpl string) bool {
	for _, m := range templateRef.FindAllStringSubmatch(tmpl, -1) {
		if strings.HasPrefix(strings.TrimSpace(m[1]), "Random/") {
			return true
		}
	}
	return false
}

func randomValue(path string) (string, bool) {
	parts := strings.Split(path, "/")
	if len(parts) < 2 || parts[0] != "Random" {
		return "", false
	}
	switch {
	case parts[1] == "UUID" && len(parts) == 2:
		return string(uuid.NewUUID()), true
	case parts[1] == "Hex" && len(parts) == 3:
		n, err := strconv.Atoi(parts[2])
		if err != nil || n < 1 || n > 32 {
			return "", false
		}
		b := make([]byte, (n+1)/2)
		_, _ = rand.Read(b)
		return hex.EncodeToString(b)[:n], true
	case parts[1] == "Int" && len(parts) == 3:
		limit, err := strconv.ParseInt(parts[2], 10, 64)
		if err != nil || limit < 1 {
			return "", false
		}
		v, _ := rand.Int(rand.Reader, big.NewInt(limit))
		return v.String(), true
	}
	return "", false
}

var (
	notLabelChar = regexp.MustCompile(`[^0-9A-Za-z._-]`)
	notNameChar  = regexp.MustCompile(`[^0-9a-z.-]`)
	// nameDots: each dot-separated part of a name must start and end
	// alphanumeric.
	nameDots = regexp.MustCompile(`-*\.[-.]*`)
)

// maxLabelValue follows Elemental (58), below Kubernetes' 63.
const maxLabelValue = 58

// sanitizeLabelValue makes v a valid label value: characters other than
// [0-9A-Za-z._-] become "-", it is cut at 58 characters and must start and
// end with an alphanumeric character.
func sanitizeLabelValue(v string) string {
	v = notLabelChar.ReplaceAllString(v, "-")
	if len(v) > maxLabelValue {
		v = v[:maxLabelValue]
	}
	return strings.Trim(v, "._-")
}

// maxNameInput bounds the rendered name sanitizeName works on: a template
// over machine data can expand to megabytes, a name needs a few bytes.
const maxNameInput = 4096

// sanitizeName makes v a valid object name (DNS-1123 subdomain) and
// hostname: lowercase, [0-9a-z.-], alphanumeric at both ends, at most 58
// characters. A longer name keeps its first 49 characters and gets "-" and
// 8 hex characters of its SHA-256, so names differing only past the cut
// stay distinct. "" when nothing valid remains.
func sanitizeName(v string) string {
	if len(v) > maxNameInput {
		sum := sha256.Sum256([]byte(v))
		v = v[:maxNameInput] + hex.EncodeToString(sum[:])
	}
	v = notNameChar.ReplaceAllString(strings.ToLower(v), "-")
	v = nameDots.ReplaceAllString(v, ".")
	v = strings.Trim(v, ".-")
	if len(v) > maxLabelValue {
		v = kubenames.Shorten(v, maxLabelValue, kubenames.HashHex(v, 8), ".-")
	}
	if len(validation.IsDNS1123Subdomain(v)) > 0 {
		return ""
	}
	return v
}
