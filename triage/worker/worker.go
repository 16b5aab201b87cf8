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
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/deadletter"
	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/channels/retry"
	"github.com/ipn-cgsi/caud/triage"
)

// Options configures a Worker. Zero values are documented defaults.
type Options struct {
	// Decide triages one input; it must be safe for concurrent use (required).
	Decide func(triage.Input) triage.Triage
	// MaxDeliver bounds the attempts at one message that failed in processing (bad input, an engine
	// panic) before it is dead-lettered; 0 means 5. Failures of JetStream itself (store full,
	// no quorum, timeouts) never count: such a message is kept in hand and retried until it goes
	// through, and the consumer has no delivery limit, so nothing is ever skipped.
	MaxDeliver int
	// AckWait is how long a delivery may take before JetStream redelivers; 0 means 30 s. A message
	// kept in hand is reported in progress well before that.
	AckWait time.Duration
	// Workers is the number of concurrent fetch loops in this process; 0 means 4.
	Workers int
	// Batch is the number of messages fetched and published together; 0 means 256.
	Batch int
	// RetryWait caps the wait between retries of messages kept in hand; 0 means 1 s, so work
	// resumes within about a second of JetStream having space again.
	RetryWait  time.Duration
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Worker is the triage stage. Create it with New, run it with Run. While JetStream refuses its
// writes (store full, disk full, no quorum) it stops taking new work, keeps what it holds, reports
// the store's reason in Health, and resumes by itself.
type Worker struct {
	h    *natsjs.Handles
	o    Options
	log  *slog.Logger
	cons jetstream.Consumer
	m    metrics

	mu      sync.Mutex
	holders int           // loops holding messages that JetStream refused
	reason  string        // the last refusal
	since   time.Time     // when the first holder began
	resume  chan struct{} // closed when holders drops to 0
}

type metrics struct {
	outcomes *prometheus.CounterVec
	dead     prometheus.Counter
	retries  prometheus.Counter
	held     prometheus.Gauge
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
	if o.RetryWait == 0 {
		o.RetryWait = time.Second
	}
	log := channels.OrDiscard(o.Logger)
	cons, err := natsjs.EnsureConsumer(ctx, h.Inbound, jetstream.ConsumerConfig{
		Durable:     natsjs.ConsumerTriage,
		Description: "triage workers (shared by every caud replica)",
		AckPolicy:   jetstream.AckExplicitPolicy,
		AckWait:     o.AckWait,
		// No server-side limit: the worker counts failed attempts itself and dead-letters, and a
		// message whose dead letter could not be written must come back, never be dropped.
		MaxDeliver:    -1,
		MaxAckPending: max(4*o.Batch*o.Workers, 1000),
		FilterSubject: natsjs.SubjectInboundPrefix + ">",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		BackOff:       nil,
	}, natsjs.Topology{Logger: log})
	if err != nil {
		return nil, fmt.Errorf("triage consumer: %w", err)
	}
	w := &Worker{h: h, o: o, log: log, cons: cons}
	w.m = metrics{
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "caud_triage_outcomes_total", Help: "Triaged requests per outcome."}, []string{"outcome"}),
		dead:     prometheus.NewCounter(prometheus.CounterOpts{Name: "caud_triage_dead_letters_total", Help: "Inbound messages dead-lettered by the triage stage."}),
		retries:  prometheus.NewCounter(prometheus.CounterOpts{Name: "caud_triage_retries_total", Help: "Inbound messages handed back for another delivery."}),
		held:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "caud_triage_held", Help: "Inbound messages kept in hand because JetStream refused a write (store full, no quorum)."}),
		decide:   prometheus.NewHistogram(prometheus.HistogramOpts{Name: "caud_triage_decide_seconds", Help: "Time the engine took to decide one request.", Buckets: prometheus.ExponentialBuckets(1e-6, 2, 18)}),
		lag:      prometheus.NewHistogram(prometheus.HistogramOpts{Name: "caud_triage_seconds", Help: "Time from arrival in CAU_INBOUND to the triaged item's JetStream ack.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 20)}),
	}
	for _, oc := range triage.Outcomes {
		w.m.outcomes.WithLabelValues(oc)
	}
	if o.Registerer != nil {
		o.Registerer.MustRegister(w.m.outcomes, w.m.dead, w.m.retries, w.m.held, w.m.decide, w.m.lag)
	}
	return w, nil
}

// Health reports whether the stage is taking work: not while JetStream refuses its writes, with
// JetStream's own reason (e.g. "insufficient resources").
func (w *Worker) Health(context.Context) []channels.Health {
	w.mu.Lock()
	defer w.mu.Unlock()
	h := channels.Health{Name: "triage", OK: w.holders == 0, Detail: "taking work"}
	if w.holders > 0 {
		h.Detail, h.Since = "paused, messages kept until JetStream accepts writes again: "+w.reason, w.since
	}
	return []channels.Health{h}
}

// Run fetches and triages until ctx ends, then finishes the batch in hand and returns nil. It
// survives NATS outages and a full store: fetch errors are logged and retried, refused writes are
// retried with the messages kept in hand, and when ctx ends those are handed back at once.
func (w *Worker) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for i := range w.o.Workers {
		wg.Go(func() { w.loop(ctx, i) })
	}
	wg.Wait()
	return nil
}

func (w *Worker) loop(ctx context.Context, n int) {
	b := retry.Policy{Initial: 100 * time.Millisecond, Max: 5 * time.Second}.Start()
	for ctx.Err() == nil {
		if !w.waitResumed(ctx) {
			return
		}
		msgs, err := w.fetch()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			w.log.Warn("triage fetch failed", "loop", n, "err", err)
			b.Wait(ctx)
			continue
		}
		b.Reset()
		if len(msgs) > 0 {
			w.process(ctx, msgs)
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
	seq     uint64 // the triaged item's stream sequence, once JetStream acknowledged it
	arrived time.Time
	done    bool // finished (acknowledged, dead-lettered or handed back)
}

// opTimeout bounds one JetStream round trip of the stage.
const opTimeout = 5 * time.Second

// maxAttachmentText bounds the attachment text the engine reads of one request.
const maxAttachmentText = 32 << 10

// process triages a batch: decide all, publish all triaged items pipelined, then the index entries,
// then acknowledge the inputs. What JetStream refuses is kept in hand and retried (see hold); what
// cannot be processed is retried or dead-lettered (see fail).
func (w *Worker) process(ctx context.Context, msgs []jetstream.Msg) {
	ready := make([]*pending, 0, len(msgs))
	for _, m := range msgs {
		p, err := w.prepare(ctx, m)
		switch {
		case err != nil:
			w.fail(ctx, m, p, err)
		case p.seq > 0:
			// Triaged before (a redelivery after a crash or a long outage): its item exists.
			if err := m.Ack(); err != nil {
				w.log.Warn("ack inbound", "id", p.id, "err", err)
			}
		default:
			ready = append(ready, p)
		}
	}
	// The triaged items, pipelined.
	futs := make([]jetstream.PubAckFuture, len(ready))
	for i, p := range ready {
		futs[i], _ = w.h.JS.PublishMsgAsync(p.out)
	}
	var refused []*pending
	var refusal error
	for i, p := range ready {
		ack, err := waitAck(ctx, futs[i])
		switch {
		case err == nil:
			p.seq = ack.Sequence
		case isPermanent(err):
			w.failPublish(ctx)(p, err)
		default:
			refused, refusal = append(refused, p), err
		}
	}
	if !w.hold(ctx, refused, refusal, func(actx context.Context, p *pending) error {
		ack, err := w.h.JS.PublishMsg(actx, p.out)
		if err == nil {
			p.seq = ack.Sequence
		}
		return err
	}, w.failPublish(ctx)) {
		return
	}
	// The index entries, pipelined and create-only; one that exists already is merged in order.
	ready = slices.DeleteFunc(ready, func(p *pending) bool { return p.done })
	for i, p := range ready {
		futs[i], _ = w.h.JS.PublishMsgAsync(natsjs.StateMsg(p.id, p.queued()))
	}
	refused, refusal = nil, nil
	for i, p := range ready {
		_, err := waitAck(ctx, futs[i])
		if err != nil && natsjs.IsConflict(err) {
			err = w.indexQueued(ctx, p)
		}
		if err != nil {
			refused, refusal = append(refused, p), err
		}
	}
	if !w.hold(ctx, refused, refusal, w.indexQueued, func(p *pending, err error) {
		w.log.Error("index queued state", "id", p.id, "err", err)
	}) {
		return
	}
	for _, p := range ready {
		w.m.outcomes.WithLabelValues(p.queue).Inc()
		w.m.lag.Observe(time.Since(p.arrived).Seconds())
		if err := p.in.Ack(); err != nil {
			// The item is published with its Nats-Msg-Id and indexed: a redelivery finds it in the
			// index and only acknowledges, so nothing is doubled.
			w.log.Warn("ack inbound", "id", p.id, "err", err)
		}
	}
}

// failPublish dead-letters an item whose publish failed for good (e.g. too large).
func (w *Worker) failPublish(ctx context.Context) func(*pending, error) {
	return func(p *pending, err error) {
		w.fail(ctx, p.in, p, fmt.Errorf("%w: publish triaged: %v", retry.ErrPermanent, err))
		p.done = true
	}
}

func waitAck(ctx context.Context, f jetstream.PubAckFuture) (*jetstream.PubAck, error) {
	if f == nil {
		return nil, nats.ErrConnectionClosed
	}
	select {
	case ack := <-f.Ok():
		return ack, nil
	case err := <-f.Err():
		return nil, err
	case <-ctx.Done():
		// Stopping: the write may still land; the message is handed back and its redelivery finds
		// the item (same Nats-Msg-Id) or the index entry.
		return nil, ctx.Err()
	case <-time.After(opTimeout):
		return nil, context.DeadlineExceeded
	}
}

func (p *pending) queued() natsjs.RequestState {
	return natsjs.RequestState{State: natsjs.StateQueued, Queue: p.queue, InboundSeq: p.md.Sequence.Stream, TriagedSeq: p.seq}
}

// indexQueued records that the request waits in its queue, in order with what agents did: an entry
// that already names this item (or a later one: the item was re-routed) only gains what it lacks.
func (w *Worker) indexQueued(ctx context.Context, p *pending) error {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	defer cancel()
	want := p.queued()
	_, err := natsjs.UpdateState(actx, w.h.Requests, p.id, func(st *natsjs.RequestState) error {
		if st.TriagedSeq >= want.TriagedSeq && st.State != natsjs.StateReceived {
			if st.InboundSeq != 0 {
				return natsjs.ErrUnchanged
			}
			st.InboundSeq = want.InboundSeq
			return nil
		}
		*st = want
		return nil
	})
	return err
}

// hold keeps messages whose write JetStream refused (store full, disk full, no quorum, timeouts)
// and retries try on each until it succeeds: the stage pauses meanwhile (no loop fetches new work),
// Health reports the refusal, and the messages are reported in progress so JetStream does not hand
// them to another worker. It reports false when ctx ended first: the messages still held are then
// handed back at once for redelivery (none is lost; the refusal never counts as a failed attempt).
// A permanent error (see isPermanent) ends the retries of that message with onPermanent.
func (w *Worker) hold(ctx context.Context, held []*pending, cause error, try func(context.Context, *pending) error, onPermanent func(*pending, error)) bool {
	if len(held) == 0 {
		return true
	}
	w.pause(cause, len(held))
	n := len(held)
	defer func() { w.unpause(n) }()
	bo := retry.Policy{Initial: 50 * time.Millisecond, Max: w.o.RetryWait, Jitter: 0.5}.Start()
	reported := time.Now()
	for len(held) > 0 {
		if ctx.Err() != nil {
			for _, p := range held {
				_ = p.in.Nak()
				p.done = true
			}
			w.log.Warn("stopping with messages JetStream refused; handed back for redelivery", "messages", len(held), "reason", cause)
			return false
		}
		bo.Wait(ctx)
		if time.Since(reported) > w.o.AckWait/3 {
			for _, p := range held {
				_ = p.in.InProgress()
			}
			reported = time.Now()
		}
		rest := held[:0]
		for _, p := range held {
			actx, cancel := context.WithTimeout(ctx, opTimeout)
			err := try(actx, p)
			cancel()
			switch {
			case err == nil:
			case isPermanent(err):
				onPermanent(p, err)
			default:
				rest, cause = append(rest, p), err
				w.setReason(err)
			}
		}
		held = rest
	}
	w.log.Info("JetStream accepts writes again; triage resumed")
	return true
}

func (w *Worker) pause(cause error, n int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.holders == 0 {
		w.since, w.resume = time.Now(), make(chan struct{})
		w.log.Error("JetStream refused the triage stage's writes; pausing and keeping the messages", "err", cause, "messages", n)
	}
	w.holders++
	w.reason = reason(cause)
	w.m.held.Add(float64(n))
}

func (w *Worker) unpause(n int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.holders--
	w.m.held.Sub(float64(n))
	if w.holders == 0 {
		close(w.resume)
		w.reason = ""
	}
}

func (w *Worker) setReason(err error) {
	w.mu.Lock()
	w.reason = reason(err)
	w.mu.Unlock()
}

// waitResumed blocks while the stage is paused; false when ctx ended.
func (w *Worker) waitResumed(ctx context.Context) bool {
	w.mu.Lock()
	ch := w.resume
	paused := w.holders > 0
	w.mu.Unlock()
	if !paused {
		return true
	}
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		return false
	}
}

// reason is JetStream's own description of a refusal, without the client's wrapping.
func reason(err error) string {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.Description != "" {
		return apiErr.Description
	}
	return err.Error()
}

// isPermanent reports publish errors no retry can fix.
func isPermanent(err error) bool {
	if errors.Is(err, nats.ErrMaxPayload) || errors.Is(err, nats.ErrBadSubject) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeBadRequest
}

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

// prepare decides one message. A redelivered (or spare-lane) message whose request the index already shows triaged
// gets p.seq set and nothing to publish: the index is the stage's durable record, which keeps a
// redelivery from doubling an item even after the duplicate window of its Nats-Msg-Id has passed
// (a long outage, a full store).
func (w *Worker) prepare(ctx context.Context, m jetstream.Msg) (p *pending, err error) {
	md, err := m.Metadata()
	if err != nil {
		return nil, fmt.Errorf("%w: metadata: %v", retry.ErrPermanent, err)
	}
	p = &pending{in: m, md: md, arrived: md.Timestamp}
	var req channels.Request
	if err := json.Unmarshal(m.Data(), &req); err != nil {
		return p, fmt.Errorf("%w: decode request: %v", retry.ErrPermanent, err)
	}
	p.id = req.ID
	if err := req.Validate(); err != nil {
		return p, fmt.Errorf("%w: %v", retry.ErrPermanent, err)
	}
	// A request the spare lane took (CAU_INBOUND sourced it) may be here a second time when its
	// first publish landed too and the two arrived further apart than the duplicate window: the
	// index decides, as for a redelivery.
	if md.NumDelivered > 1 || natsjs.FromSpare(m.Headers()) {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
		st, _, err := natsjs.GetState(actx, w.h.Requests, req.ID)
		cancel()
		if err == nil && st.TriagedSeq > 0 {
			p.seq, p.queue = st.TriagedSeq, st.Queue
			return p, nil
		}
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("triage engine panic: %v", r)
		}
	}()
	t, followed := w.followup(&req)
	if !followed {
		start := time.Now()
		t = w.o.Decide(triage.Input{Subject: req.Subject, Text: req.Text, Channel: req.Channel, Attachments: req.AttachmentText(maxAttachmentText)})
		w.m.decide.Observe(time.Since(start).Seconds())
	}
	if !validOutcome(t.Outcome) {
		return p, fmt.Errorf("triage engine returned outcome %q", t.Outcome)
	}
	now := time.Now().UTC()
	body, err := itemJSON(m.Data(), t, now)
	if err != nil {
		return p, fmt.Errorf("%w: encode item: %v", retry.ErrPermanent, err)
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

// fail hands a message that could not be processed back for another delivery, or dead-letters it
// when the error is permanent or this was its last allowed attempt. A dead letter JetStream refuses
// is kept in hand and retried like any refused write (hold): the message is never dropped.
func (w *Worker) fail(ctx context.Context, m jetstream.Msg, p *pending, cause error) {
	deliveries := uint64(0)
	if p != nil && p.md != nil {
		deliveries = p.md.NumDelivered
	}
	if !errors.Is(cause, retry.ErrPermanent) && deliveries < uint64(w.o.MaxDeliver) {
		w.m.retries.Inc()
		w.log.Warn("triage failed, will retry", "err", cause, "delivery", deliveries)
		_ = m.NakWithDelay(time.Duration(deliveries) * time.Second)
		return
	}
	if p == nil {
		p = &pending{in: m}
	}
	try := func(actx context.Context, p *pending) error { return w.deadLetter(actx, p, cause) }
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	err := try(actx, p)
	cancel()
	if err != nil && !w.hold(ctx, []*pending{p}, err, try, func(p *pending, err error) {
		w.log.Error("dead letter refused for good; the message stays in CAU_INBOUND", "err", err, "cause", cause)
		p.done = true
	}) {
		return
	}
	if p.done {
		_ = m.NakWithDelay(time.Minute)
		return
	}
	w.m.dead.Inc()
	w.log.Error("triage dead-lettered a message", "reason", cause, "subject", m.Subject(), "deliveries", deliveries)
	_ = m.Term()
}

// deadLetter writes the message and the reason onto cau.dlq.triage and marks the request dead in
// the index (unless it was triaged after all).
func (w *Worker) deadLetter(ctx context.Context, p *pending, cause error) error {
	if err := deadletter.Publish(ctx, w.h.JS, deadletter.FromMsg(deadletter.StageTriage, p.in, cause)); err != nil {
		return err
	}
	var seq uint64
	if p.md != nil {
		seq = p.md.Sequence.Stream
	}
	if p.id == "" {
		return nil
	}
	_, err := natsjs.UpdateState(ctx, w.h.Requests, p.id, func(st *natsjs.RequestState) error {
		if st.TriagedSeq > 0 || st.State == natsjs.StateDead {
			return natsjs.ErrUnchanged
		}
		*st = natsjs.RequestState{State: natsjs.StateDead, InboundSeq: seq, Reason: cause.Error()}
		return nil
	})
	return err
}
