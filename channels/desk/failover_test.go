package desk_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/desk"
	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/channels/natsjs/natstest"
)

// SIGKILL of the node leading each raft group intake writes to (CAU_INBOUND, its spare lane, the
// cau_requests bucket of the idempotency records), in turn, under desk load on two replicas:
// intake goes on while nats-server elects (requests keep being accepted before the killed node
// is back), every client that retries with its key gets its answer, no 5xx is ever answered, and
// every key gives exactly one request in CAU_INBOUND. The figures (pause per group) are
// cmd/clusterload's; this test asserts what clients rely on.
func TestDeskThroughLeaderKillOfEachIntakeGroup(t *testing.T) {
	c := natstest.StartProcessCluster(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var desks []*desk.Desk
	var h *natsjs.Handles
	for range 2 {
		h = natstest.OnCluster(t, c, natsjs.Topology{Replicas: 3}).Handles
		d, err := desk.New(desk.Options{Sink: natsjs.NewSink(h, natsjs.SinkOptions{}), Units: units{}, Idempotency: h.Requests})
		if err != nil {
			t.Fatal(err)
		}
		desks = append(desks, d)
		go natsjs.KeepLeadersApart(ctx, h, natsjs.KeeperOptions{Interval: 500 * time.Millisecond})
	}

	load := &deskLoad{desks: desks, accepted: map[string]string{}, statuses: map[int]int{}}
	stop := load.start(t, 2)
	for _, group := range natsjs.LeaderGroups {
		leaders := waitLeadersApart(t, h)
		node := c.Index(leaders[group])
		load.waitMore(t, 20)
		c.Kill(node)
		// Intake goes on while the group elects a new leader: the killed node is still down.
		load.waitMore(t, 30)
		t.Logf("killed n%d (leader of %s): %d accepted so far", node+1, group, load.count())
		if err := c.Restart(node); err != nil {
			t.Fatal(err)
		}
	}
	stop()

	keys, statuses := load.result()
	perKey := countDeskKeys(t, h, len(keys))
	bad := 0
	for key, id := range keys {
		if ids := perKey[key]; len(ids) != 1 || ids[0] != id {
			bad++
			t.Errorf("key %s answered %s; CAU_INBOUND holds %v", key, id, ids)
		}
	}
	t.Logf("%d keys through 3 leader kills: answers %v, %d keys not exactly once", len(keys), statuses, bad)
	for code, n := range statuses {
		if code >= 500 {
			t.Errorf("%d answers %d", n, code)
		}
	}
}

// deskLoad posts keyed desk requests from several clients, alternating replicas, each retrying a
// failed attempt with its key on the other replica until it is answered 201 or 200.
type deskLoad struct {
	desks    []*desk.Desk
	mu       sync.Mutex
	accepted map[string]string // key → id
	statuses map[int]int
	more     chan struct{}
}

func (l *deskLoad) start(t *testing.T, clients int) (stop func()) {
	done := make(chan struct{})
	l.more = make(chan struct{}, 1)
	var wg sync.WaitGroup
	for cl := range clients {
		wg.Go(func() {
			// Each client sends a request every 25 ms at most: a steady desk, not a flood.
			pace := time.NewTicker(25 * time.Millisecond)
			defer pace.Stop()
			for n := 0; ; n++ {
				select {
				case <-done:
					return
				case <-pace.C:
				}
				key := fmt.Sprintf("baja-%d-%d", cl, n)
				body := fmt.Sprintf(`{"channel":"phone","description":"Sin conexión en el aula %d-%d","idempotency_key":%q}`, cl, n, key)
				for attempt := 0; ; attempt++ {
					code, out := post(t, l.desks[(cl+attempt)%len(l.desks)], body)
					l.mu.Lock()
					l.statuses[code]++
					if code == http.StatusCreated || code == http.StatusOK {
						l.accepted[key], _ = out["id"].(string)
						l.mu.Unlock()
						select {
						case l.more <- struct{}{}:
						default:
						}
						break
					}
					l.mu.Unlock()
					if code < 500 || attempt > 100 {
						t.Errorf("key %s: %d %v", key, code, out)
						return
					}
				}
			}
		})
	}
	return func() { close(done); wg.Wait() }
}

func (l *deskLoad) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.accepted)
}

// waitMore waits until n more requests were accepted (a minute at most).
func (l *deskLoad) waitMore(t *testing.T, n int) {
	t.Helper()
	want := l.count() + n
	deadline := time.After(time.Minute)
	for l.count() < want {
		select {
		case <-l.more:
		case <-deadline:
			t.Fatalf("intake stalled: %d accepted, waiting for %d", l.count(), want)
		}
	}
}

func (l *deskLoad) result() (map[string]string, map[int]int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.accepted, l.statuses
}

// waitLeadersApart waits until every intake raft group has a leader, each on its own server, and
// returns them by group.
func waitLeadersApart(t *testing.T, h *natsjs.Handles) map[string]string {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		leaders := map[string]string{}
		seen := map[string]bool{}
		for _, g := range natsjs.LeaderGroups {
			actx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			s, err := h.JS.Stream(actx, g)
			cancel()
			if err == nil && s.CachedInfo().Cluster != nil && s.CachedInfo().Cluster.Leader != "" {
				l := s.CachedInfo().Cluster.Leader
				if !seen[l] {
					leaders[g], seen[l] = l, true
				}
			}
		}
		if len(leaders) == len(natsjs.LeaderGroups) {
			return leaders
		}
		if time.Now().After(deadline) {
			t.Fatalf("leaders not apart: %v", leaders)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// countDeskKeys waits until CAU_INBOUND holds at least want messages (the spare lane's arrive
// through its source) and returns the request ids per idempotency key.
func countDeskKeys(t *testing.T, h *natsjs.Handles, want int) map[string][]string {
	t.Helper()
	info := waitInbound(t, h, want)
	// A read cut short (a group still electing after the last kill) is started over.
	deadline := time.Now().Add(time.Minute)
	for {
		out, err := readDeskKeys(h, info)
		if err == nil {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func readDeskKeys(h *natsjs.Handles, info *jetstream.StreamInfo) (map[string][]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out := map[string][]string{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := h.Inbound.GetMsg(ctx, seq)
		if err != nil {
			return nil, fmt.Errorf("CAU_INBOUND #%d: %w", seq, err)
		}
		var r channels.Request
		if err := json.Unmarshal(m.Data, &r); err != nil {
			return nil, err
		}
		out[r.Source.IdempotencyKey] = append(out[r.Source.IdempotencyKey], r.ID)
	}
	return out, nil
}
