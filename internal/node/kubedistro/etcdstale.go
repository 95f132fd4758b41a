package kubedistro

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// removeStaleMembers removes the members whose peer URLs are listed
// (dead servers the manager replaced: they could not leave etcd
// themselves) through the first endpoint that answers, before this server
// (peer self) joins: etcd refuses to add a member while a member it has
// cannot be reached, and the dead member counts against the quorum.
// A member already gone is fine (removal is idempotent across retries).
// It never removes this server's own peer URL nor the last member; etcd
// itself refuses a removal that would leave fewer reachable members than
// its quorum (strict reconfiguration check). Errors are returned as etcd
// gave them, so retrySettling retries its 503 "unhealthy cluster".
func removeStaleMembers(ctx context.Context, client *http.Client, endpoints, stale []string, self string) error {
	stale = slices.DeleteFunc(slices.Clone(stale), func(p string) bool { return p == self })
	if len(stale) == 0 {
		return nil
	}
	var errs []error
	for _, ep := range endpoints {
		var list struct {
			Members []etcdMemberID `json:"members"`
		}
		if err := etcdCall(ctx, client, ep, "/v3/cluster/member/list", map[string]any{}, &list); err != nil {
			errs = append(errs, err)
			continue
		}
		for _, m := range list.Members {
			if !slices.ContainsFunc(m.PeerURLs, func(u string) bool { return slices.Contains(stale, u) }) {
				continue
			}
			if len(list.Members) <= 1 {
				return fmt.Errorf("etcd member %s (%s) is the cluster's only member: removing it would delete the cluster", m.Name, strings.Join(m.PeerURLs, ","))
			}
			var out map[string]any
			if err := etcdCall(ctx, client, ep, "/v3/cluster/member/remove", map[string]any{"ID": m.ID}, &out); err != nil {
				return fmt.Errorf("removing the stale etcd member %s (%s): %w", m.Name, strings.Join(m.PeerURLs, ","), err)
			}
			list.Members = slices.DeleteFunc(list.Members, func(x etcdMemberID) bool { return x.ID == m.ID })
		}
		return nil
	}
	return fmt.Errorf("removing stale etcd members through %s: %w", strings.Join(endpoints, ", "), errors.Join(errs...))
}
