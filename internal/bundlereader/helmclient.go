package bundlereader

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"time"

	"github.com/edgefleet/edgefleet/internal/netguard"
)

// HelmDownloadTimeout bounds one chart download (index, archive or pull).
const HelmDownloadTimeout = 2 * time.Minute

// HelmHTTPClient is the client for one chart source's downloads (a GitRepo's
// or a HelmOp's, HTTP repositories and OCI registries alike): every
// connection dialled under guard (the manager's network policy for tenant
// fetches, no proxy from the environment), creds bound to the chart's
// origin (NewCredentialsTransport), caPEM trusted besides the system roots,
// and a timeout.
func HelmHTTPClient(creds HelmCredentials, caPEM []byte, insecureSkipVerify bool, guard netguard.Policy) (*http.Client, error) {
	hasCreds := creds.Username != "" || creds.Password != ""
	tr := guard.Transport()
	if len(caPEM) > 0 || insecureSkipVerify {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if len(caPEM) > 0 && !pool.AppendCertsFromPEM(caPEM) {
			return nil, fmt.Errorf("caBundle (or cacerts of helmSecretName) holds no PEM certificate")
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, InsecureSkipVerify: insecureSkipVerify} //nolint:gosec // the user asked for it
	}
	var rt http.RoundTripper = tr
	if hasCreds {
		rt = NewCredentialsTransport(creds, tr)
	}
	return &http.Client{Transport: rt, Timeout: HelmDownloadTimeout}, nil
}
