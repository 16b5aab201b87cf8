package natsjs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/retry"
)

// CloudEvents types of caud's messages.
const (
	TypeRequest = "mx.ipn.cau.request.v1"
	TypeTriaged = "mx.ipn.cau.triaged.v1"
)

// SinkOptions configures a Sink. Zero values are documented defaults.
type SinkOptions struct {
	// AttemptTimeout bounds one publish attempt; 0 means 2 s (an ack lost while a stream leader
	// changes is retried soon: the Nats-Msg-Id makes the retry safe). Publish retries until its ctx
	// ends.
	AttemptTimeout time.Duration
	// MaxBackoff caps the wait between attempts; 0 means 500 ms.
	MaxBackoff time.Duration
	// FailoverAfter is how long an attempt waits for CAU_INBOUND's ack before it publishes the
	// same message (same Nats-Msg-Id) to the spare lane CAU_INBOUND_SPARE as well, when the
	// topology has one; the first ack wins. 0 means 750 ms. A refusal without a leader (no
	// responders) goes to the spare at once. See lanes.go.
	FailoverAfter time.Duration
	Logger        *slog.Logger
	Registerer    prometheus.Registerer
}

// Sink implements channels.Sink on JetStream. Safe for concurrent use.
type Sink struct {
	h    *Handles
	opts SinkOptions
	log  *slog.Logger
	m    *SinkMetrics

	mu          sync.Mutex
	refusedAt   time.Time // last time JetStream refused a write for lack of resources
	refusedFrom time.Time // start of the current run of refusals
	refusal     string
}

// refusalMemory is how long after its last refusal Health still reports the store full. Health
// clears by itself, so a replica that a load balancer stopped sending work to (it was unready) gets
// work again to find out, within seconds of space returning.
const refusalMemory = 2 * time.Second

// Health reports the intake's view of JetStream: not ready while it refuses writes for lack of
// resources (store full, disk full), with its own reason.
func (s *Sink) Health(context.Context) []channels.Health {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := channels.Health{Name: "intake store", OK: true, Detail: "accepting requests"}
	if !s.refusedAt.IsZero() && time.Since(s.refusedAt) < refusalMemory {
		h.OK, h.Since = false, s.refusedFrom
		h.Detail = "JetStream refuses new requests: " + s.refusal
	}
	return []channels.Health{h}
}

// NoteRefusal records err when it is JetStream refusing a write for lack of resources, so Health
// reports it; other errors are ignored. The sink calls it for its own publishes; an adapter calls it
// for its other writes to JetStream (e.g. the desk's idempotency records).
func (s *Sink) NoteRefusal(err error) {
	reason, ok := ResourceRefusal(err)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if s.refusedAt.IsZero() || now.Sub(s.refusedAt) >= refusalMemory {
		s.refusedFrom = now
		s.log.Error("JetStream refuses new requests; sources keep them until it has space", "reason", reason)
	}
	s.refusedAt, s.refusal = now, reason
}

// ResourceRefusal reports whether err is JetStream refusing a write for lack of resources (server
// or account storage limits, a full disk, a stream's limits with discard new), and its reason.
func ResourceRefusal(err error) (string, bool) {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return "", false
	}
	switch apiErr.ErrorCode {
	case 10023, 10002, 10028, 10047: // insufficient resources; account, memory, storage limits
		return apiErr.Description, true
	case 10077: // store failed: a full disk, or a stream's maximum bytes or messages
		if d := strings.ToLower(apiErr.Description); strings.Contains(d, "no space") || strings.Contains(d, "maximum") {
			return apiErr.Description, true
		}
	}
	return "", false
}

// SinkMetrics are the sink's per-channel counters and latency.
type SinkMetrics struct {
	Received, Published, Duplicates, Failed *prometheus.CounterVec
	// Spare counts requests the spare lane acknowledged (CAU_INBOUND did not in time).
	Spare   *prometheus.CounterVec
	Latency *prometheus.HistogramVec
}

// Metrics exposes the sink's collectors (for tests and load tools).
func (s *Sink) Metrics() *SinkMetrics { return s.m }

// NewSink returns a Sink over the topology h.
func NewSink(h *Handles, o SinkOptions) *Sink {
	if o.AttemptTimeout == 0 {
		o.AttemptTimeout = 2 * time.Second
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 500 * time.Millisecond
	}
	if o.FailoverAfter == 0 {
		o.FailoverAfter = DefaultFailoverAfter
	}
	log := channels.OrDiscard(o.Logger)
	m := &SinkMetrics{
		Received:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "caud_channel_received_total", Help: "Requests handed to the sink, per channel."}, []string{"channel"}),
		Published:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "caud_channel_published_total", Help: "Requests JetStream acknowledged, per channel (duplicates included)."}, []string{"channel"}),
		Duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "caud_channel_duplicates_total", Help: "Publishes JetStream recognised as duplicates by Nats-Msg-Id, per channel."}, []string{"channel"}),
		Failed:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "caud_channel_failed_total", Help: "Requests that could not be published, per channel."}, []string{"channel"}),
		Spare:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "caud_channel_spare_total", Help: "Requests the spare lane CAU_INBOUND_SPARE acknowledged because CAU_INBOUND did not in time (a leader lost), per channel."}, []string{"channel"}),
		Latency:    prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "caud_publish_seconds", Help: "Time from Publish to the JetStream ack, per channel.", Buckets: prometheus.ExponentialBuckets(0.0002, 2, 16)}, []string{"channel"}),
	}
	if o.Registerer != nil {
		o.Registerer.MustRegister(m.Received, m.Published, m.Duplicates, m.Failed, m.Spare, m.Latency)
	}
	return &Sink{h: h, opts: o, log: log, m: m}
}

// Publish archives the original, publishes the request with its Nats-Msg-Id and CloudEvents headers,
// and returns once JetStream acknowledged it. Transient failures are retried with backoff until ctx
// ends; invalid requests fail at once with an error wrapping channels.ErrInvalid.
func (s *Sink) Publish(ctx context.Context, sub channels.Submission) (channels.Receipt, error) {
	start := time.Now()
	s.m.Received.WithLabelValues(sub.Subject).Inc()
	rec, err := s.publish(ctx, sub)
	if err != nil {
		s.m.Failed.WithLabelValues(sub.Subject).Inc()
		return rec, err
	}
	s.m.Published.WithLabelValues(sub.Subject).Inc()
	if rec.Duplicate {
		s.m.Duplicates.WithLabelValues(sub.Subject).Inc()
	}
	if rec.Stream == StreamInboundSpare {
		s.m.Spare.WithLabelValues(sub.Subject).Inc()
	}
	s.m.Latency.WithLabelValues(sub.Subject).Observe(time.Since(start).Seconds())
	return rec, nil
}

func (s *Sink) publish(ctx context.Context, sub channels.Submission) (channels.Receipt, error) {
	req := sub.Request
	if req == nil {
		return channels.Receipt{}, fmt.Errorf("publish: %w: nil request", channels.ErrInvalid)
	}
	if sub.Subject == "" || strings.ContainsAny(sub.Subject, " *>") {
		return channels.Receipt{}, fmt.Errorf("publish: %w: bad subject token %q", channels.ErrInvalid, sub.Subject)
	}
	if sub.MsgID == "" {
		return channels.Receipt{}, fmt.Errorf("publish: %w: empty Nats-Msg-Id", channels.ErrInvalid)
	}
	if err := req.Validate(); err != nil {
		return channels.Receipt{}, fmt.Errorf("publish: %w", err)
	}
	if sub.Original != nil {
		typ := sub.OriginalType
		if typ == "" {
			typ = "application/octet-stream"
		}
		// Writing an original moves its bytes (up to tens of MiB): each attempt gets 5 s plus 1 s per MiB.
		archiveTimeout := max(s.opts.AttemptTimeout, 5*time.Second) + time.Duration(len(sub.Original)>>20)*time.Second
		obj, err := publishRetry(ctx, s, archiveTimeout, func(actx context.Context) (*channels.Object, error) {
			return s.Archive(actx, sub.Subject, typ, bytes.NewReader(sub.Original))
		})
		if err != nil {
			return channels.Receipt{}, fmt.Errorf("archive original: %w", err)
		}
		req.Original = obj
	}
	body, err := json.Marshal(req)
	if err != nil {
		return channels.Receipt{}, fmt.Errorf("publish: %w: encode: %v", retry.ErrPermanent, err)
	}
	msg := nats.NewMsg(SubjectInboundPrefix + sub.Subject)
	msg.Data = body
	SetCloudEvent(msg.Header, req.ID, sub.Source, TypeRequest, req.ReceivedAt)
	msg.Header.Set(jetstream.MsgIDHeader, sub.MsgID)
	ack, err := publishRetry(ctx, s, s.opts.AttemptTimeout, func(actx context.Context) (*jetstream.PubAck, error) {
		return s.publishLanes(actx, msg, sub.Subject)
	})
	if err != nil {
		return channels.Receipt{}, fmt.Errorf("publish %s: %w", msg.Subject, err)
	}
	// The note is written for CAU_INBOUND's sequence only; a request the spare took is indexed by
	// the triage stage once CAU_INBOUND has sourced it.
	if !ack.Duplicate && ack.Stream == StreamInbound {
		// Best effort and pipelined: the request is durable already; the index entry only lets
		// GET /api/v1/requests/{id} answer "received" before triage. It never overwrites a later state.
		if _, err := s.h.JS.PublishMsgAsync(ReceivedMsg(req.ID, ack.Sequence)); err != nil {
			s.log.Warn("index received state", "id", req.ID, "err", err)
		}
	}
	return channels.Receipt{Stream: ack.Stream, Sequence: ack.Sequence, Duplicate: ack.Duplicate}, nil
}

// SetCloudEvent sets the CloudEvents NATS binding headers (binary mode).
func SetCloudEvent(h nats.Header, id, source, typ string, t time.Time) {
	h.Set("ce-specversion", "1.0")
	h.Set("ce-id", id)
	h.Set("ce-source", source)
	h.Set("ce-type", typ)
	h.Set("ce-time", t.UTC().Format(time.RFC3339Nano))
	h.Set("content-type", "application/json")
}

// maxChunk is the largest object-store chunk written (1 MiB); larger originals take several.
const maxChunk = 1 << 20

// Archive stores r under "<prefix>/<sha256>" in cau_originals, skipping the write when the same
// content is already there.
func (s *Sink) Archive(ctx context.Context, prefix, contentType string, r io.Reader) (*channels.Object, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("archive: read: %w", err)
	}
	sum := sha256.Sum256(data)
	hexSum := hex.EncodeToString(sum[:])
	name := prefix + "/" + hexSum
	ref := &channels.Object{Object: name, SHA256: hexSum, Size: int64(len(data))}
	if info, err := s.h.Originals.GetInfo(ctx, name); err == nil && info.Size == uint64(len(data)) {
		return ref, nil
	}
	if len(data) <= maxChunk {
		if err := s.putSmall(ctx, name, contentType, sum[:], data); err != nil {
			return nil, fmt.Errorf("archive %s: %w", name, err)
		}
		return ref, nil
	}
	_, err = s.h.Originals.Put(ctx, jetstream.ObjectMeta{
		Name:    name,
		Headers: nats.Header{"Content-Type": []string{contentType}},
		Opts:    &jetstream.ObjectMetaOptions{ChunkSize: maxChunk},
	}, bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("archive %s: %w", name, err)
	}
	return ref, nil
}

// putSmall writes a one-chunk object in the object-store wire format (NATS ADR-20: the chunk on
// $O.<bucket>.C.<nuid>, then the object info on $O.<bucket>.M.<base64url name> with a subject
// rollup), pipelined on the shared connection. The library's Put does the same for any size, but
// opens and closes a reply subscription and looks the object up again on every call, which made
// archiving the costliest step of intake for originals of a few KiB. Objects read back through the
// library (digest checked), as the tests show.
func (s *Sink) putSmall(ctx context.Context, name, contentType string, sum, data []byte) error {
	id := nuid.Next()
	info := jetstream.ObjectInfo{
		ObjectMeta: jetstream.ObjectMeta{
			Name:    name,
			Headers: nats.Header{"Content-Type": []string{contentType}},
			Opts:    &jetstream.ObjectMetaOptions{ChunkSize: uint32(max(len(data), 1))},
		},
		Bucket: ObjectOriginals,
		NUID:   id,
		Size:   uint64(len(data)),
		Digest: "SHA-256=" + base64.URLEncoding.EncodeToString(sum),
	}
	var futures []jetstream.PubAckFuture
	if len(data) > 0 {
		info.Chunks = 1
		chunk := nats.NewMsg("$O." + ObjectOriginals + ".C." + id)
		chunk.Data = data
		f, err := s.h.JS.PublishMsgAsync(chunk)
		if err != nil {
			return err
		}
		futures = append(futures, f)
	}
	meta := nats.NewMsg("$O." + ObjectOriginals + ".M." + base64.URLEncoding.EncodeToString([]byte(name)))
	meta.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	var err error
	if meta.Data, err = json.Marshal(info); err != nil {
		return err
	}
	f, err := s.h.JS.PublishMsgAsync(meta)
	if err != nil {
		return err
	}
	futures = append(futures, f)
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// publishRetry runs fn with a per-attempt timeout until it succeeds, fails permanently, or ctx ends.
func publishRetry[T any](ctx context.Context, s *Sink, timeout time.Duration, fn func(context.Context) (T, error)) (T, error) {
	v, err := retry.Do(ctx, retry.Policy{Initial: 50 * time.Millisecond, Max: s.opts.MaxBackoff}, func(ctx context.Context) (T, error) {
		actx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		v, err := fn(actx)
		if err != nil && isPermanent(err) {
			return v, fmt.Errorf("%w: %v", retry.ErrPermanent, err)
		}
		if err != nil {
			s.NoteRefusal(err)
		}
		return v, err
	}, func(attempt int, err error, wait time.Duration) {
		s.log.Warn("publish attempt failed, retrying", "attempt", attempt, "err", err, "in", wait)
	})
	if err != nil && !errors.Is(err, retry.ErrPermanent) {
		return v, fmt.Errorf("%w: %w", channels.ErrNotReady, err)
	}
	return v, err
}

func isPermanent(err error) bool {
	if errors.Is(err, nats.ErrMaxPayload) || errors.Is(err, nats.ErrBadSubject) || errors.Is(err, nats.ErrConnectionClosed) {
		return true
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case jetstream.JSErrCodeBadRequest:
			return true
		}
	}
	return false
}
