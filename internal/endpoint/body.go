package endpoint

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
)

// MaxProxiedBody is the largest request body the manager's API proxies
// forward: the kube-apiserver's own limit is 3 MiB.
const MaxProxiedBody = 3 << 20

// BufferBody reads a request body (at most limit bytes) before it is
// forwarded to the kube-apiserver. The apiserver refuses a forbidden write
// before reading its body, and closing an HTTP/2 response while the
// transport still streams the request body from the incoming connection can
// block forever (golang/go#48908): a refused write then hung its client. A
// buffered body is sent in one piece, and an oversized one never reaches the
// API.
func BufferBody(w http.ResponseWriter, r *http.Request, limit int64) error {
	if r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	_ = r.Body.Close()
	if err != nil {
		return fmt.Errorf("request body: %w (at most %d bytes)", err, limit)
	}
	r.Body = io.NopCloser(bytes.NewReader(data))
	r.ContentLength = int64(len(data))
	r.TransferEncoding = nil
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }
	return nil
}
