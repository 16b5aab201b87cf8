package natsjs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ipn-cgsi/caud/channels"
)

// WriteProbe tells whether an external JetStream still writes, for /readyz. caud cannot restart a
// nats-server it does not run, and after a write fails for lack of disk space nats-server v2.15
// never writes to that stream again by itself: publishes get no answer until the server restarts
// (where it logged "JetStream out of space, will be DISABLED", a configuration reload is enough).
// So the probe writes one small entry every Interval and, after Failures misses in a row, reports
// what the operator must do. caud itself needs nothing: its publishers and consumers retry and
// resume once the server writes again. Safe for concurrent use.
type WriteProbe struct {
	o   WriteProbeOptions
	log *slog.Logger

	mu     sync.Mutex
	misses int
	last   error
	since  time.Time
}

// WriteProbeOptions configures a WriteProbe. Zero values are documented defaults.
type WriteProbeOptions struct {
	// KV is the bucket written to (caud uses cau_state) and Key the entry, one per process:
	// ProbeKey(instance).
	KV  jetstream.KeyValue
	Key string
	// Interval between writes; 0 means 5 s. Timeout bounds one write; 0 means 3 s.
	Interval, Timeout time.Duration
	// Failures is how many writes in a row must fail before Health reports it; 0 means 2 (one
	// miss is what a stream leader election costs).
	Failures int
	Logger   *slog.Logger
}

// ProbeKey is the cau_state entry a process's WriteProbe writes ("probe.<instance>").
func ProbeKey(instance string) string { return "probe." + instance }

// NewWriteProbe returns a probe; run it with Run.
func NewWriteProbe(o WriteProbeOptions) *WriteProbe {
	o.Interval = channels.OrDefault(o.Interval, 5*time.Second)
	o.Timeout = channels.OrDefault(o.Timeout, 3*time.Second)
	o.Failures = channels.OrDefault(o.Failures, 2)
	return &WriteProbe{o: o, log: channels.OrDiscard(o.Logger)}
}

// Run writes until ctx ends.
func (p *WriteProbe) Run(ctx context.Context) error {
	t := time.NewTicker(p.o.Interval)
	defer t.Stop()
	for {
		p.Probe(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Probe writes once and records the outcome.
func (p *WriteProbe) Probe(ctx context.Context) {
	wctx, cancel := context.WithTimeout(ctx, p.o.Timeout)
	_, err := p.o.KV.Put(wctx, p.o.Key, []byte(time.Now().UTC().Format(time.RFC3339Nano)))
	cancel()
	if ctx.Err() != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil {
		if p.misses >= p.o.Failures {
			p.log.Info("JetStream writes again", "stopped_for", time.Since(p.since).Round(time.Millisecond))
		}
		p.misses, p.last = 0, nil
		return
	}
	if p.misses == 0 {
		p.since = time.Now()
	}
	p.misses++
	p.last = err
	if p.misses == p.o.Failures {
		p.log.Error("JetStream accepts no writes", "detail", p.detailLocked())
	}
}

// Health reports whether the last writes went through.
func (p *WriteProbe) Health(context.Context) []channels.Health {
	p.mu.Lock()
	defer p.mu.Unlock()
	h := channels.Health{Name: "jetstream writes", OK: true, Detail: "writes are acknowledged"}
	if p.misses >= p.o.Failures {
		h.OK, h.Since, h.Detail = false, p.since, p.detailLocked()
	}
	return []channels.Health{h}
}

func (p *WriteProbe) detailLocked() string {
	if reason, ok := ResourceRefusal(p.last); ok {
		return fmt.Sprintf("JetStream refuses writes: %s; requests wait in their sources, and caud resumes by itself once the store has room", reason)
	}
	d := fmt.Sprintf("JetStream acknowledged no write for %s (%d tries, last: %v)", time.Since(p.since).Round(time.Second), p.misses, p.last)
	if strings.Contains(p.last.Error(), "no space") || unanswered(p.last) {
		d += `. If a NATS server's disk is full: free space there, then restart that nats-server (or, where it logged "will be DISABLED", reload its configuration: nats-server --signal reload); nats-server does not write to a stream again by itself after a failed write. Requests wait in their sources meanwhile, and caud resumes on its own once the server writes`
	}
	return d
}

// unanswered reports whether err means the write got no answer from JetStream.
func unanswered(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders)
}
