package clusterregistration

import (
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"k8s.io/utils/lru"
)

// Defaults of the per-source limit on the unauthenticated join routes
// (/v1/register, /v1/import): a token bucket per source IP.
const (
	DefaultJoinRate  = 5.0 // requests per second, sustained
	DefaultJoinBurst = 50
	// limiterSources bounds the remembered sources (least recently seen go
	// first), so a spray from many addresses cannot grow memory.
	limiterSources = 65536
)

// sourceLimiter rate-limits requests per source IP.
type sourceLimiter struct {
	rate  rate.Limit
	burst int

	mu      sync.Mutex
	buckets *lru.Cache
}

// newSourceLimiter returns nil (no limit) when perSecond <= 0.
func newSourceLimiter(perSecond float64, burst int) *sourceLimiter {
	if perSecond <= 0 {
		return nil
	}
	return &sourceLimiter{rate: rate.Limit(perSecond), burst: max(burst, 1), buckets: lru.New(limiterSources)}
}

func (l *sourceLimiter) bucket(src string) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	if b, ok := l.buckets.Get(src); ok {
		return b.(*rate.Limiter)
	}
	b := rate.NewLimiter(l.rate, l.burst)
	l.buckets.Add(src, b)
	return b
}

// wrap answers 429 with Retry-After to a source over its budget.
func (l *sourceLimiter) wrap(h http.HandlerFunc) http.HandlerFunc {
	if l == nil {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		src, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			src = r.RemoteAddr
		}
		res := l.bucket(src).Reserve()
		if delay := res.Delay(); delay > 0 {
			res.Cancel() // a refused request does not spend future budget
			secs := int(math.Ceil(delay.Seconds()))
			w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
			writeError(w, http.StatusTooManyRequests, "too many join requests from %s: at most %g per second (burst %d) per source; retry after %s", src, float64(l.rate), l.burst, (time.Duration(secs) * time.Second).String())
			return
		}
		h(w, r)
	}
}
