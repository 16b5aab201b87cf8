package natsjs_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/channels/natsjs/natstest"
)

// KeepLeadersApart moves the spare lane's leader off CAU_INBOUND's server, and keeps the
// request index's leader apart from both.
func TestKeepLeadersApartMovesAClash(t *testing.T) {
	c := startCluster(t)
	env := natstest.OnCluster(t, c, natsjs.Topology{Replicas: 3})
	leaders := func() map[string]string {
		out := map[string]string{}
		for _, g := range natsjs.LeaderGroups {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			s, err := env.JS.Stream(ctx, g)
			cancel()
			if err == nil && s.CachedInfo().Cluster != nil {
				out[g] = s.CachedInfo().Cluster.Leader
			}
		}
		return out
	}
	waitUntil := func(what string, cond func(map[string]string) bool) map[string]string {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			l := leaders()
			if cond(l) {
				return l
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s: leaders %v", what, l)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	elected := func(l map[string]string) bool {
		for _, g := range natsjs.LeaderGroups {
			if l[g] == "" {
				return false
			}
		}
		return true
	}
	l := waitUntil("leaders", elected)

	// Put the spare's leader where CAU_INBOUND's is (what a restart or an election may do).
	in := l[natsjs.StreamInbound]
	if l[natsjs.StreamInboundSpare] != in {
		body, _ := json.Marshal(map[string]any{"placement": map[string]string{"preferred": in}})
		if _, err := env.Conn.Request("$JS.API.STREAM.LEADER.STEPDOWN."+natsjs.StreamInboundSpare, body, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil("the clash", func(l map[string]string) bool { return l[natsjs.StreamInboundSpare] == in })

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go natsjs.KeepLeadersApart(ctx, env.Handles, natsjs.KeeperOptions{Interval: 200 * time.Millisecond})
	l = waitUntil("leaders apart", func(l map[string]string) bool {
		seen := map[string]bool{}
		for _, g := range natsjs.LeaderGroups {
			if l[g] == "" || seen[l[g]] {
				return false
			}
			seen[l[g]] = true
		}
		return true
	})
	if l[natsjs.StreamInbound] != in {
		t.Errorf("CAU_INBOUND's leader moved from %s to %s; only the others should", in, l[natsjs.StreamInbound])
	}
}
