package queue_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/channels/natsjs/natstest"
	"github.com/ipn-cgsi/caud/triage"
	"github.com/ipn-cgsi/caud/triage/queue"
)

type fixture struct {
	env *natstest.Env
	q   *queue.Queues
	reg *prometheus.Registry
	ids *channels.IDs
}

func setup(t *testing.T, lease time.Duration) *fixture {
	t.Helper()
	env := natstest.Start(t, natsjs.Topology{})
	reg := prometheus.NewRegistry()
	cat := triage.DefaultCatalog()
	q, err := queue.New(context.Background(), env.Handles, env.Conn, queue.Options{
		Lease: lease, Registerer: reg, Catalog: func() queue.Catalog { return cat },
	})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{env: env, q: q, reg: reg, ids: channels.NewIDs()}
}

// enqueue puts a triaged item on a queue the way the triage worker does.
func (f *fixture) enqueue(t *testing.T, outcome, text string) string {
	t.Helper()
	now := time.Now().UTC()
	id := f.ids.New(now)
	item := triage.Item{
		Request:   channels.Request{ID: id, Channel: "phone", ReceivedAt: now, Text: text},
		Triage:    triage.Triage{Outcome: outcome, Kind: triage.KindFalla, Confidence: 0.9},
		TriagedAt: now,
	}
	b, _ := json.Marshal(item)
	m := nats.NewMsg(natsjs.SubjectTriagedPrefix + outcome)
	m.Data = b
	m.Header.Set(jetstream.MsgIDHeader, "triaged:"+id)
	ack, err := f.env.JS.PublishMsg(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.env.JS.PublishMsg(context.Background(), natsjs.StateMsg(id, natsjs.RequestState{State: natsjs.StateQueued, Queue: outcome, TriagedSeq: ack.Sequence})); err != nil {
		t.Fatal(err)
	}
	return id
}

func claimedID(t *testing.T, c *queue.Claim) string {
	t.Helper()
	var item triage.Item
	if err := json.Unmarshal(c.Item, &item); err != nil {
		t.Fatal(err)
	}
	return item.Request.ID
}

func stat(t *testing.T, q *queue.Queues, name string) queue.Stat {
	t.Helper()
	stats, err := q.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range stats {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no queue %s", name)
	return queue.Stat{}
}

func TestClaimDoneAndState(t *testing.T) {
	f := setup(t, time.Minute)
	ctx := context.Background()
	if c, err := f.q.Claim(ctx, "sai", "ana"); err != nil || c != nil {
		t.Fatalf("empty queue: %v %v", c, err)
	}
	if _, err := f.q.Claim(ctx, "nope", ""); !errors.Is(err, queue.ErrUnknownQueue) {
		t.Fatalf("unknown queue: %v", err)
	}
	id := f.enqueue(t, "sai", "no puedo entrar a mi correo")
	// The oldest item's age grows from 0: look until it has.
	s := stat(t, f.q, "sai")
	for deadline := time.Now().Add(5 * time.Second); s.OldestAgeSeconds <= 0 && time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		s = stat(t, f.q, "sai")
	}
	if s.Pending != 1 || s.InProgress != 0 || s.OldestAgeSeconds <= 0 {
		t.Fatalf("before claim %+v", s)
	}
	c, err := f.q.Claim(ctx, "sai", "ana")
	if err != nil || c == nil {
		t.Fatalf("claim: %v %v", c, err)
	}
	if claimedID(t, c) != id || time.Until(c.ExpiresAt) < 50*time.Second {
		t.Fatalf("claim %s expires %s", claimedID(t, c), c.ExpiresAt)
	}
	if s := stat(t, f.q, "sai"); s.Pending != 0 || s.InProgress != 1 {
		t.Fatalf("after claim %+v", s)
	}
	v, err := f.q.Get(ctx, id)
	if err != nil || v.State != natsjs.StateClaimed {
		t.Fatalf("get after claim: %+v %v", v, err)
	}
	// An sai item is registered in the SAI: done needs its folio, or a reason why there is none.
	if err := f.q.Done(ctx, c.Lease, " ", ""); !errors.Is(err, queue.ErrFolioRequired) {
		t.Fatalf("done without folio: %v", err)
	}
	if err := f.q.Done(ctx, c.Lease, "SAI-2025-000123", ""); err != nil {
		t.Fatal(err)
	}
	if s := stat(t, f.q, "sai"); s.Pending != 0 || s.InProgress != 0 || s.OldestAgeSeconds != 0 {
		t.Fatalf("after done %+v", s)
	}
	v, err = f.q.Get(ctx, id)
	if err != nil || v.State != natsjs.StateDone || v.Folio != "SAI-2025-000123" || !strings.Contains(string(v.Request), id) {
		t.Fatalf("get after done: %+v %v", v, err)
	}
	if err := f.q.Done(ctx, c.Lease, "SAI-2025-000123", ""); !errors.Is(err, queue.ErrLeaseFinished) {
		t.Fatalf("second done: %v", err)
	}
	if _, err := f.q.Get(ctx, "01JD0000000000000000000000"); !errors.Is(err, natsjs.ErrUnknownRequest) {
		t.Fatalf("unknown id: %v", err)
	}
}

func TestConcurrentClaimsNeverShareAnItem(t *testing.T) {
	f := setup(t, time.Minute)
	const items, agents = 60, 6
	for range items {
		f.enqueue(t, "informativo", "cursos de capacitación")
	}
	var mu sync.Mutex
	seen := map[string]string{}
	var wg sync.WaitGroup
	for a := range agents {
		wg.Go(func() {
			for {
				c, err := f.q.Claim(context.Background(), "informativo", "")
				if err != nil {
					t.Error(err)
					return
				}
				if c == nil {
					return
				}
				id := claimedID(t, c)
				mu.Lock()
				if prev, dup := seen[id]; dup {
					t.Errorf("item %s claimed by agent %d and %s", id, a, prev)
				}
				seen[id] = string(rune('A' + a))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != items {
		t.Fatalf("%d distinct items claimed, want %d", len(seen), items)
	}
}

func TestExpiredLeaseReturnsItemToQueue(t *testing.T) {
	f := setup(t, 3*time.Second)
	ctx := context.Background()
	id := f.enqueue(t, "aclaracion", "ayuda")
	c1, err := f.q.Claim(ctx, "aclaracion", "ana")
	if err != nil || c1 == nil {
		t.Fatal(c1, err)
	}
	if c, _ := f.q.Claim(ctx, "aclaracion", "luis"); c != nil {
		t.Fatal("a leased item was handed out twice")
	}
	var c2 *queue.Claim
	deadline := time.Now().Add(15 * time.Second)
	for c2 == nil && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		if c2, err = f.q.Claim(ctx, "aclaracion", "luis"); err != nil {
			t.Fatal(err)
		}
	}
	if c2 == nil || claimedID(t, c2) != id {
		t.Fatal("expired lease did not return the item to its queue")
	}
	// The vanished agent's lease is gone: it cannot finish what the other agent now holds.
	if err := f.q.Done(ctx, c1.Lease, "", ""); !errors.Is(err, queue.ErrLeaseExpired) {
		t.Fatalf("stale done: %v", err)
	}
	if err := f.q.Done(ctx, c2.Lease, "", ""); err != nil {
		t.Fatal(err)
	}
}

func TestReleaseExtendAndReroute(t *testing.T) {
	f := setup(t, 4*time.Second)
	ctx := context.Background()
	id := f.enqueue(t, "sai", "¿cuándo pagan la beca?")
	c, _ := f.q.Claim(ctx, "sai", "ana")
	if err := f.q.Release(ctx, c.Lease); err != nil {
		t.Fatal(err)
	}
	c, _ = f.q.Claim(ctx, "sai", "ana")
	if c == nil || claimedID(t, c) != id {
		t.Fatal("released item is not claimable at once")
	}
	// Extending past the ack wait keeps the item: nobody else gets it.
	time.Sleep(2500 * time.Millisecond)
	if _, err := f.q.Extend(ctx, c.Lease, 0); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // 4.5 s since the claim: past the 4 s ack wait without the extend
	if other, _ := f.q.Claim(ctx, "sai", "luis"); other != nil {
		t.Fatal("extended lease was handed to someone else")
	}
	// Bad corrections are refused with a message for the agent.
	for _, r := range []queue.Reroute{{Outcome: "x"}, {Outcome: "sai", Service: "NO-EXISTE", Kind: "falla"}, {Outcome: "no_competente", Target: "NADIE"}} {
		if _, err := f.q.Reroute(ctx, c.Lease, r); !errors.Is(err, queue.ErrBadReroute) {
			t.Fatalf("reroute %+v: %v", r, err)
		}
	}
	queueName, err := f.q.Reroute(ctx, c.Lease, queue.Reroute{Outcome: "no_competente", Target: "BECAS", Note: "es de becas", Agent: "ana"})
	if err != nil || queueName != "no_competente" {
		t.Fatal(queueName, err)
	}
	if s := stat(t, f.q, "sai"); s.Pending != 0 || s.InProgress != 0 {
		t.Fatalf("sai after reroute %+v", s)
	}
	c2, _ := f.q.Claim(ctx, "no_competente", "luis")
	if c2 == nil {
		t.Fatal("rerouted item not in its new queue")
	}
	var item triage.Item
	_ = json.Unmarshal(c2.Item, &item)
	if item.Request.ID != id || item.Previous == nil || item.Previous.Outcome != "sai" || item.Triage.Orientation == nil ||
		item.Triage.Orientation.Target != "BECAS" || item.Triage.By != "agent:ana" || !strings.Contains(item.Triage.Explanation, "es de becas") {
		t.Fatalf("rerouted item %+v", item)
	}
	// The correction is recorded as a labelled example the evaluator reads.
	var buf strings.Builder
	if n, err := f.q.Corrections(ctx, &buf); err != nil || n != 1 {
		t.Fatalf("corrections: %d %v", n, err)
	}
	ex, err := triage.ReadExamples(strings.NewReader(buf.String()))
	if err != nil || len(ex) != 1 {
		t.Fatalf("examples %v %v", ex, err)
	}
	if e := ex[0]; e.ID != id || e.Outcome != "no_competente" || e.Area != "BECAS" || e.Tipo != "-" || e.Body != "¿cuándo pagan la beca?" {
		t.Fatalf("correction %+v", e)
	}
	if !strings.Contains(buf.String(), `"previous":{"outcome":"sai","tipo":"falla"`) || !strings.Contains(buf.String(), `"agent":"ana"`) {
		t.Fatalf("correction line %s", buf.String())
	}
}

func TestMetricsAgreeWithAPI(t *testing.T) {
	f := setup(t, time.Minute)
	for range 3 {
		f.enqueue(t, "sai", "x")
	}
	f.enqueue(t, "informativo", "y")
	if _, err := f.q.Claim(context.Background(), "sai", ""); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(func() http.Handler {
		mux := http.NewServeMux()
		f.q.Register(mux, func(h http.Handler) http.Handler { return h })
		return mux
	}())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/api/v1/queues")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct{ Queues []queue.Stat }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if len(body.Queues) != 4 {
		t.Fatalf("queues %+v", body.Queues)
	}
	for _, s := range body.Queues {
		pending := testutil.ToFloat64(gauge(t, f.reg, "caud_queue_pending", s.Name))
		inProgress := testutil.ToFloat64(gauge(t, f.reg, "caud_queue_in_progress", s.Name))
		if uint64(pending) != s.Pending || int(inProgress) != s.InProgress {
			t.Fatalf("%s: metrics %v/%v, API %+v", s.Name, pending, inProgress, s)
		}
	}
	if s := body.Queues[0]; s.Name != "sai" || s.Pending != 2 || s.InProgress != 1 {
		t.Fatalf("sai %+v", s)
	}
}

// gauge reads one labelled sample of a gathered metric as a collector testutil can read.
func gauge(t *testing.T, reg *prometheus.Registry, name, queueName string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "queue" && l.GetValue() == queueName {
					g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "x"})
					g.Set(m.GetGauge().GetValue())
					return g
				}
			}
		}
	}
	t.Fatalf("no %s{queue=%q}", name, queueName)
	return nil
}
