package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/edgefleet/edgefleet/internal/wire/nodeplan"
)

// errWatchEnded: the server ended the watch (its timeout); watch again at
// once.
var errWatchEnded = errors.New("watch ended")

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
		case errors.Is(err, errWatchEnded):
			wait = minRetry
			continue
		case apierrors.IsUnauthorized(err):
			a.o.Log.Warn("The manager refused the machine's credential; registering again", "err", err)
			a.credentialRefused()
		case apierrors.IsNotFound(err):
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
	c, err := corev1client.NewForConfig(id.rest)
	if err != nil {
		return err
	}
	secrets := c.Secrets(id.namespace)
	s, err := secrets.Get(ctx, id.planSecret, metav1.GetOptions{})
	if err != nil {
		return err
	}
	a.deliver(s)
	timeout := int64(jitter(5 * time.Minute).Seconds())
	w, err := secrets.Watch(ctx, metav1.ListOptions{
		FieldSelector:   fields.OneTermEqualSelector("metadata.name", id.planSecret).String(),
		ResourceVersion: s.ResourceVersion,
		TimeoutSeconds:  &timeout,
	})
	if err != nil {
		return err
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev, ok := <-w.ResultChan():
			if !ok {
				return errWatchEnded
			}
			switch ev.Type {
			case watch.Added, watch.Modified:
				if s, ok := ev.Object.(*corev1.Secret); ok {
					a.deliver(s)
				}
			case watch.Deleted:
				return apierrors.NewNotFound(corev1.Resource("secrets"), id.planSecret)
			case watch.Error:
				if st, ok := ev.Object.(*metav1.Status); ok {
					if st.Code == 410 { // the resource version is too old: get again
						return errWatchEnded
					}
					return &apierrors.StatusError{ErrStatus: *st}
				}
				return fmt.Errorf("watch error: %v", ev.Object)
			}
		}
	}
}

// deliver hands the plan to the loop, replacing one it has not taken yet.
func (a *agent) deliver(s *corev1.Secret) {
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
