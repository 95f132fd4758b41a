package cli

import (
	"strings"
	"testing"
)

// TestCurlJoinCommand: the printed join command carries the CA line by line
// in single quotes, and anything that could break out of the quotes (a
// hostile ConfigMap) yields no command.
func TestCurlJoinCommand(t *testing.T) {
	pem := "-----BEGIN CERTIFICATE-----\nMIIBkTCB+wIJAK0=\n-----END CERTIFICATE-----\n"
	url := "https://edge.example.com:8443/v1/import/tok.yaml"
	for _, tc := range []struct {
		name, pem, url string
		want, not      string
	}{
		{"plain PEM", pem, url, `curl -sSfL --cacert <(printf '%s\n' '-----BEGIN CERTIFICATE-----' 'MIIBkTCB+wIJAK0=' '-----END CERTIFICATE-----') 'https://edge.example.com:8443/v1/import/tok.yaml' | kubectl apply -f -`, ""},
		{"quote in the CA", "-----BEGIN CERTIFICATE-----\nMII'; rm -rf ~; '\n-----END CERTIFICATE-----\n", url, "is not plain PEM", "rm -rf"},
		{"quote in the URL", pem, "https://x/'$(id)'.yaml", "cannot be quoted safely", "curl -sSfL"},
	} {
		got := curlJoinCommand([]byte(tc.pem), tc.url)
		if !strings.Contains(got, tc.want) || (tc.not != "" && strings.Contains(got, tc.not)) {
			t.Errorf("%s: %s\nwant it to contain %q and not %q", tc.name, got, tc.want, tc.not)
		}
	}
}
