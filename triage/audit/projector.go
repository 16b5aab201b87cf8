package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/deadletter"
	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/channels/retry"
)

// Source names (label "source" of the projector's metrics).
const (
	SourceInbound = "inbound"
	SourceTriaged = "triaged"
	SourceDLQ     = "dlq"
	SourceNotify  = "notify"
)

// headerReroutedFrom marks a triaged item an agent re-routed; the Recorder has the richer event.
const headerReroutedFrom = "Cau-Rerouted-From"

// ProjectorOptions configures a Projector. Zero values are documented defaults.
type ProjectorOptions struct {
	// Handles are the pipeline's streams (required).
	Handles *natsjs.Handles
	// NotifyBucket is the notifier's KV bucket (triage/notify's KVNotify) whose sent.<id>.<kind>
	// keys become "notified" events; "" means notices are not projected.
	NotifyBucket string
	// Batch is how many source messages are fetched and published together; 0 means 256.
	Batch int
	// AckWait is how long a batch may take before JetStream redelivers it; 0 means 30 s.
	AckWait    time.Duration
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Projector turns what the pipeline's streams record into audit events: durable consumers named
// "audit" on CAU_INBOUND, CAU_TRIAGED, CAU_DLQ and the notifier's KV bucket, shared by every replica
// that runs one. A source message is acknowledged only after its events are, so an outage delays the
// record but loses nothing; redeliveries publish the same Nats-Msg-Id and are dropped. Messages that
// carry no request (foreign or damaged) are acknowledged and counted as skipped.
type Projector struct {
	o       ProjectorOptions
	log     *slog.Logger
	sources []source
	m       projectorMetrics
}

type source struct {
	name string
	cons jetstream.Consumer
	// events maps one source message to its audit events (none to skip it).
	events func(m jetstream.Msg, md *jetstream.MsgMetadata) []Event
}

type projectorMetrics struct {
	projected *prometheus.CounterVec
	skipped   *prometheus.CounterVec
	errors    *prometheus.CounterVec
}

// ProjectorMetrics are the Projector's counters, per source (for tests and dashboards).
type ProjectorMetrics struct {
	Projected, Skipped, Errors *prometheus.CounterVec
}

// Metrics exposes the Projector's counters.
func (p *Projector) Metrics() ProjectorMetrics {
	return ProjectorMetrics{Projected: p.m.projected, Skipped: p.m.skipped, Errors: p.m.errors}
}

// NewProjector creates (or updates) the durable consumers. The notifier's bucket, when named, must
// exist (the notifier creates it).
func NewProjector(ctx context.Context, o ProjectorOptions) (*Projector, error) {
	if o.Handles == nil {
		return nil, errors.New("audit projector: no handles")
	}
	if o.Batch == 0 {
		o.Batch = 256
	}
	if o.AckWait == 0 {
		o.AckWait = 30 * time.Second
	}
	log := channels.OrDiscard(o.Logger)
	p := &Projector{o: o, log: log}
	h := o.Handles
	add := func(name string, s jetstream.Stream, filter string, fn func(jetstream.Msg, *jetstream.MsgMetadata) []Event) error {
		c, err := natsjs.EnsureConsumer(ctx, s, jetstream.ConsumerConfig{
			Durable:       Consumer,
			Description:   "audit projector (shared by every caud replica)",
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       o.AckWait,
			MaxDeliver:    -1, // never skip: an event waits until CAU_AUDIT takes it
			MaxAckPending: max(4*o.Batch, 1000),
			FilterSubject: filter,
			DeliverPolicy: jetstream.DeliverAllPolicy,
		}, natsjs.Topology{Logger: log})
		if err != nil {
			return fmt.Errorf("audit projector %s consumer: %w", name, err)
		}
		p.sources = append(p.sources, source{name: name, cons: c, events: fn})
		return nil
	}
	if err := add(SourceInbound, h.Inbound, natsjs.SubjectInboundPrefix+">", receivedEvents); err != nil {
		return nil, err
	}
	if err := add(SourceTriaged, h.Triaged, natsjs.SubjectTriagedPrefix+">", triagedEvents); err != nil {
		return nil, err
	}
	if err := add(SourceDLQ, h.DLQ, natsjs.SubjectDLQPrefix+">", deadEvents); err != nil {
		return nil, err
	}
	if o.NotifyBucket != "" {
		s, err := h.JS.Stream(ctx, "KV_"+o.NotifyBucket)
		if err != nil {
			return nil, fmt.Errorf("audit projector: notify bucket %s: %w", o.NotifyBucket, err)
		}
		if err := add(SourceNotify, s, "$KV."+o.NotifyBucket+".sent.>", notifiedEvents); err != nil {
			return nil, err
		}
	}
	p.m = projectorMetrics{
		projected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "caud_audit_projected_total", Help: "Audit events derived from the pipeline's streams, per source."}, []string{"source"}),
		skipped:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "caud_audit_skipped_total", Help: "Source messages that name no request (nothing to record), per source."}, []string{"source"}),
		errors:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "caud_audit_projector_errors_total", Help: "Failed fetches or publishes of the audit projector (retried), per source."}, []string{"source"}),
	}
	for _, s := range p.sources {
		p.m.projected.WithLabelValues(s.name)
		p.m.errors.WithLabelValues(s.name)
	}
	if o.Registerer != nil {
		o.Registerer.MustRegister(p.m.projected, p.m.skipped, p.m.errors, &lagCollector{p: p})
	}
	return p, nil
}

// lagCollector exports, at scrape time, how many source messages wait for the projector: the audit
// trail's lag behind the pipeline.
type lagCollector struct{ p *Projector }

var descPending = prometheus.NewDesc("caud_audit_projector_pending", "Source messages not yet projected onto CAU_AUDIT, per source.", []string{"source"}, nil)

func (c *lagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descPending }

func (c *lagCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for _, s := range c.p.sources {
		info, err := s.cons.Info(ctx)
		if err != nil {
			continue
		}
		ch <- prometheus.MustNewConstMetric(descPending, prometheus.GaugeValue, float64(info.NumPending+uint64(info.NumAckPending)), s.name)
	}
}

// Run projects every source until ctx ends, then finishes the batches in hand and returns nil.
func (p *Projector) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, s := range p.sources {
		wg.Go(func() { p.loop(ctx, s) })
	}
	wg.Wait()
	return nil
}

func (p *Projector) loop(ctx context.Context, s source) {
	b := retry.Policy{Initial: 100 * time.Millisecond, Max: 5 * time.Second}.Start()
	for ctx.Err() == nil {
		msgs, err := natsjs.Fetch(s.cons, p.o.Batch, time.Second)
		if err == nil && len(msgs) > 0 {
			bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.o.AckWait)
			err = p.project(bctx, s, msgs)
			cancel()
		}
		if err == nil {
			b.Reset()
			continue
		}
		if ctx.Err() != nil {
			return
		}
		p.m.errors.WithLabelValues(s.name).Inc()
		p.log.Warn("audit projector", "source", s.name, "err", err)
		b.Wait(ctx)
	}
}

// project publishes the events of a batch pipelined and acknowledges each source message whose
// events were all acknowledged; the others are handed back for redelivery.
func (p *Projector) project(ctx context.Context, s source, msgs []jetstream.Msg) error {
	js := p.o.Handles.JS
	type job struct {
		m    jetstream.Msg
		futs []jetstream.PubAckFuture
		err  error
	}
	jobs := make([]job, 0, len(msgs))
	for _, m := range msgs {
		md, err := m.Metadata()
		if err != nil {
			_ = m.Ack() // not a JetStream message: nothing to project, nothing to redeliver
			continue
		}
		evs := s.events(m, md)
		if len(evs) == 0 {
			p.m.skipped.WithLabelValues(s.name).Inc()
			_ = m.Ack()
			continue
		}
		j := job{m: m}
		for _, e := range evs {
			out, err := message(e)
			if err != nil {
				p.log.Warn("audit projector: invalid event skipped", "source", s.name, "err", err)
				continue
			}
			f, err := js.PublishMsgAsync(out)
			if err != nil {
				j.err = err
				break
			}
			j.futs = append(j.futs, f)
		}
		jobs = append(jobs, j)
	}
	var firstErr error
	for _, j := range jobs {
		err := j.err
		for _, f := range j.futs {
			select {
			case <-f.Ok():
			case e := <-f.Err():
				err = e
			case <-ctx.Done():
				err = ctx.Err()
			}
			if err != nil {
				break
			}
		}
		if err != nil {
			firstErr = cmp(firstErr, err)
			_ = j.m.NakWithDelay(time.Second)
			continue
		}
		p.m.projected.WithLabelValues(s.name).Add(float64(len(j.futs)))
		if err := j.m.Ack(); err != nil {
			p.log.Warn("audit projector: ack", "source", s.name, "err", err)
		}
	}
	return firstErr
}

func cmp(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// receivedEvents maps a request on cau.inbound.* to its "received" event, or "replayed" when an
// operator replayed it from the dead letters.
func receivedEvents(m jetstream.Msg, md *jetstream.MsgMetadata) []Event {
	var r struct {
		ID         string    `json:"id"`
		Channel    string    `json:"channel"`
		ReceivedAt time.Time `json:"received_at"`
		Source     struct {
			Agent string `json:"agent"`
		} `json:"source"`
	}
	if json.Unmarshal(m.Data(), &r) != nil || !validID(r.ID) {
		return nil
	}
	at := r.ReceivedAt
	if at.IsZero() {
		at = md.Timestamp
	}
	e := Event{ID: Received + ":" + r.ID, RequestID: r.ID, Type: Received, At: at, Channel: r.Channel, Source: m.Headers().Get("ce-source"), Agent: r.Source.Agent}
	if m.Headers().Get(deadletter.HeaderReplayedOf) != "" {
		e.ID, e.Type, e.At = Replayed+":"+r.ID+":"+strconv.FormatUint(md.Sequence.Stream, 10), Replayed, md.Timestamp
	}
	return []Event{e}
}

// triagedEvents maps an item on cau.triaged.* to its "triaged" event; re-routed items are the
// Recorder's.
func triagedEvents(m jetstream.Msg, md *jetstream.MsgMetadata) []Event {
	if m.Headers().Get(headerReroutedFrom) != "" {
		return nil
	}
	var it struct {
		Request struct {
			ID string `json:"id"`
		} `json:"request"`
		Triage struct {
			Outcome string `json:"outcome"`
			Kind    string `json:"kind"`
			Service *struct {
				ID    string `json:"id"`
				Group string `json:"group"`
			} `json:"service"`
			Confidence float64 `json:"confidence"`
			By         string  `json:"by"`
		} `json:"triage"`
		TriagedAt time.Time `json:"triaged_at"`
	}
	if json.Unmarshal(m.Data(), &it) != nil || !validID(it.Request.ID) {
		return nil
	}
	at := it.TriagedAt
	if at.IsZero() {
		at = md.Timestamp
	}
	e := Event{
		ID: Triaged + ":" + it.Request.ID + ":" + strconv.FormatUint(md.Sequence.Stream, 10), RequestID: it.Request.ID,
		Type: Triaged, At: at, Outcome: it.Triage.Outcome, Kind: it.Triage.Kind, Confidence: it.Triage.Confidence,
		By: it.Triage.By, Queue: strings.TrimPrefix(m.Subject(), natsjs.SubjectTriagedPrefix),
	}
	if s := it.Triage.Service; s != nil {
		e.Service, e.Group = s.ID, s.Group
	}
	return []Event{e}
}

// deadEvents maps a dead letter to its "dead" event; the request id is the CloudEvents id of a
// dead-lettered request, or the request_id of a notice.
func deadEvents(m jetstream.Msg, md *jetstream.MsgMetadata) []Event {
	id := m.Headers().Get("ce-id")
	if !validID(id) {
		var body struct {
			ID        string `json:"id"`
			RequestID string `json:"request_id"`
			Request   struct {
				ID string `json:"id"`
			} `json:"request"`
		}
		_ = json.Unmarshal(m.Data(), &body)
		for _, c := range []string{body.RequestID, body.Request.ID, body.ID} {
			if validID(c) {
				id = c
				break
			}
		}
	}
	if !validID(id) {
		return nil
	}
	stage := m.Headers().Get(deadletter.HeaderStage)
	if stage == "" {
		stage = strings.TrimPrefix(m.Subject(), natsjs.SubjectDLQPrefix)
	}
	return []Event{{
		ID: Dead + ":" + strconv.FormatUint(md.Sequence.Stream, 10), RequestID: id, Type: Dead, At: md.Timestamp,
		Stage: stage, Reason: m.Headers().Get(deadletter.HeaderReason),
	}}
}

// notifiedEvents maps a sent.<request id>.<kind> record of the notifier to a "notified" event.
func notifiedEvents(m jetstream.Msg, md *jetstream.MsgMetadata) []Event {
	// $KV.<bucket>.sent.<request id>.<kind>
	parts := strings.Split(m.Subject(), ".")
	if len(parts) != 5 || parts[2] != "sent" || !validID(parts[3]) || len(m.Data()) == 0 {
		return nil
	}
	var s struct {
		Channel string    `json:"channel"`
		To      string    `json:"to"`
		SentAt  time.Time `json:"sent_at"`
	}
	_ = json.Unmarshal(m.Data(), &s)
	at := s.SentAt
	if at.IsZero() {
		at = md.Timestamp
	}
	return []Event{{
		ID: Notified + ":" + parts[3] + ":" + parts[4], RequestID: parts[3], Type: Notified, At: at,
		Notice: parts[4], Channel: s.Channel, Recipient: s.To,
	}}
}
