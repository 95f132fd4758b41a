package upgradeplan

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"
)

// ChannelPollInterval is how often a plan's channel is asked again (SUC's
// default).
const ChannelPollInterval = 15 * time.Minute

// ResolveChannel asks a channel server for the latest version, as SUC does:
// the answer is a redirect whose Location's last path element is the
// version; a 2xx answer means the URL itself names it. The redirect is not
// followed, the body not read beyond a little, and the request bounded.
func ResolveChannel(ctx context.Context, hc *http.Client, channel, clusterID, latest string) (string, error) {
	u, err := url.Parse(channel)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("channel %q is not an http(s) URL", channel)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, channel, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("X-SUC-Cluster-ID", clusterID)
	if latest != "" {
		req.Header.Set("X-SUC-Latest-Version", latest)
	}
	c := *hc
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Do(req)
	if err != nil {
		return "", fmt.Errorf("asking channel %s: %w", channel, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	var p string
	switch {
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		loc, err := resp.Location()
		if err != nil {
			return "", fmt.Errorf("channel %s answered %s without a usable Location: %w", channel, resp.Status, err)
		}
		p = loc.Path
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		p = u.Path
	default:
		return "", fmt.Errorf("channel %s answered %s; it should redirect to the latest version", channel, resp.Status)
	}
	v := path.Base(p)
	if v == "" || v == "/" || v == "." {
		return "", errors.New("channel " + channel + " did not name a version (empty last path element)")
	}
	v = strings.ReplaceAll(v, "+", "-")
	if len(v) > 128 {
		return "", fmt.Errorf("channel %s named a version of %d characters; at most 128", channel, len(v))
	}
	return v, nil
}
