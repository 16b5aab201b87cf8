package audit

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/retry"
)

// RecorderOptions configures a Recorder. Zero values are documented defaults.
type RecorderOptions struct {
	// Wait bounds how long Record waits for JetStream's ack before it hands the event to the
	// background retry and returns; 0 means 2 s.
	Wait time.Duration
	// Buffer is how many events may wait for a retry; 0 means 10000. Past it an event is dropped,
	// logged in full at error level and counted (caud_audit_dropped_total).
	Buffer int
	// RetryMin and RetryMax bound the backoff between retries of one event; 0 means 200 ms and 30 s.
	RetryMin, RetryMax time.Duration
	// Now is the clock of events recorded without a time; nil means time.Now.
	Now        func() time.Time
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Recorder publishes the agents' actions onto CAU_AUDIT. Record never fails and never blocks the
// caller for more than Wait: an event JetStream did not acknowledge in time is retried in the
// background (Run) with its Nats-Msg-Id, so it lands once. A nil *Recorder records nothing, which lets
// packages take an optional one. Safe for concurrent use.
type Recorder struct {
	js    jetstream.JetStream
	o     RecorderOptions
	log   *slog.Logger
	retry chan Event
	m     recorderMetrics

	mu      sync.Mutex
	stopped bool
}

type recorderMetrics struct {
	recorded *prometheus.CounterVec
	retried  prometheus.Counter
	dropped  prometheus.Counter
}

// RecorderMetrics are the Recorder's counters (for tests and dashboards).
type RecorderMetrics struct {
	Recorded         *prometheus.CounterVec
	Retried, Dropped prometheus.Counter
}

// Metrics exposes the Recorder's counters.
func (r *Recorder) Metrics() RecorderMetrics {
	return RecorderMetrics{Recorded: r.m.recorded, Retried: r.m.retried, Dropped: r.m.dropped}
}

// NewRecorder returns a Recorder publishing through js; call Run to retry what could not be
// published at once.
func NewRecorder(js jetstream.JetStream, o RecorderOptions) *Recorder {
	if o.Wait == 0 {
		o.Wait = 2 * time.Second
	}
	if o.Buffer == 0 {
		o.Buffer = 10000
	}
	if o.RetryMin == 0 {
		o.RetryMin = 200 * time.Millisecond
	}
	if o.RetryMax == 0 {
		o.RetryMax = 30 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	log := channels.OrDiscard(o.Logger)
	r := &Recorder{js: js, o: o, log: log, retry: make(chan Event, o.Buffer)}
	r.m = recorderMetrics{
		recorded: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "caud_audit_recorded_total", Help: "Agents' actions recorded on CAU_AUDIT, per event type."}, []string{"type"}),
		retried:  prometheus.NewCounter(prometheus.CounterOpts{Name: "caud_audit_retries_total", Help: "Audit events that JetStream did not acknowledge at once and were retried."}),
		dropped:  prometheus.NewCounter(prometheus.CounterOpts{Name: "caud_audit_dropped_total", Help: "Audit events given up on (retry buffer full, or still unpublished at stop); each is logged in full."}),
	}
	if o.Registerer != nil {
		o.Registerer.MustRegister(r.m.recorded, r.m.retried, r.m.dropped)
	}
	return r
}

// Record publishes e. It fills in e.At (now) when zero and replaces e.Agent by the context's actor
// (WithActor) when there is one. It returns once JetStream acknowledged the event or, at most after
// Wait, once the event is queued for retry (or, when the queue is full, dropped and logged).
func (r *Recorder) Record(ctx context.Context, e Event) {
	if r == nil {
		return
	}
	if a := Actor(ctx); a != "" {
		e.Agent = a
	}
	if e.At.IsZero() {
		e.At = r.o.Now()
	}
	m, err := message(e)
	if err != nil {
		r.log.Error("audit event is invalid, not recorded", "err", err)
		r.m.dropped.Inc()
		return
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.o.Wait)
	_, err = r.js.PublishMsg(pctx, m)
	cancel()
	if err == nil {
		r.m.recorded.WithLabelValues(e.Type).Inc()
		return
	}
	r.m.retried.Inc()
	r.log.Warn("audit event not acknowledged, will retry", "event", e.ID, "request", e.RequestID, "err", err)
	r.enqueue(e)
}

func (r *Recorder) enqueue(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.stopped {
		select {
		case r.retry <- e:
			return
		default:
		}
	}
	r.drop(e, "retry buffer full or recorder stopped")
}

func (r *Recorder) drop(e Event, why string) {
	r.m.dropped.Inc()
	b, _ := json.Marshal(e)
	r.log.Error("audit event dropped", "why", why, "event", string(b))
}

// Run retries queued events until ctx ends, each with exponential backoff between RetryMin and
// RetryMax. When ctx ends it makes one last bounded attempt (Wait) for each event still queued,
// drops and logs what remains, and returns nil.
func (r *Recorder) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		select {
		case e := <-r.retry:
			r.publishRetrying(ctx, e)
		case <-ctx.Done():
		}
	}
	r.mu.Lock()
	r.stopped = true
	r.mu.Unlock()
	for {
		select {
		case e := <-r.retry:
			pctx, cancel := context.WithTimeout(context.Background(), r.o.Wait)
			err := r.publishOnce(pctx, e)
			cancel()
			if err != nil {
				r.drop(e, "not published before stop: "+err.Error())
			}
		default:
			return nil
		}
	}
}

func (r *Recorder) publishOnce(ctx context.Context, e Event) error {
	m, err := message(e)
	if err != nil {
		return err
	}
	if _, err := r.js.PublishMsg(ctx, m); err != nil {
		return err
	}
	r.m.recorded.WithLabelValues(e.Type).Inc()
	return nil
}

// publishRetrying publishes e until it succeeds or ctx ends (then e goes back to the queue for the
// final flush of Run).
func (r *Recorder) publishRetrying(ctx context.Context, e Event) {
	_, err := retry.Do(ctx, retry.Policy{Initial: r.o.RetryMin, Max: r.o.RetryMax}, func(ctx context.Context) (struct{}, error) {
		pctx, cancel := context.WithTimeout(ctx, r.o.Wait)
		defer cancel()
		return struct{}{}, r.publishOnce(pctx, e)
	}, func(_ int, err error, wait time.Duration) {
		r.log.Warn("audit event retry failed", "event", e.ID, "err", err, "next_in", wait)
	})
	if err != nil {
		r.mu.Lock()
		select {
		case r.retry <- e:
		default:
			r.drop(e, "retry buffer full at stop")
		}
		r.mu.Unlock()
	}
}
