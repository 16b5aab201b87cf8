// Package social is the Facebook (Page / Messenger) and X (Account Activity) webhook channel. Each
// platform has an http.Handler for its webhook path that answers the platform's verification (the
// Meta hub.challenge handshake, the X CRC check), authenticates every delivery by its HMAC-SHA256
// signature over the raw body, turns each message, comment, direct message and mention of the
// delivery into one channels.Request, and answers 200 only after all of them are durably published,
// so that a failure is covered by the platform's own retry. Deliveries are deduplicated twice: by
// Nats-Msg-Id within the JetStream duplicate window, and beyond it by a record of every published
// platform id in the KV bucket cau_requests (key social.<platform>.<hash>).
//
// The payload parsers (ParseFacebook, ParseX) and the signature checks (VerifyFacebookSignature,
// VerifyXSignature, XCRCResponse) are pure functions, shared by the handlers, the fuzzers and the
// load tool.
package social

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/httpjson"
	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/channels/retry"
)

// Platforms, as used in metrics labels, Social.Platform and the seen-record keys.
const (
	PlatformFacebook = channels.SubjectFacebook
	PlatformX        = channels.SubjectX
)

// Kinds of event that become a request (Social.Kind).
const (
	KindMessage = "message" // Messenger message to a Page
	KindComment = "comment" // comment on a Page post
	KindDM      = "dm"      // X direct message to the account
	KindMention = "mention" // X post mentioning or replying to the account
)

// Defaults of the Options structs.
const (
	DefaultMaxBodyBytes   = 4 << 20
	DefaultPublishTimeout = 5 * time.Second
)

// Errors.
var (
	// ErrMalformed is wrapped by the parsers' errors: the body is not a delivery of the platform.
	ErrMalformed = errors.New("malformed delivery")
	// ErrNoSecret is returned by the constructors when no secret is configured.
	ErrNoSecret = errors.New("no webhook secret configured")
)

// Event is one message, comment, direct message or mention that becomes a request.
type Event struct {
	// Social identifies it on the platform (Platform and Kind always set).
	Social channels.Social
	// ID is the platform id the request is deduplicated by: the Messenger mid, the comment_id,
	// the X direct message event id or the tweet id.
	ID string
	// Time is the platform's timestamp; zero when the payload has none.
	Time time.Time
	// Name is the author's display name when the payload carries it ("" for Messenger, whose
	// payload has only the page-scoped id).
	Name string
	// Handle is "@screen_name" on X and the display name on Facebook; "" when unknown.
	Handle string
	// Text is what the author wrote; never empty.
	Text string
}

// Ignored counts what a delivery carried that does not become a request, by reason (echo,
// delivery, read, edit, own_comment, own_dm, own_tweet, retweet, unknown, …).
// eventSet gathers the events of one delivery, each message once, and counts in ig what it leaves
// out (with its reason, or "duplicate" for a message the delivery repeats).
type eventSet struct {
	ig     Ignored
	ids    map[string]bool
	events []Event
}

// keep takes one parsed item: an event, or the reason it is ignored.
func (s *eventSet) keep(e Event, reason string) {
	switch {
	case reason != "":
		s.ig.add(reason, 1)
	case s.ids[e.ID]:
		s.ig.add("duplicate", 1)
	default:
		s.ids[e.ID] = true
		s.events = append(s.events, e)
	}
}

type Ignored map[string]int

func (ig Ignored) add(reason string, n int) {
	if n > 0 {
		ig[reason] += n
	}
}

// metrics are shared by both handlers; newMetrics tolerates a registerer that already holds them.
type metrics struct {
	deliveries *prometheus.CounterVec
	events     *prometheus.CounterVec
	ignored    *prometheus.CounterVec
	seconds    *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "caud_social_deliveries_total", Help: "Webhook requests per platform and result (accepted, unsigned, bad_signature, too_large, malformed, failed, verify_ok, verify_failed, bad_method)."}, []string{"platform", "result"}),
		events:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "caud_social_events_total", Help: "Events published as new requests, per platform and kind."}, []string{"platform", "kind"}),
		ignored:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "caud_social_ignored_total", Help: "Events that did not become a request, per platform and reason (duplicate, echo, read, unknown, …)."}, []string{"platform", "reason"}),
		seconds:    prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "caud_social_delivery_seconds", Help: "Time to answer a webhook delivery (POST), per platform.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}, []string{"platform"}),
	}
	if reg == nil {
		return m
	}
	m.deliveries = channels.Register(reg, m.deliveries)
	m.events = channels.Register(reg, m.events)
	m.ignored = channels.Register(reg, m.ignored)
	m.seconds = channels.Register(reg, m.seconds)
	return m
}

// common is what both handlers share: options after defaults, the publishing path and health.
// serve dispatches a webhook request: GET to the platform's verification, POST to a delivery
// (timed), anything else 405.
func (c *common) serve(w http.ResponseWriter, r *http.Request, get, post http.HandlerFunc) {
	switch r.Method {
	case http.MethodGet:
		get(w, r)
	case http.MethodPost:
		start := time.Now()
		post(w, r)
		c.m.seconds.WithLabelValues(c.platform).Observe(time.Since(start).Seconds())
	default:
		c.m.deliveries.WithLabelValues(c.platform, "bad_method").Inc()
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

type common struct {
	platform       string
	maxBody        int64
	publishTimeout time.Duration
	sink           channels.Sink
	seen           jetstream.KeyValue
	inbound        jetstream.Stream
	log            *slog.Logger
	m              *metrics
	now            func() time.Time
	health         *channels.HealthTracker
}

// WebhookOptions are the settings the Facebook and X webhooks share. Zero values are documented
// defaults.
type WebhookOptions struct {
	// MaxBodyBytes bounds a delivery; 0 means 4 MiB. Larger bodies get 413.
	MaxBodyBytes int64
	// Sink publishes the requests (required).
	Sink channels.Sink
	// Seen claims every platform id before its publish and records it published, beyond the
	// JetStream duplicate window: KV cau_requests, keys social.<facebook|x>.<hash> (required).
	Seen jetstream.KeyValue
	// Inbound is CAU_INBOUND, where a retry of a claimed id whose first publish lost its ack looks
	// for it; nil means the request index alone answers (it knows a request once the sink saw the
	// ack or the worker triaged it).
	Inbound jetstream.Stream
	// PublishTimeout bounds the whole delivery before answering 503; 0 means 5 s.
	PublishTimeout time.Duration
	Logger         *slog.Logger
	// Registerer receives the caud_social_* metrics; nil registers nothing. Both webhooks may share
	// one.
	Registerer prometheus.Registerer
	// Now is the clock for events without a timestamp; nil means time.Now.
	Now func() time.Time
}

func newCommon(platform string, o WebhookOptions) (*common, error) {
	sink, seen, maxBody, timeout, log, reg, now := o.Sink, o.Seen, o.MaxBodyBytes, o.PublishTimeout, o.Logger, o.Registerer, o.Now
	if sink == nil {
		return nil, fmt.Errorf("social %s: no sink", platform)
	}
	if seen == nil {
		return nil, fmt.Errorf("social %s: no seen store (KV %s)", platform, "cau_requests")
	}
	maxBody = channels.OrDefault(maxBody, DefaultMaxBodyBytes)
	timeout = channels.OrDefault(timeout, DefaultPublishTimeout)
	log = channels.OrDiscard(log)
	if now == nil {
		now = time.Now
	}
	return &common{
		platform: platform, maxBody: maxBody, publishTimeout: timeout, sink: sink, seen: seen, inbound: o.Inbound,
		log: log.With("channel", platform), m: newMetrics(reg), now: now, health: &channels.HealthTracker{Now: now},
	}, nil
}

// Health reports the webhook as failing from the first delivery that could not be published until
// the next one that could.
func (c *common) Health(context.Context) []channels.Health {
	if h := c.health.List(); len(h) > 0 {
		return h
	}
	return []channels.Health{{Name: c.platform + " webhook", OK: true}}
}

func (c *common) setHealth(err error) { c.health.SetErr(c.platform+" webhook", err) }

// readSigned reads the body and checks its signature; it answers the error itself and reports
// whether to go on.
func (c *common) readSigned(w http.ResponseWriter, r *http.Request, header string, verify func(string, []byte) bool) ([]byte, bool) {
	body, err := httpjson.ReadBody(w, r, c.maxBody)
	if errors.Is(err, httpjson.ErrTooLarge) {
		c.m.deliveries.WithLabelValues(c.platform, "too_large").Inc()
		httpjson.Fail(w, http.StatusRequestEntityTooLarge, err.Error())
		return nil, false
	}
	if err != nil {
		c.m.deliveries.WithLabelValues(c.platform, "malformed").Inc()
		httpjson.Fail(w, http.StatusBadRequest, err.Error())
		return nil, false
	}
	sig := r.Header.Get(header)
	if sig == "" {
		c.m.deliveries.WithLabelValues(c.platform, "unsigned").Inc()
		httpjson.Fail(w, http.StatusUnauthorized, "missing "+header)
		return nil, false
	}
	if !verify(sig, body) {
		c.m.deliveries.WithLabelValues(c.platform, "bad_signature").Inc()
		c.log.Warn("webhook signature mismatch", "remote", r.RemoteAddr, "bytes", len(body))
		httpjson.Fail(w, http.StatusUnauthorized, "bad "+header)
		return nil, false
	}
	return body, true
}

// malformed answers 400 for a body the parser refused.
// readEvents reads a delivery signed in header (readSigned) and parses it, counting what the
// parser ignored; false when the delivery was refused (the answer is written).
func (c *common) readEvents(w http.ResponseWriter, r *http.Request, header string, verify func(string, []byte) bool, parse func([]byte) ([]Event, Ignored, error)) ([]byte, []Event, bool) {
	body, ok := c.readSigned(w, r, header, verify)
	if !ok {
		return nil, nil, false
	}
	events, ignored, err := parse(body)
	if err != nil {
		c.malformed(w, err)
		return nil, nil, false
	}
	c.countIgnored(ignored)
	return body, events, true
}

func (c *common) malformed(w http.ResponseWriter, err error) {
	c.m.deliveries.WithLabelValues(c.platform, "malformed").Inc()
	httpjson.Fail(w, http.StatusBadRequest, err.Error())
}

// countIgnored adds a delivery's ignored events to the metric.
func (c *common) countIgnored(ig Ignored) {
	for reason, n := range ig {
		c.m.ignored.WithLabelValues(c.platform, reason).Add(float64(n))
	}
}

// deliver publishes the events of one delivery and answers. It answers 200 (calling ok) only when
// every event is published or known to be published already; otherwise 503 (retryable) or 500, so
// that the platform delivers again and the retry completes what is missing.
func (c *common) deliver(w http.ResponseWriter, r *http.Request, body []byte, events []Event, source func(Event) string, ok func(http.ResponseWriter)) {
	ctx, cancel := context.WithTimeout(r.Context(), c.publishTimeout)
	defer cancel()
	err := c.publishAll(ctx, body, events, source)
	c.setHealth(err)
	if err != nil {
		c.m.deliveries.WithLabelValues(c.platform, "failed").Inc()
		c.log.Error("webhook delivery not published; the platform will retry", "events", len(events), "err", err)
		status := http.StatusServiceUnavailable
		if errors.Is(err, channels.ErrInvalid) {
			status = http.StatusInternalServerError
		} else {
			w.Header().Set("Retry-After", "5")
		}
		httpjson.Fail(w, status, "delivery not stored; retry")
		return
	}
	c.m.deliveries.WithLabelValues(c.platform, "accepted").Inc()
	ok(w)
}

// publishAll claims each event's platform id (claim), archives the body once when any event is
// still to be published, and publishes those concurrently; it returns the first error.
func (c *common) publishAll(ctx context.Context, body []byte, events []Event, source func(Event) string) error {
	if len(events) == 0 {
		return nil
	}
	// Which events are still to be published? A retried delivery may be partly published already.
	reqs := make([]*channels.Request, len(events))
	if err := each(len(events), func(i int) (err error) {
		reqs[i], err = c.claim(ctx, events[i])
		return err
	}); err != nil {
		return err
	}
	anyFresh := false
	for i, r := range reqs {
		if r != nil {
			anyFresh = true
		} else {
			c.m.ignored.WithLabelValues(c.platform, "duplicate").Inc()
			c.log.Debug("event already published", "platform_id", events[i].ID)
		}
	}
	if !anyFresh {
		return nil
	}
	// The body is archived once for the whole delivery, before the requests that point to it: the
	// sink would archive it once per request, concurrently, under the same content address.
	orig, err := c.archive(ctx, body)
	if err != nil {
		return err
	}
	return each(len(events), func(i int) error {
		if reqs[i] == nil {
			return nil
		}
		return c.publish(ctx, events[i], reqs[i], orig, source(events[i]))
	})
}

// each runs fn for 0..n-1, concurrently when n > 1, and returns the first error.
func each(n int, fn func(i int) error) error {
	if n == 1 {
		return fn(0)
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = fn(i) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (c *common) archive(ctx context.Context, body []byte) (*channels.Object, error) {
	obj, err := retry.Do(ctx, retry.Policy{Initial: 20 * time.Millisecond, Max: time.Second}, func(ctx context.Context) (*channels.Object, error) {
		return c.sink.Archive(ctx, c.platform, "application/json", bytes.NewReader(body))
	}, nil)
	if err != nil {
		return nil, fmt.Errorf("archive delivery: %w: %w", channels.ErrNotReady, err)
	}
	return obj, nil
}

// seenKey is the cau_requests key recording that the platform id was published.
func (c *common) seenKey(e Event) string { return natsjs.SocialKey(c.platform, e.ID).String() }

// seenRecord is the value of a seen key. While Pending is set the id is claimed: the request was
// built and its publish is not confirmed yet. Once it is, the record names the request and its
// sequence (enough to find it again) and Pending is gone.
type seenRecord struct {
	Request  string            `json:"request"`
	Sequence uint64            `json:"seq,omitempty"`
	Pending  *channels.Request `json:"pending,omitempty"`
	Claimed  time.Time         `json:"claimed,omitzero"`
}

// claim returns the request to publish for e, or nil when it is published already. The first
// delivery of a platform id records a claim holding the request before anything is published; a
// retry, however late, finds it: when the first attempt landed without its ack arriving (the
// request index or CAU_INBOUND shows it, also past JetStream's duplicate window) nothing is
// published again, else the very same request goes out again under the same Nats-Msg-Id.
func (c *common) claim(ctx context.Context, e Event) (*channels.Request, error) {
	key := c.seenKey(e)
	for attempt := 0; ; attempt++ {
		entry, err := c.seen.Get(ctx, key)
		switch {
		case err == nil:
			var rec seenRecord
			if err := json.Unmarshal(entry.Value(), &rec); err != nil {
				return nil, fmt.Errorf("seen %s: %w: decode: %v", e.ID, channels.ErrNotReady, err)
			}
			if rec.Pending == nil {
				return nil, nil
			}
			seq, err := c.landed(ctx, e, rec)
			if err != nil {
				return nil, err
			}
			if seq == 0 {
				return rec.Pending, nil
			}
			c.log.Info("a publish whose ack was lost had landed; not publishing it again", "platform_id", e.ID, "request", rec.Request, "seq", seq)
			return nil, c.recordPublished(ctx, e, rec.Request, seq)
		case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
			req := e.Request(c.now())
			val, _ := json.Marshal(seenRecord{Request: req.ID, Pending: req, Claimed: time.Now().UTC()})
			_, err := c.seen.Create(ctx, key, val)
			if err == nil {
				return req, nil
			}
			if !errors.Is(err, jetstream.ErrKeyExists) || attempt > 2 {
				return nil, fmt.Errorf("claim %s: %w: %v", e.ID, channels.ErrNotReady, err)
			}
			// Another delivery of the same event claimed it first: read its claim.
		default:
			return nil, fmt.Errorf("seen %s: %w: %v", e.ID, channels.ErrNotReady, err)
		}
	}
}

// landed returns the CAU_INBOUND sequence of a claimed request that was published after all, 0
// when it was not.
func (c *common) landed(ctx context.Context, e Event, rec seenRecord) (uint64, error) {
	if st, _, err := natsjs.GetState(ctx, c.seen, rec.Request); err == nil {
		return max(st.InboundSeq, 1), nil
	} else if !errors.Is(err, natsjs.ErrUnknownRequest) {
		return 0, fmt.Errorf("seen %s: %w: %v", e.ID, channels.ErrNotReady, err)
	}
	if c.inbound == nil {
		return 0, nil
	}
	// The index knows a request only once the sink saw its ack or the worker triaged it. Look in
	// the stream itself, from a minute before the claim (clocks of caud and the server may differ).
	seq, err := natsjs.FindMsgID(ctx, c.inbound, natsjs.SubjectInboundPrefix+c.platform, c.msgID(e), rec.Claimed.Add(-time.Minute))
	if err != nil {
		return 0, fmt.Errorf("seen %s: %w: %v", e.ID, channels.ErrNotReady, err)
	}
	return seq, nil
}

// msgID is the Nats-Msg-Id of e's request.
func (c *common) msgID(e Event) string { return c.platform + ":" + e.ID }

// recordPublished replaces the claim of e by the record of its published request.
func (c *common) recordPublished(ctx context.Context, e Event, id string, seq uint64) error {
	val, _ := json.Marshal(seenRecord{Request: id, Sequence: seq})
	if _, err := c.seen.Put(ctx, c.seenKey(e), val); err != nil {
		// Not answering 200: the retry finds the claim and the request it landed as.
		return fmt.Errorf("record seen %s: %w: %v", e.ID, channels.ErrNotReady, err)
	}
	return nil
}

func (c *common) publish(ctx context.Context, e Event, req *channels.Request, orig *channels.Object, source string) error {
	req.Original = orig
	rec, err := c.sink.Publish(ctx, channels.Submission{
		Request: req,
		Subject: c.platform, // the platform names its subject token (SubjectFacebook, SubjectX)
		MsgID:   c.msgID(e),
		Source:  source,
		// Original stays nil: the body is archived already and req.Original points to it.
		OriginalType: "application/json",
	})
	if err != nil {
		return fmt.Errorf("publish %s: %w", e.ID, err)
	}
	if rec.Duplicate {
		c.m.ignored.WithLabelValues(c.platform, "duplicate").Inc()
	} else {
		c.m.events.WithLabelValues(c.platform, e.Social.Kind).Inc()
	}
	return c.recordPublished(ctx, e, req.ID, rec.Sequence)
}

// Request turns the event into a request. now is ReceivedAt when the event has no timestamp. The
// id is a ULID made of the platform time and a hash of the platform id, so the same event always
// gives the same request id.
func (e Event) Request(now time.Time) *channels.Request {
	t := e.Time
	if t.IsZero() {
		t = now
	}
	t = t.UTC()
	soc := e.Social
	req := &channels.Request{
		ID:         requestID(soc.Platform, e.ID, t),
		Channel:    soc.Platform,
		ReceivedAt: t,
		Source:     channels.Source{PlatformID: e.ID, Social: &soc},
		Requester:  channels.Requester{Name: e.Name},
		Text:       e.Text,
	}
	if e.Handle != "" {
		h := e.Handle
		req.Requester.Handle = &h
	}
	return req
}

func requestID(platform, id string, t time.Time) string {
	var u ulid.ULID
	ms := t.UnixMilli()
	if ms < 0 || uint64(ms) > ulid.MaxTime() {
		ms = 0
	}
	_ = u.SetTime(uint64(ms))
	sum := sha256.Sum256([]byte(platform + ":" + id))
	copy(u[6:], sum[:10])
	return u.String()
}

// flexID is an id that the platforms send as a string (and, now and then, as a number); any other
// shape reads as absent.
type flexID string

func (f *flexID) UnmarshalJSON(b []byte) error {
	var s flexString
	if err := s.UnmarshalJSON(b); err != nil {
		return err
	}
	if s == "true" || s == "false" {
		s = "" // a boolean is no id
	}
	*f = flexID(s)
	return nil
}

// flexTime is a platform timestamp: Unix seconds or milliseconds as a number or a numeric string,
// RFC 3339, or X's "Thu Oct 09 08:53:57 +0000 2025". Anything else, or a time outside years
// 1970-9999, reads as absent.
type flexTime struct{ time.Time }

var (
	minTime = time.Unix(0, 0)
	maxTime = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)
)

func (f *flexTime) UnmarshalJSON(b []byte) error {
	f.Time = time.Time{}
	s := string(b)
	if len(b) > 0 && b[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
	}
	f.Time = parseTime(s)
	return nil
}

func parseTime(s string) time.Time {
	s = strings.TrimSpace(s)
	if s == "" || s == "null" {
		return time.Time{}
	}
	var t time.Time
	if n, err := strconv.ParseFloat(s, 64); err == nil {
		if n >= 1e11 { // milliseconds: 1e11 s would be the year 5138
			t = time.UnixMilli(int64(n))
		} else if n > -1e11 {
			t = time.Unix(int64(n), 0)
		}
	} else if p, err := time.Parse(time.RFC3339Nano, s); err == nil {
		t = p
	} else if p, err := time.Parse(time.RubyDate, s); err == nil {
		t = p
	}
	if t.Before(minTime) || t.After(maxTime) {
		return time.Time{}
	}
	return t.UTC()
}

// cleanText trims the text and keeps it within channels.MaxTextBytes. The platforms' own limits are
// far below it; should one be exceeded the cut is marked, and the whole body is archived anyway.
func cleanText(s string) string {
	s = strings.TrimSpace(strings.ToValidUTF8(s, "\uFFFD"))
	const mark = " […texto truncado; ver el original]"
	if len(s) > channels.MaxTextBytes {
		cut := channels.MaxTextBytes - len(mark)
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + mark
	}
	return s
}
