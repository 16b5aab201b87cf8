// Package worker runs the triage stage: it consumes CAU_INBOUND with the shared durable consumer
// "triage", decides each request against the catalog, publishes the triaged item onto
// cau.triaged.<outcome> and only then acknowledges the input. A message that cannot be processed is
// dead-lettered onto cau.dlq.triage with the reason, at once when retrying cannot help, else after
// MaxDeliver attempts.
package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/deadletter"
	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/triage"
)

// Options configures a Worker. Zero values are documented defaults.
type Options struct {
	// Decide triages one input; it must be safe for concurrent use (required).
	Decide func(triage.Input) triage.Triage
	// MaxDeliver bounds deliveries of one message before it is dead-lettered; 0 means 5.
	MaxDeliver int
	// AckWait is how long a delivery may take before JetStream redelivers; 0 means 30 s.
	AckWait time.Duration
	// Workers is the number of concurrent fetch loops in this process; 0 means 4.
	Workers int
	// Batch is the number of messages fetched and published together; 0 means 256.
	Batch      int
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Worker is the triage stage. Create it with New, run it with Run.
type Worker struct {
	h    *natsjs.Handles
	o    Options
	log  *slog.Logger
	cons jetstream.Consumer
	m    metrics
}

type metrics struct {
	outcomes *prometheus.CounterVec
	dead     prometheus.Counter
	retries  prometheus.Counter
	decide   prometheus.Histogram
	lag      prometheus.Histogram
}

// New creates (or updates) the durable consumer and returns a Worker.
func New(ctx context.Context, h *natsjs.Handles, o Options) (*Worker, error) {
	if o.Decide == nil {
		return nil, errors.New("triage worker: no Decide function")
	}
	if o.MaxDeliver == 0 {
		o.MaxDeliver = 5
	}
	if o.AckWait == 0 {
		o.AckWait = 30 * time.Second
	}
	if o.Workers == 0 {
		o.Workers = 4
	}
	if o.Batch == 0 {
		o.Batch = 256
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cons, err := h.Inbound.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       natsjs.ConsumerTriage,
		Description:   "triage workers (shared by every caud replica)",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       o.AckWait,
		MaxDeliver:    o.MaxDeliver + 1, // the last delivery is the one that dead-letters
		MaxAckPending: max(4*o.Batch*o.Workers, 1000),
		FilterSubject: natsjs.SubjectInboundPrefix + ">",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		BackOff:       nil,
	})
	if err != nil {
		return nil, fmt.Errorf("triage consumer: %w", err)
	}
	w := &Worker{h: h, o: o, log: log, cons: cons}
	w.m = metrics{
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "caud_triage_outcomes_total", Help: "Triaged requests per outcome."}, []string{"outcome"}),
		dead:     prometheus.NewCounter(prometheus.CounterOpts{Name: "caud_triage_dead_letters_total", Help: "Inbound messages dead-lettered by the triage stage."}),
		retries:  prometheus.NewCounter(prometheus.CounterOpts{Name: "caud_triage_retries_total", Help: "Inbound messages handed back for another delivery."}),
		decide:   prometheus.NewHistogram(prometheus.HistogramOpts{Name: "caud_triage_decide_seconds", Help: "Time the engine took to decide one request.", Buckets: prometheus.ExponentialBuckets(1e-6, 2, 18)}),
		lag:      prometheus.NewHistogram(prometheus.HistogramOpts{Name: "caud_triage_seconds", Help: "Time from arrival in CAU_INBOUND to the triaged item's JetStream ack.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 20)}),
	}
	for _, oc := range triage.Outcomes {
		w.m.outcomes.WithLabelValues(oc)
	}
	if o.Registerer != nil {
		o.Registerer.MustRegister(w.m.outcomes, w.m.dead, w.m.retries, w.m.decide, w.m.lag)
	}
	return w, nil
}

// Run fetches and triages until ctx ends, then finishes the batch in hand (bounded by AckWait) and
// returns nil. It survives NATS outages: fetch errors are logged and retried.
func (w *Worker) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for i := range w.o.Workers {
		wg.Go(func() { w.loop(ctx, i) })
	}
	wg.Wait()
	return nil
}

func (w *Worker) loop(ctx context.Context, n int) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		msgs, err := w.fetch()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			w.log.Warn("triage fetch failed", "loop", n, "err", err)
			sleep(ctx, backoff)
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		if len(msgs) > 0 {
			// The batch in hand is finished even when ctx ends: a bounded, independent deadline.
			bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.o.AckWait)
			w.process(bctx, msgs)
			cancel()
		}
	}
}

// fetch takes what is waiting, up to a batch, or waits up to a second for one message.
func (w *Worker) fetch() ([]jetstream.Msg, error) {
	return natsjs.Fetch(w.cons, w.o.Batch, time.Second)
}

type pending struct {
	in      jetstream.Msg
	md      *jetstream.MsgMetadata
	id      string
	queue   string
	out     *nats.Msg
	fut     jetstream.PubAckFuture
	arrived time.Time
}

// process triages a batch: decide all, publish all triaged items pipelined, then the index entries,
// then acknowledge the inputs whose item JetStream acknowledged.
func (w *Worker) process(ctx context.Context, msgs []jetstream.Msg) {
	ready := make([]*pending, 0, len(msgs))
	for _, m := range msgs {
		p, err := w.prepare(m)
		if err != nil {
			w.fail(ctx, m, p, err)
			continue
		}
		ready = append(ready, p)
	}
	for _, p := range ready {
		fut, err := w.h.JS.PublishMsgAsync(p.out)
		if err != nil {
			w.fail(ctx, p.in, p, fmt.Errorf("publish triaged: %w", err))
			p.fut = nil
			continue
		}
		p.fut = fut
	}
	var done []*pending
	var index []jetstream.PubAckFuture
	for _, p := range ready {
		if p.fut == nil {
			continue
		}
		select {
		case ack := <-p.fut.Ok():
			st := natsjs.RequestState{State: natsjs.StateQueued, Queue: p.queue, InboundSeq: p.md.Sequence.Stream, TriagedSeq: ack.Sequence}
			if f, err := w.h.JS.PublishMsgAsync(natsjs.StateMsg(p.id, st, false)); err == nil {
				index = append(index, f)
			} else {
				w.log.Warn("index queued state", "id", p.id, "err", err)
			}
			w.m.outcomes.WithLabelValues(p.queue).Inc()
			w.m.lag.Observe(time.Since(p.arrived).Seconds())
			done = append(done, p)
		case err := <-p.fut.Err():
			w.fail(ctx, p.in, p, fmt.Errorf("publish triaged: %w", err))
		case <-ctx.Done():
			w.fail(ctx, p.in, p, fmt.Errorf("publish triaged: %w", ctx.Err()))
		}
	}
	for _, f := range index {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			w.log.Warn("index queued state", "err", err)
		case <-ctx.Done():
		}
	}
	for _, p := range done {
		if err := p.in.Ack(); err != nil {
			// The item is published with its Nats-Msg-Id: a redelivery republishes a duplicate,
			// which JetStream drops, so nothing is doubled.
			w.log.Warn("ack inbound", "id", p.id, "err", err)
		}
	}
}

// errPermanent marks input that no retry can fix.
var errPermanent = errors.New("cannot be processed")

// followup gives a follow-up (a reply to an earlier request) the triage of the request it follows,
// so it lands in the queue that request went to. It reports false when the request is no follow-up
// or the earlier request's triage cannot be read (then the engine decides as for any request).
func (w *Worker) followup(req *channels.Request) (triage.Triage, bool) {
	if req.Thread == nil || req.Thread.FollowupOf == "" {
		return triage.Triage{}, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, _, err := natsjs.GetState(ctx, w.h.Requests, req.Thread.FollowupOf)
	if err != nil || st.TriagedSeq == 0 {
		return triage.Triage{}, false
	}
	m, err := w.h.Triaged.GetMsg(ctx, st.TriagedSeq)
	if err != nil {
		w.log.Warn("follow-up: read earlier triage", "request", req.ID, "followup_of", req.Thread.FollowupOf, "err", err)
		return triage.Triage{}, false
	}
	var prev struct {
		Triage triage.Triage `json:"triage"`
	}
	if err := json.Unmarshal(m.Data, &prev); err != nil || !validOutcome(prev.Triage.Outcome) {
		return triage.Triage{}, false
	}
	t := prev.Triage
	t.Explanation = "Seguimiento de la solicitud " + req.Thread.FollowupOf + "; se conserva su triaje (" + t.Outcome + ")."
	t.By = "followup"
	return t, true
}

func (w *Worker) prepare(m jetstream.Msg) (p *pending, err error) {
	md, err := m.Metadata()
	if err != nil {
		return nil, fmt.Errorf("%w: metadata: %v", errPermanent, err)
	}
	p = &pending{in: m, md: md, arrived: md.Timestamp}
	var req channels.Request
	if err := json.Unmarshal(m.Data(), &req); err != nil {
		return p, fmt.Errorf("%w: decode request: %v", errPermanent, err)
	}
	p.id = req.ID
	if err := req.Validate(); err != nil {
		return p, fmt.Errorf("%w: %v", errPermanent, err)
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("triage engine panic: %v", r)
		}
	}()
	t, followed := w.followup(&req)
	if !followed {
		start := time.Now()
		t = w.o.Decide(triage.Input{Subject: req.Subject, Text: req.Text, Channel: req.Channel})
		w.m.decide.Observe(time.Since(start).Seconds())
	}
	if !validOutcome(t.Outcome) {
		return p, fmt.Errorf("triage engine returned outcome %q", t.Outcome)
	}
	now := time.Now().UTC()
	body, err := itemJSON(m.Data(), t, now)
	if err != nil {
		return p, fmt.Errorf("%w: encode item: %v", errPermanent, err)
	}
	out := nats.NewMsg(natsjs.SubjectTriagedPrefix + t.Outcome)
	out.Data = body
	source := m.Headers().Get("ce-source")
	natsjs.SetCloudEvent(out.Header, "triaged:"+req.ID, source, natsjs.TypeTriaged, now)
	out.Header.Set(jetstream.MsgIDHeader, "triaged:"+req.ID)
	p.out, p.queue = out, t.Outcome
	return p, nil
}

// itemJSON encodes a triage.Item around the request's bytes as they arrived, which saves
// re-encoding the request: the hot path of the triage stage.
func itemJSON(request []byte, t triage.Triage, at time.Time) ([]byte, error) {
	tj, err := json.Marshal(t)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, len(request)+len(tj)+80)
	b = append(b, `{"request":`...)
	b = append(b, request...)
	b = append(b, `,"triage":`...)
	b = append(b, tj...)
	b = append(b, `,"triaged_at":"`...)
	b = at.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `"}`...)
	return b, nil
}

func validOutcome(o string) bool {
	for _, x := range triage.Outcomes {
		if o == x {
			return true
		}
	}
	return false
}

// fail hands a message back for another delivery, or dead-letters it when the error is permanent
// or this was its last allowed delivery.
func (w *Worker) fail(ctx context.Context, m jetstream.Msg, p *pending, cause error) {
	deliveries := uint64(0)
	if p != nil && p.md != nil {
		deliveries = p.md.NumDelivered
	}
	if !errors.Is(cause, errPermanent) && deliveries < uint64(w.o.MaxDeliver) {
		w.m.retries.Inc()
		w.log.Warn("triage failed, will retry", "err", cause, "delivery", deliveries)
		_ = m.NakWithDelay(time.Duration(deliveries) * time.Second)
		return
	}
	if err := w.deadLetter(ctx, m, p, cause); err != nil {
		w.log.Error("dead-letter failed, leaving message for redelivery", "err", err, "cause", cause)
		_ = m.NakWithDelay(5 * time.Second)
		return
	}
	w.m.dead.Inc()
	w.log.Error("triage dead-lettered a message", "reason", cause, "subject", m.Subject(), "deliveries", deliveries)
	_ = m.Term()
}

func (w *Worker) deadLetter(ctx context.Context, m jetstream.Msg, p *pending, cause error) error {
	if err := deadletter.Publish(ctx, w.h.JS, deadletter.FromMsg(deadletter.StageTriage, m, cause)); err != nil {
		return err
	}
	var seq uint64
	if p != nil && p.md != nil {
		seq = p.md.Sequence.Stream
	}
	if p != nil && p.id != "" {
		st := natsjs.RequestState{State: natsjs.StateDead, InboundSeq: seq, Reason: cause.Error()}
		if _, err := w.h.JS.PublishMsg(ctx, natsjs.StateMsg(p.id, st, false)); err != nil {
			w.log.Warn("index dead state", "id", p.id, "err", err)
		}
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
