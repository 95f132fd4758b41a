package agent

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/edgefleet/edgefleet/internal/node/nodekube"
	"github.com/edgefleet/edgefleet/internal/wire/nodeplan"
)

// watchPlan follows the machine's plan Secret — by name, the only Secret
// its credential can read — and hands every version to the loop. Errors
// (manager down, credential refused) are retried with jittered backoff.
func (a *agent) watchPlan(ctx context.Context, id *identity, ids <-chan *identity) {
	wait := minRetry
	for ctx.Err() == nil {
		select {
		case id = <-ids:
		default:
		}
		start := time.Now()
		err := a.watchOnce(ctx, id)
		switch {
		case ctx.Err() != nil:
			return
		case (errors.Is(err, nodekube.ErrWatchEnded) || nodekube.IsStatus(err, http.StatusGone)) && time.Since(start) > 10*time.Second:
			// The server's watch timeout: watch again at once.
			wait = minRetry
			continue
		case errors.Is(err, nodekube.ErrWatchEnded), nodekube.IsStatus(err, http.StatusGone):
			// Ended at once: something between us and the API closes
			// watches; back off rather than spin.
		case nodekube.IsUnauthorized(err):
			a.o.Log.Warn("The manager refused the machine's credential; registering again", "err", err)
			a.credentialRefused()
		case nodekube.IsNotFound(err):
			a.o.Log.Warn("The plan Secret does not exist (the manager re-creates it, or the machine was deleted); keeping the last plan", "secret", id.planSecret)
		default:
			a.o.Log.Warn("Watching the plan failed; keeping the last plan and retrying", "err", err)
		}
		if time.Since(start) > maxRetry {
			wait = minRetry
		}
		if !sleep(ctx, jitter(wait)) {
			return
		}
		wait = nextWait(wait)
	}
}

func (a *agent) watchOnce(ctx context.Context, id *identity) error {
	s, err := id.kube.GetSecret(ctx, id.namespace, id.planSecret)
	if err != nil {
		return err
	}
	a.deliver(s)
	return id.kube.WatchSecret(ctx, id.namespace, id.planSecret, s.Metadata.ResourceVersion, jitter(5*time.Minute), a.deliver)
}

// deliver hands the plan to the loop, replacing one it has not taken yet.
func (a *agent) deliver(s *nodekube.Secret) {
	raw := s.Data[nodeplan.SecretKey]
	for {
		select {
		case a.plans <- raw:
			return
		default:
			select {
			case <-a.plans:
			default:
			}
		}
	}
}
