package kubedistro

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/edgefleet/edgefleet/internal/wire/kubedistro"
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

// RemoveEtcdMembers is `kubernetes remove-etcd-members`: a running server
// removes the members of dead servers (by peer URL) from the cluster's
// etcd through its own etcd, restarting nothing. The manager asks a
// surviving server for it when a dead server was scaled down or replaced
// and no server is joining to do it (a joining server removes them in its
// `up`): until then the dead member counts against the quorum. A member
// already gone is fine; this server's own member is refused (a server
// leaves with `down --leave-etcd`).
func RemoveEtcdMembers(ctx context.Context, root string, peers []string, out io.Writer) error {
	p := NewPaths(root)
	st, alive := running(p)
	if st == nil || !alive || st.Role != kubedistro.RoleServer {
		return errors.New("no edgefleet-distro server runs on this machine, so there is no etcd to remove members through: run `kubernetes up` with a server config first")
	}
	client, err := etcdClient(p)
	if err != nil {
		return err
	}
	self := "https://" + net.JoinHostPort(st.NodeIP, strconv.Itoa(etcdPeerPort))
	return removeMembersThrough(ctx, client, "https://127.0.0.1:2379", self, peers, out)
}

// removeMembersThrough lists the members through the local etcd endpoint
// and removes the stale ones through it or, should the removal fail there,
// another member that stays.
func removeMembersThrough(ctx context.Context, client *http.Client, local, self string, stale []string, out io.Writer) error {
	if slices.Contains(stale, self) {
		return fmt.Errorf("%s is this server's own etcd member: a server leaves etcd with `kubernetes down --leave-etcd`, not by removing itself", self)
	}
	return retrySettling(ctx, func() error {
		var list struct {
			Members []etcdMemberID `json:"members"`
		}
		if err := etcdCall(ctx, client, local, "/v3/cluster/member/list", map[string]any{}, &list); err != nil {
			return fmt.Errorf("listing etcd members: %w", err)
		}
		endpoints := []string{local}
		var gone []string
		for _, m := range list.Members {
			if slices.ContainsFunc(m.PeerURLs, func(u string) bool { return slices.Contains(stale, u) }) {
				// The manager names dead servers, but an address can be
				// reused by a live one: a member that answers stays.
				if u, ok := answering(ctx, client, m.ClientURLs); ok {
					return permanent{fmt.Errorf("etcd member %s (%s) answers at %s: it is alive, so it is not removed", m.Name, strings.Join(m.PeerURLs, ","), u)}
				}
				gone = append(gone, m.Name+" ("+strings.Join(m.PeerURLs, ",")+")")
				continue
			}
			for _, u := range m.ClientURLs {
				if !slices.Contains(endpoints, u) {
					endpoints = append(endpoints, u)
				}
			}
		}
		if err := removeStaleMembers(ctx, client, endpoints, stale, self); err != nil {
			return err
		}
		if len(gone) == 0 {
			fmt.Fprintf(out, "no etcd member has peer URL %s: nothing to remove\n", strings.Join(stale, ", "))
		} else {
			fmt.Fprintf(out, "removed etcd members %s; %d remain\n", strings.Join(gone, ", "), len(list.Members)-len(gone))
		}
		return nil
	})
}

// answering is the first of a member's client URLs whose /health answers.
func answering(ctx context.Context, client *http.Client, urls []string) (string, bool) {
	for _, u := range urls {
		ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(u, "/")+"/health", nil)
		if err == nil {
			if resp, err := client.Do(req); err == nil {
				resp.Body.Close()
				cancel()
				return u, true
			}
		}
		cancel()
	}
	return "", false
}

// permanent is an error retrySettling does not retry.
type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }

// leaveKeepsQuorum refuses to remove the member self when the members that
// would remain, counting only those that answer, are fewer than their
// quorum: the cluster's API would stop. etcd's own check is not enough: it
// counts a member that stopped answering seconds ago as started. A server
// scaled down while another one is dead waits (the plan fails and is
// retried) until the dead server's member is removed.
func leaveKeepsQuorum(ctx context.Context, client *http.Client, members []etcdMemberID, self string) error {
	var remain, unreachable []string
	reachable := 0
	for _, m := range members {
		if slices.Contains(m.PeerURLs, self) {
			continue
		}
		remain = append(remain, m.Name)
		if _, ok := answering(ctx, client, m.ClientURLs); ok {
			reachable++
		} else {
			unreachable = append(unreachable, cmp.Or(m.Name, strings.Join(m.PeerURLs, ",")))
		}
	}
	if quorum := len(remain)/2 + 1; len(remain) > 0 && reachable < quorum {
		return fmt.Errorf("not leaving etcd now: the %d members that would remain need %d reachable for a quorum, and only %d answer (%s does not): "+
			"the cluster's API would stop. This is retried; it succeeds once they answer or a dead server's member is removed", len(remain), quorum, reachable, strings.Join(unreachable, ", "))
	}
	return nil
}
