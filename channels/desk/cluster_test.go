package desk_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ipn-cgsi/caud/channels/desk"
	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/channels/natsjs/natstest"
)

// Two desk replicas on a three-node cluster (R3), each connected to a different node, receive the
// same idempotency key at the same moment, 150 times: one request per key, the same id for both
// answers, and no 5xx.
func TestRacedDeskKeysOnR3GiveOneRequest(t *testing.T) {
	c := natstest.StartCluster(t)
	var desks []*desk.Desk
	var h0 *natsjs.Handles
	for _, node := range []int{0, 2} {
		h := natstest.OnNode(t, c, node, natsjs.Topology{Replicas: 3}).Handles
		h0 = h
		d, err := desk.New(desk.Options{Sink: natsjs.NewSink(h, natsjs.SinkOptions{}), Units: units{}, Idempotency: h.Requests,
			Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
		if err != nil {
			t.Fatal(err)
		}
		desks = append(desks, d)
	}
	const keys = 150
	statuses := map[int]int{}
	mismatched := 0
	for k := range keys {
		body := fmt.Sprintf(`{"channel":"phone","description":"Sin tono en la extensión %d","idempotency_key":"llamada-%d"}`, k, k)
		var wg sync.WaitGroup
		codes, ids := make([]int, 2), make([]string, 2)
		for i, d := range desks {
			wg.Go(func() {
				code, out := post(t, d, body)
				codes[i] = code
				if id, ok := out["id"].(string); ok {
					ids[i] = id
				}
			})
		}
		wg.Wait()
		for _, code := range codes {
			statuses[code]++
		}
		if ids[0] == "" || ids[0] != ids[1] {
			mismatched++
		}
	}
	info := waitInbound(t, h0, keys)
	t.Logf("R3, %d keys raced on two replicas: answers %v, %d with different ids, %d requests in CAU_INBOUND", keys, statuses, mismatched, info.State.Msgs)
	if statuses[http.StatusCreated]+statuses[http.StatusOK] != 2*keys || mismatched != 0 || info.State.Msgs != keys {
		t.Fatalf("answers %v, %d mismatched ids, %d requests for %d keys", statuses, mismatched, info.State.Msgs, keys)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// Node loss: desk clients keep submitting (each retrying a 503 with its key) while the node that
// leads CAU_INBOUND stops. Every key gives exactly one request; the longest wait and the 503s are
// the figures.
func TestDeskThroughNodeLossOnR3(t *testing.T) {
	c := natstest.StartCluster(t)
	probe := natstest.OnNode(t, c, 0, natsjs.Topology{Replicas: 3})
	ctx := context.Background()
	leader := -1
	for deadline := time.Now().Add(30 * time.Second); leader < 0 && time.Now().Before(deadline); {
		if info, err := probe.Inbound.Info(ctx); err == nil && info.Cluster != nil {
			for i := range c.URLs() {
				if n := c.Node(i); n != nil && n.Name() == info.Cluster.Leader {
					leader = i
				}
			}
		}
		if leader < 0 {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if leader < 0 {
		t.Fatal("no CAU_INBOUND leader")
	}
	h := natstest.OnNode(t, c, (leader+1)%3, natsjs.Topology{Replicas: 3}).Handles
	d, err := desk.New(desk.Options{Sink: natsjs.NewSink(h, natsjs.SinkOptions{}), Units: units{}, Idempotency: h.Requests})
	if err != nil {
		t.Fatal(err)
	}
	const clients, perClient = 4, 60
	var mu sync.Mutex
	var longest time.Duration
	unavailable := 0
	ids := map[string]bool{}
	var wg sync.WaitGroup
	stopAt := make(chan struct{})
	for cl := range clients {
		wg.Go(func() {
			for k := range perClient {
				if cl == 0 && k == perClient/3 {
					close(stopAt)
				}
				body := fmt.Sprintf(`{"channel":"phone","description":"Sin red en el edificio %d-%d","idempotency_key":"perdida-%d-%d"}`, cl, k, cl, k)
				start := time.Now()
				for {
					code, out := post(t, d, body)
					if code == http.StatusCreated || code == http.StatusOK {
						mu.Lock()
						ids[out["id"].(string)] = true
						longest = max(longest, time.Since(start))
						mu.Unlock()
						break
					}
					mu.Lock()
					unavailable++
					mu.Unlock()
					if code != http.StatusServiceUnavailable || time.Since(start) > time.Minute {
						t.Errorf("key %d-%d: %d %v", cl, k, code, out)
						return
					}
				}
			}
		})
	}
	<-stopAt
	c.Stop(leader)
	wg.Wait()
	// Requests the spare lane took reach CAU_INBOUND through its source.
	info := waitInbound(t, h, clients*perClient)
	t.Logf("R3, node leading CAU_INBOUND stopped under %d desk clients: %d keys, %d requests, %d answers 503, longest wait for a request %s",
		clients, clients*perClient, info.State.Msgs, unavailable, longest.Round(time.Millisecond))
	if len(ids) != clients*perClient || info.State.Msgs != clients*perClient {
		t.Fatalf("%d ids and %d requests for %d keys", len(ids), info.State.Msgs, clients*perClient)
	}
}

// waitInbound waits until CAU_INBOUND holds at least want messages (or a minute passed) and
// returns its info.
func waitInbound(t *testing.T, h *natsjs.Handles, want int) *jetstream.StreamInfo {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		info, err := h.Inbound.Info(context.Background())
		if err == nil && (info.State.Msgs >= uint64(want) || time.Now().After(deadline)) {
			return info
		}
		if err != nil && time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
