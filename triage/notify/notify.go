// Package notify tells requesters what became of their request (PR-CAU-01 Pasos 4 and 5): an
// acknowledgement with the request id (acuse), the orientation and apology when the matter is not
// CGSI's (no_competente), the notice that it will be registered under CAU_INFORMATIVO_04A
// (informativo), and the clarification questions (aclaracion).
//
// Two JetStream stages run in one Notifier. The planner (durable consumer "notify" on CAU_TRIAGED)
// decides for each triaged item whether a notice is due, renders it from the templates and publishes
// it onto the outbox stream CAU_NOTIFY (subjects cau.notify.<email|facebook|x>) with Nats-Msg-Id
// "notify:<request id>:<kind>". The sender (durable consumer "notify_send" on CAU_NOTIFY) delivers
// each notice by SMTP, the Messenger / Graph API or the X API, records it in KV cau_notify, and only
// then acknowledges it: an outage delays notices but loses none, and a redelivery sends nothing twice.
//
// Anything that could start a mail loop or a backlog blast gets no notice: auto-submitted input,
// bounce, list and no-reply addresses, our own mailboxes, follow-ups, requests older than MaxAge,
// and senders past their daily cap. Every decision is counted with its reason.
package notify

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
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

// Names of the notification topology (a contract, like natsjs's names).
const (
	StreamNotify = "CAU_NOTIFY"
	// SubjectNotifyPrefix + delivery channel (email, facebook, x) is the subject of a notice.
	SubjectNotifyPrefix = "cau.notify."
	// KVNotify keeps sent.<request id>.<kind>, plan.<request id>.<kind> and the daily counters
	// rate.<hash>.<YYYYMMDD>.
	KVNotify = "cau_notify"
	// ConsumerPlan is the planner's durable consumer on CAU_TRIAGED.
	ConsumerPlan = "notify"
	// ConsumerSend is the sender's durable consumer on CAU_NOTIFY.
	ConsumerSend = "notify_send"
	// SubjectDLQ is where both stages dead-letter what they cannot process.
	SubjectDLQ = natsjs.SubjectDLQPrefix + deadletter.StageNotify
	// TypeNotice is the CloudEvents type of a notice on cau.notify.*.
	TypeNotice = "mx.ipn.cau.notice.v1"
	// DedupWindow is CAU_NOTIFY's Nats-Msg-Id duplicate window.
	DedupWindow = time.Hour
)

// Delivery channels (the last token of the subject cau.notify.<channel>).
const (
	DeliverEmail    = "email"
	DeliverFacebook = "facebook"
	DeliverX        = "x"
)

// Reasons for suppressing a notice (label "reason" of caud_notify_suppressed_total).
const (
	ReasonChannelDisabled = "channel_disabled"
	ReasonOutcomeDisabled = "outcome_disabled"
	ReasonAutoSubmitted   = "auto_submitted"
	ReasonFollowup        = "followup"
	ReasonNoConfirm       = "no_confirm"
	ReasonTooOld          = "too_old"
	ReasonNoAddress       = "no_address"
	ReasonNoReplyAddress  = "noreply_address"
	ReasonOwnAddress      = "own_address"
	ReasonNotConfigured   = "not_configured"
	ReasonAlreadyPlanned  = "already_planned"
	ReasonRateLimited     = "rate_limited"
	ReasonAlreadySent     = "already_sent"
)

var reasons = []string{ReasonChannelDisabled, ReasonOutcomeDisabled, ReasonAutoSubmitted, ReasonFollowup,
	ReasonNoConfirm, ReasonTooOld, ReasonNoAddress, ReasonNoReplyAddress, ReasonOwnAddress,
	ReasonNotConfigured, ReasonAlreadyPlanned, ReasonRateLimited, ReasonAlreadySent}

// SMTPOptions is the submission server notices are sent through.
type SMTPOptions struct {
	// Host of the submission server; empty means e-mail notices are suppressed as not_configured.
	Host string
	// Port; 0 means 587 (465 when TLS is "implicit", 25 when "none").
	Port int
	// TLS is "starttls" (default), "implicit" or "none".
	TLS string
	// Username enables AUTH PLAIN; Password goes with it.
	Username, Password string
	// From is the sender when the request did not arrive at a mailbox (memo, desk), e.g.
	// "CAU IPN <cau@ipn.mx>"; its display name is also used with the mailbox address.
	From string
	// Timeout bounds the connection and every SMTP command; 0 means 30 s. A whole message is
	// bounded by four times this.
	Timeout time.Duration
	// TLSConfig overrides the TLS client configuration (tests); nil means system roots, ServerName Host.
	TLSConfig *tls.Config
}

// Options configures a Notifier. Zero values are documented defaults.
type Options struct {
	// JS is the JetStream context (required).
	JS jetstream.JetStream
	// Triaged is the CAU_TRIAGED stream the planner reads (required).
	Triaged jetstream.Stream
	// Requests is KV cau_requests, where each sent e-mail's Message-ID is indexed (required).
	Requests jetstream.KeyValue
	// Replicas of CAU_NOTIFY and cau_notify; 0 means 1.
	Replicas int
	// Retention of CAU_NOTIFY; 0 means 7 days.
	Retention time.Duration
	// MaxAge: requests received longer ago get no notice; 0 means 72 h.
	MaxAge time.Duration
	// MaxPerSenderPerDay caps notices per address (or social account) per day, Mexico City time;
	// 0 means 5, negative means no cap.
	MaxPerSenderPerDay int
	// Channels turns notices on or off per Request.Channel (email, memo, facebook, x, phone,
	// in_person); a channel missing from the map is on. phone and in_person are only ever notified
	// when the desk form asked for a confirmation (Request.Confirm), by e-mail.
	Channels map[string]bool
	// Outcomes turns notices on or off per triage outcome (sai, informativo, aclaracion,
	// no_competente); an outcome missing from the map is on.
	Outcomes map[string]bool
	SMTP     SMTPOptions
	// FacebookAPIBase is the Graph API base; "" means https://graph.facebook.com/v21.0.
	// FacebookPageToken is the Page access token; empty suppresses Facebook notices.
	FacebookAPIBase, FacebookPageToken string
	// XAPIBase is the X API v2 base; "" means https://api.x.com/2. XBearerToken is a user-context
	// token with dm.write; empty suppresses X notices.
	XAPIBase, XBearerToken string
	// TemplatesDir holds templates that replace the embedded ones of the same name; "" means none.
	TemplatesDir string
	// HTTPClient for the social APIs; nil means a client with a 30 s timeout.
	HTTPClient *http.Client
	// RetryMin and RetryMax bound the exponential backoff of a notice that could not be sent;
	// 0 means 5 s and 15 min.
	RetryMin, RetryMax time.Duration
	// AckWait of both consumers; 0 means 2 min (it must exceed a send, bounded by 4 × SMTP.Timeout).
	AckWait time.Duration
	// Senders is the number of concurrent sending loops in this process; 0 means 2.
	Senders    int
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Notifier runs the planner and the sender. Create it with New, run it with Run.
type Notifier struct {
	o        Options
	log      *slog.Logger
	tmpl     *templates
	outbox   jetstream.Stream
	kv       jetstream.KeyValue
	plan     jetstream.Consumer
	send     jetstream.Consumer
	m        metrics
	mail     *mailer
	social   *socialClient
	channels map[string]bool
	own      map[string]bool
}

type metrics struct {
	sent       *prometheus.CounterVec
	suppressed *prometheus.CounterVec
	failed     *prometheus.CounterVec
	seconds    *prometheus.HistogramVec
}

// Errors of New.
var (
	ErrOptions = errors.New("notify: bad options")
)

// New checks the options and templates, creates (or updates) CAU_NOTIFY, KV cau_notify and both
// durable consumers, and returns a Notifier. A template that does not parse or execute is refused
// with an error wrapping ErrTemplate that names the file and line.
func New(ctx context.Context, o Options) (*Notifier, error) {
	if o.JS == nil || o.Triaged == nil || o.Requests == nil {
		return nil, fmt.Errorf("%w: JS, Triaged and Requests are required", ErrOptions)
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.Retention == 0 {
		o.Retention = 7 * 24 * time.Hour
	}
	if o.MaxAge == 0 {
		o.MaxAge = 72 * time.Hour
	}
	if o.MaxPerSenderPerDay == 0 {
		o.MaxPerSenderPerDay = 5
	}
	switch o.SMTP.TLS {
	case "":
		o.SMTP.TLS = "starttls"
	case "starttls", "implicit", "none":
	default:
		return nil, fmt.Errorf("%w: smtp tls %q (starttls | implicit | none)", ErrOptions, o.SMTP.TLS)
	}
	if o.SMTP.Port == 0 {
		o.SMTP.Port = map[string]int{"starttls": 587, "implicit": 465, "none": 25}[o.SMTP.TLS]
	}
	if o.SMTP.Timeout == 0 {
		o.SMTP.Timeout = 30 * time.Second
	}
	if o.FacebookAPIBase == "" {
		o.FacebookAPIBase = "https://graph.facebook.com/v21.0"
	}
	if o.XAPIBase == "" {
		o.XAPIBase = "https://api.x.com/2"
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if o.RetryMin == 0 {
		o.RetryMin = 5 * time.Second
	}
	if o.RetryMax == 0 {
		o.RetryMax = 15 * time.Minute
	}
	if o.AckWait == 0 {
		o.AckWait = 2 * time.Minute
	}
	if o.Senders == 0 {
		o.Senders = 2
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	log := channels.OrDiscard(o.Logger)
	n := &Notifier{o: o, log: log}
	if o.SMTP.From != "" {
		if _, err := parseAddress(o.SMTP.From); err != nil {
			return nil, fmt.Errorf("%w: smtp from %q: %v", ErrOptions, o.SMTP.From, err)
		}
	}
	var err error
	if n.tmpl, err = loadTemplates(o.TemplatesDir); err != nil {
		return nil, err
	}
	n.channels = map[string]bool{}
	for _, c := range []string{channels.MediumEmail, channels.MediumMemo, channels.MediumFacebook,
		channels.MediumX, channels.MediumPhone, channels.MediumInPerson} {
		n.channels[c] = true
	}
	for c, on := range o.Channels {
		n.channels[c] = on
	}
	n.own = map[string]bool{}
	if a, err := parseAddress(o.SMTP.From); err == nil {
		n.own[a.Address] = true
	}
	if n.outbox, err = EnsureStream(ctx, o.JS, o.Replicas, o.Retention); err != nil {
		return nil, err
	}
	if n.kv, err = natsjs.EnsureKeyValue(ctx, o.JS, jetstream.KeyValueConfig{
		Bucket:      KVNotify,
		Description: "notices sent and planned, per-sender daily counters",
		History:     1,
		TTL:         o.Retention + o.MaxAge + DedupWindow,
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
	}, natsjs.Topology{}); err != nil {
		return nil, fmt.Errorf("ensure kv %s: %w", KVNotify, err)
	}
	if n.plan, err = durable(ctx, o.Triaged, jetstream.ConsumerConfig{
		Durable:       ConsumerPlan,
		Description:   "notification planner: decides and renders each requester's notice",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       o.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: 1000,
		FilterSubject: "cau.triaged.>",
		// A first start does not walk the whole history of CAU_TRIAGED: only what could still be
		// notified. Later starts keep the consumer's position.
		DeliverPolicy: jetstream.DeliverByStartTimePolicy,
		OptStartTime:  ptr(o.Now().Add(-o.MaxAge)),
	}); err != nil {
		return nil, fmt.Errorf("notify consumer: %w", err)
	}
	if n.send, err = durable(ctx, n.outbox, jetstream.ConsumerConfig{
		Durable:       ConsumerSend,
		Description:   "notification sender: SMTP, Messenger, X",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       o.AckWait,
		MaxDeliver:    -1, // an outage is waited out, never dead-lettered
		MaxAckPending: 1000,
		FilterSubject: SubjectNotifyPrefix + ">",
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}); err != nil {
		return nil, fmt.Errorf("notify_send consumer: %w", err)
	}
	n.mail = &mailer{o: o.SMTP}
	n.social = &socialClient{http: o.HTTPClient, fbBase: o.FacebookAPIBase, fbToken: o.FacebookPageToken,
		xBase: o.XAPIBase, xToken: o.XBearerToken}
	n.m = metrics{
		sent:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "caud_notify_sent_total", Help: "Notices delivered to requesters, per delivery channel and kind."}, []string{"channel", "kind"}),
		suppressed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "caud_notify_suppressed_total", Help: "Notices not sent, per reason."}, []string{"reason"}),
		failed:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "caud_notify_failed_total", Help: "Failed delivery attempts, per delivery channel and reason (transient: retried; permanent: dead-lettered)."}, []string{"channel", "reason"}),
		seconds:    prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "caud_notify_send_seconds", Help: "Time one delivery attempt took, per delivery channel.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 14)}, []string{"channel"}),
	}
	for _, r := range reasons {
		n.m.suppressed.WithLabelValues(r)
	}
	for _, c := range []string{DeliverEmail, DeliverFacebook, DeliverX} {
		for _, k := range Kinds {
			n.m.sent.WithLabelValues(c, k)
		}
		n.m.failed.WithLabelValues(c, "transient")
		n.m.failed.WithLabelValues(c, "permanent")
	}
	if o.Registerer != nil {
		if err := registerAll(o.Registerer, n.m.sent, n.m.suppressed, n.m.failed, n.m.seconds); err != nil {
			return nil, fmt.Errorf("notify metrics: %w", err)
		}
	}
	return n, nil
}

func registerAll(r prometheus.Registerer, cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

// durable creates a consumer, or updates it keeping its delivery start (which cannot change).
func durable(ctx context.Context, s jetstream.Stream, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	c, err := s.Consumer(ctx, cfg.Durable)
	switch {
	case err == nil:
		info := c.CachedInfo()
		cfg.DeliverPolicy = info.Config.DeliverPolicy
		cfg.OptStartTime = info.Config.OptStartTime
		cfg.OptStartSeq = info.Config.OptStartSeq
		return natsjs.EnsureConsumer(ctx, s, cfg, natsjs.Topology{})
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		return natsjs.EnsureConsumer(ctx, s, cfg, natsjs.Topology{})
	default:
		return nil, err
	}
}

// EnsureStream creates or updates the outbox stream CAU_NOTIFY: subjects cau.notify.<channel>,
// file storage, messages kept for retention (0 means 7 days), duplicates by Nats-Msg-Id detected
// within DedupWindow. It is idempotent; several replicas may call it at once.
func EnsureStream(ctx context.Context, js jetstream.JetStream, replicas int, retention time.Duration) (jetstream.Stream, error) {
	if replicas == 0 {
		replicas = 1
	}
	if retention == 0 {
		retention = 7 * 24 * time.Hour
	}
	s, err := natsjs.EnsureStream(ctx, js, jetstream.StreamConfig{
		Name:        StreamNotify,
		Description: "outbox of notices to requesters",
		Subjects:    []string{SubjectNotifyPrefix + ">"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      retention,
		Duplicates:  DedupWindow,
		Replicas:    replicas,
		Discard:     jetstream.DiscardOld,
	}, natsjs.Topology{})
	if err != nil {
		return nil, fmt.Errorf("ensure stream %s: %w", StreamNotify, err)
	}
	return s, nil
}

// Run runs the planner and the sender until ctx ends, then finishes the work in hand (each message
// bounded by AckWait) and returns nil. NATS, SMTP and API outages are logged and waited out.
func (n *Notifier) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { n.loop(ctx, "plan", n.plan, 16, n.planMsg) })
	for range n.o.Senders {
		// One notice at a time per loop: a slow SMTP server must not leave fetched notices
		// waiting past their AckWait (they would be redelivered to another loop meanwhile).
		wg.Go(func() { n.loop(ctx, "send", n.send, 1, n.sendMsg) })
	}
	wg.Wait()
	return nil
}

func (n *Notifier) loop(ctx context.Context, stage string, c jetstream.Consumer, batchSize int, handle func(context.Context, jetstream.Msg)) {
	b := retry.Policy{Initial: 100 * time.Millisecond, Max: 5 * time.Second}.Start()
	for ctx.Err() == nil {
		batch, err := c.Fetch(batchSize, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			n.log.Warn("notify fetch failed", "stage", stage, "err", err)
			b.Wait(ctx)
			continue
		}
		b.Reset()
		for m := range batch.Messages() {
			// The message in hand is finished even when ctx ends, within a bound of its own.
			mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), n.o.AckWait)
			handle(mctx, m)
			cancel()
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoMessages) && ctx.Err() == nil {
			n.log.Warn("notify fetch ended", "stage", stage, "err", err)
			b.Wait(ctx)
		}
	}
}

// Idle reports whether both stages are caught up: no triaged item waits to be planned and no notice
// waits to be sent or acknowledged (a notice in an SMTP outage is not idle). Once Idle, nothing more
// is sent until something new is triaged.
func (n *Notifier) Idle(ctx context.Context) (bool, error) {
	return ConsumersIdle(ctx, n.plan, n.send)
}

// ConsumersIdle reports whether every consumer has nothing pending and nothing unacknowledged.
func ConsumersIdle(ctx context.Context, cs ...jetstream.Consumer) (bool, error) {
	for _, c := range cs {
		info, err := c.Info(ctx)
		if err != nil {
			return false, err
		}
		if info.NumPending != 0 || info.NumAckPending != 0 || info.NumRedelivered != 0 {
			return false, nil
		}
	}
	return true, nil
}

// Metrics exposes the collectors (for tests).
func (n *Notifier) Metrics() (sent, suppressed, failed *prometheus.CounterVec) {
	return n.m.sent, n.m.suppressed, n.m.failed
}

// Kind returns the notice kind for a triage outcome: acuse for sai, else the outcome's own kind;
// "" for an unknown outcome.
func Kind(outcome string) string {
	switch outcome {
	case triage.OutcomeSAI:
		return KindAcuse
	case triage.OutcomeInformativo:
		return KindInformativo
	case triage.OutcomeAclaracion:
		return KindAclaracion
	case triage.OutcomeNoCompetente:
		return KindNoCompetente
	}
	return ""
}
