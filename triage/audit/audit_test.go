package audit_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/deadletter"
	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/channels/natsjs/natstest"
	"github.com/ipn-cgsi/caud/triage"
	"github.com/ipn-cgsi/caud/triage/audit"
	"github.com/ipn-cgsi/caud/triage/queue"
	"github.com/ipn-cgsi/caud/triage/worker"
)

// setup starts JetStream with the topology and CAU_AUDIT.
func setup(t *testing.T) (*natstest.Env, *audit.Trail) {
	t.Helper()
	env := natstest.Start(t, natsjs.Topology{})
	tr, err := audit.Open(context.Background(), env.JS, audit.TrailOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return env, tr
}

// run starts fn in the background until the test ends, and waits for it to return.
func run(t *testing.T, fn func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = fn(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// waitFor polls cond until it holds; the deadline only bounds a failure.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func types(h []audit.Event) string {
	s := make([]string, len(h))
	for i, e := range h {
		s[i] = e.Type
	}
	return strings.Join(s, ",")
}

func historyOf(t *testing.T, tr *audit.Trail, id string) []audit.Event {
	t.Helper()
	h, err := tr.History(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func find(h []audit.Event, typ string) []audit.Event {
	var out []audit.Event
	for _, e := range h {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// TestHistoryOfOneRequest follows a request through the real pipeline: the sink publishes it, the
// triage worker queues it, an agent claims it, re-routes it with a note, another agent claims and
// finishes it with a folio. The history says who did what, in order.
func TestHistoryOfOneRequest(t *testing.T) {
	env, tr := setup(t)
	ctx := context.Background()
	rec := audit.NewRecorder(env.JS, audit.RecorderOptions{})
	run(t, rec.Run)
	// Two replicas' projectors share the durable consumers: each event is recorded once.
	reg := prometheus.NewRegistry()
	for i := range 2 {
		o := audit.ProjectorOptions{Handles: env.Handles, Batch: 1}
		if i == 0 {
			o.Registerer = reg
		}
		p, err := audit.NewProjector(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		run(t, p.Run)
	}
	eng := triage.NewEngine(triage.DefaultCatalog())
	w, err := worker.New(ctx, env.Handles, worker.Options{Decide: eng.Decide})
	if err != nil {
		t.Fatal(err)
	}
	run(t, w.Run)
	q, err := queue.New(ctx, env.Handles, env.Conn, queue.Options{
		Audit: rec, Trail: tr, Catalog: func() queue.Catalog { return eng.Catalog() },
	})
	if err != nil {
		t.Fatal(err)
	}

	sink := natsjs.NewSink(env.Handles, natsjs.SinkOptions{})
	id := channels.NewIDs().New(time.Now())
	req := &channels.Request{ID: id, Channel: channels.MediumEmail, ReceivedAt: time.Now().UTC(),
		Requester: channels.Requester{Name: "Ana López", Email: "ana@ipn.mx"},
		Subject:   "No puedo entrar a mi correo", Text: "Desde ayer no puedo iniciar sesión en el correo institucional."}
	if _, err := sink.Publish(ctx, channels.Submission{Request: req, Subject: channels.SubjectEmailCAU, MsgID: "m1", Source: "imap://cau@ipn.mx/INBOX"}); err != nil {
		t.Fatal(err)
	}
	var st natsjs.RequestState
	waitFor(t, "triage", func() bool {
		st, _, err = natsjs.GetState(ctx, env.Requests, id)
		return err == nil && st.State == natsjs.StateQueued
	})
	c, err := q.Claim(ctx, st.Queue, "ana")
	if err != nil || c == nil {
		t.Fatalf("claim: %v %v", c, err)
	}
	to, kind := triage.OutcomeAclaracion, ""
	if st.Queue == to {
		to, kind = triage.OutcomeInformativo, triage.KindServicio
	}
	if _, err := q.Reroute(ctx, c.Lease, queue.Reroute{Outcome: to, Kind: kind, Note: "no es falla, pide información", Agent: "ana"}); err != nil {
		t.Fatal(err)
	}
	var c2 *queue.Claim
	waitFor(t, "claim after reroute", func() bool {
		c2, err = q.Claim(ctx, to, "beto")
		return err == nil && c2 != nil
	})
	// The console names the signed-in user through the context.
	if err := q.Done(audit.WithActor(ctx, "Beto Ruiz"), c2.Lease, "SAI-2025-0042", ""); err != nil {
		t.Fatal(err)
	}

	var h []audit.Event
	waitFor(t, "six events", func() bool { h = historyOf(t, tr, id); return len(h) >= 6 })
	if got, want := types(h), "received,triaged,claimed,rerouted,claimed,done"; got != want {
		t.Fatalf("history %s, want %s", got, want)
	}
	if e := h[0]; e.Channel != channels.MediumEmail || e.Source != "imap://cau@ipn.mx/INBOX" {
		t.Errorf("received: %+v", e)
	}
	if e := h[1]; e.Outcome != st.Queue || e.Queue != st.Queue || e.Confidence == 0 {
		t.Errorf("triaged: %+v (queue %s)", e, st.Queue)
	}
	if e := h[2]; e.Agent != "ana" || e.Lease != c.Lease || e.ExpiresAt == nil {
		t.Errorf("claimed: %+v", e)
	}
	if e := h[3]; e.Agent != "ana" || e.From != st.Queue || e.To != to || e.Note != "no es falla, pide información" {
		t.Errorf("rerouted: %+v", e)
	}
	if e := h[5]; e.Agent != "Beto Ruiz" || e.Folio != "SAI-2025-0042" || e.Queue != to {
		t.Errorf("done: %+v", e)
	}
	for i := 1; i < len(h); i++ {
		if h[i].At.Before(h[i-1].At) {
			t.Errorf("history out of order at %d: %v before %v", i, h[i].At, h[i-1].At)
		}
	}

	// Stored once each, though two projectors ran.
	as, err := env.JS.Stream(ctx, audit.Stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := as.Info(ctx, jetstream.WithSubjectFilter(audit.SubjectPrefix+id))
	if err != nil || info.State.Subjects[audit.SubjectPrefix+id] != 6 {
		t.Errorf("CAU_AUDIT holds %v messages for the request, want 6 (err %v)", info.State.Subjects, err)
	}
	// Nothing waits for the projector any more, and the scrape says so.
	waitFor(t, "projector lag 0", func() bool {
		n, err := testutil.GatherAndCount(reg, "caud_audit_projector_pending")
		return err == nil && n == 3 && testutil.ToFloat64(gaugeOf(t, reg, "inbound")) == 0
	})

	// GET /api/v1/requests/{id} includes it.
	v, err := q.Get(ctx, id)
	if err != nil || len(v.History) != 6 {
		t.Fatalf("view history: %d events, err %v", len(v.History), err)
	}
}

// TestRecorderRetriesUntilTheStreamTakesIt records while CAU_AUDIT does not exist (JetStream
// refuses every publish): Record returns within its bound, and the event lands once the stream is
// there.
func TestRecorderRetriesUntilTheStreamTakesIt(t *testing.T) {
	env := natstest.Start(t, natsjs.Topology{})
	reg := prometheus.NewRegistry()
	rec := audit.NewRecorder(env.JS, audit.RecorderOptions{Wait: 200 * time.Millisecond, RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond, Registerer: reg})
	id := channels.NewIDs().New(time.Now())
	start := time.Now()
	rec.Record(context.Background(), audit.Event{ID: "done:L1", RequestID: id, Type: audit.Done, Agent: "ana", Folio: "F-1"})
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Record blocked %s", d)
	}
	run(t, rec.Run)
	tr, err := audit.Open(context.Background(), env.JS, audit.TrailOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "retried event", func() bool { return len(historyOf(t, tr, id)) == 1 })
	if e := historyOf(t, tr, id)[0]; e.Folio != "F-1" || e.Agent != "ana" || e.At.IsZero() {
		t.Fatalf("event %+v", e)
	}
	if n := testutil.ToFloat64(rec.Metrics().Retried); n < 1 {
		t.Errorf("retries %v", n)
	}
	if n := testutil.ToFloat64(rec.Metrics().Dropped); n != 0 {
		t.Errorf("dropped %v", n)
	}
}

// TestRecorderDropsVisiblyWhenFull: with the stream missing and no room to wait, an event is
// dropped, counted and logged, and Record still returns.
func TestRecorderDropsVisiblyWhenFull(t *testing.T) {
	env := natstest.Start(t, natsjs.Topology{})
	var logged strings.Builder
	rec := audit.NewRecorder(env.JS, audit.RecorderOptions{Wait: 100 * time.Millisecond, Buffer: 1, Logger: newLogger(&logged)})
	id := channels.NewIDs().New(time.Now())
	for i := range 3 {
		rec.Record(context.Background(), audit.Event{ID: fmt.Sprintf("released:L%d", i), RequestID: id, Type: audit.Released})
	}
	if n := testutil.ToFloat64(rec.Metrics().Dropped); n != 2 {
		t.Fatalf("dropped %v, want 2", n)
	}
	if !strings.Contains(logged.String(), "released:L1") || !strings.Contains(logged.String(), "audit event dropped") {
		t.Fatalf("drop not logged with the event: %s", logged.String())
	}
	var nilRec *audit.Recorder
	nilRec.Record(context.Background(), audit.Event{}) // a nil recorder records nothing
}

// TestProjectorDeadLettersAndNotices: a dead letter, its replay and a sent notice become events of
// their request; a dead letter naming no request is skipped, not retried forever.
func TestProjectorDeadLettersAndNotices(t *testing.T) {
	env, tr := setup(t)
	ctx := context.Background()
	kv, err := env.JS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "cau_notify"})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	p, err := audit.NewProjector(ctx, audit.ProjectorOptions{Handles: env.Handles, NotifyBucket: "cau_notify", Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	run(t, p.Run)
	id := channels.NewIDs().New(time.Now())
	dl := nats.NewMsg(natsjs.SubjectDLQPrefix + "triage")
	dl.Data = []byte(`{"id":"` + id + `","channel":"email"}`)
	dl.Header.Set("ce-id", id)
	dl.Header.Set(deadletter.HeaderStage, "triage")
	dl.Header.Set(deadletter.HeaderReason, "cannot be processed: invalid request: no text")
	if _, err := env.JS.PublishMsg(ctx, dl); err != nil {
		t.Fatal(err)
	}
	junk := nats.NewMsg(natsjs.SubjectDLQPrefix + "notify")
	junk.Data = []byte("not json")
	if _, err := env.JS.PublishMsg(ctx, junk); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "sent."+id+".acuse", []byte(`{"channel":"email","to":"ana@ipn.mx","sent_at":"2025-10-14T16:05:00Z"}`)); err != nil {
		t.Fatal(err)
	}
	replay := nats.NewMsg(natsjs.SubjectInboundPrefix + "desk")
	replay.Data = []byte(`{"id":"` + id + `","channel":"phone","received_at":"2025-10-14T16:00:00Z","text":"x"}`)
	replay.Header.Set(deadletter.HeaderReplayedOf, "7")
	if _, err := env.JS.PublishMsg(ctx, replay); err != nil {
		t.Fatal(err)
	}
	var h []audit.Event
	waitFor(t, "three events", func() bool { h = historyOf(t, tr, id); return len(h) == 3 })
	if r := find(h, audit.Replayed); len(r) != 1 || r[0].Channel != "phone" {
		t.Errorf("replayed: %+v", h)
	}
	dead, sent := find(h, audit.Dead), find(h, audit.Notified)
	if len(dead) != 1 || dead[0].Stage != "triage" || !strings.Contains(dead[0].Reason, "no text") {
		t.Errorf("dead: %+v", dead)
	}
	if len(sent) != 1 || sent[0].Notice != "acuse" || sent[0].Recipient != "ana@ipn.mx" || sent[0].Channel != "email" {
		t.Errorf("notified: %+v", sent)
	}
	waitFor(t, "junk skipped", func() bool {
		return testutil.ToFloat64(p.Metrics().Skipped.WithLabelValues(audit.SourceDLQ)) == 1
	})
}

// TestHistoryShowsAnEventOnce even when it was published twice past the duplicate window.
func TestHistoryShowsAnEventOnce(t *testing.T) {
	env, tr := setup(t)
	ctx := context.Background()
	id := channels.NewIDs().New(time.Now())
	ev, _ := json.Marshal(audit.Event{ID: "done:L", RequestID: id, Type: audit.Done, At: time.Now()})
	for i := range 2 {
		m := nats.NewMsg(audit.SubjectPrefix + id)
		m.Data = ev
		m.Header.Set(jetstream.MsgIDHeader, fmt.Sprint("other-", i))
		if _, err := env.JS.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if h := historyOf(t, tr, id); len(h) != 1 {
		t.Fatalf("history %d events, want 1", len(h))
	}
	if h := historyOf(t, tr, channels.NewIDs().New(time.Now())); h == nil || len(h) != 0 {
		t.Fatalf("history of a request without events: %v", h)
	}
}

func TestHistoryAPI(t *testing.T) {
	env, tr := setup(t)
	ctx := context.Background()
	rec := audit.NewRecorder(env.JS, audit.RecorderOptions{})
	id := channels.NewIDs().New(time.Now())
	rec.Record(ctx, audit.Event{ID: "claimed:L", RequestID: id, Type: audit.Claimed, Agent: "ana"})
	mux := http.NewServeMux()
	tr.Register(mux, func(h http.Handler) http.Handler { return h }, nil)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for _, c := range []struct {
		path   string
		status int
		want   string
	}{
		{"/api/v1/requests/" + id + "/history", 200, `"agent":"ana"`},
		{"/api/v1/requests/nope/history", 404, "no existe"},
		{"/api/v1/requests/" + strings.Repeat("Z", 26) + "/history", 404, "no existe"},
	} {
		resp, err := http.Get(srv.URL + c.path)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		_, _ = fmt.Fprint(&b, readAll(t, resp))
		if resp.StatusCode != c.status || !strings.Contains(b.String(), c.want) {
			t.Errorf("%s: %d %s", c.path, resp.StatusCode, b.String())
		}
	}
}

func newLogger(w *strings.Builder) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, nil))
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// gaugeOf reads caud_audit_projector_pending{source} from a registry.
func gaugeOf(t *testing.T, reg *prometheus.Registry, source string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "x"})
	g.Set(-1)
	for _, mf := range mfs {
		if mf.GetName() != "caud_audit_projector_pending" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "source" && l.GetValue() == source {
					g.Set(m.GetGauge().GetValue())
				}
			}
		}
	}
	return g
}
