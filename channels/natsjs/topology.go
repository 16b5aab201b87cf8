package natsjs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/retry"
)

// Names of the JetStream topology. They are a contract: ops and other services use them.
const (
	StreamInbound = "CAU_INBOUND"
	// StreamInboundSpare is the spare intake lane on a cluster (see lanes.go): the sink publishes
	// there when CAU_INBOUND does not acknowledge in time, and CAU_INBOUND sources it.
	StreamInboundSpare = "CAU_INBOUND_SPARE"
	StreamTriaged      = "CAU_TRIAGED"
	StreamDLQ          = "CAU_DLQ"
	// StreamCorrections keeps every agent's correction of a triage, with no age limit, so the catalog
	// can be measured and improved against real traffic.
	StreamCorrections = "CAU_CORRECTIONS"
	ObjectOriginals   = "cau_originals"
	KVState           = "cau_state"
	// KVRequests indexes every request id to its state, queue and stream sequences.
	KVRequests = "cau_requests"
	// KVLeases holds the agents' leases on claimed items, readable by any replica.
	KVLeases = "cau_leases"
	// ConsumerTriage is the durable consumer the triage workers share on CAU_INBOUND.
	ConsumerTriage = "triage"

	SubjectInboundPrefix = "cau.inbound."
	// SubjectSparePrefix is the spare lane's subject prefix: cau.spare.<channel> arrives in
	// CAU_INBOUND as cau.inbound.<channel>.
	SubjectSparePrefix   = "cau.spare."
	SubjectTriagedPrefix = "cau.triaged."
	SubjectDLQPrefix     = "cau.dlq."
	SubjectCorrections   = "cau.corrections"
)

// Topology sizes the streams. Zero values are documented defaults.
type Topology struct {
	// Replicas per stream and bucket; 0 means 1 (3 on a cluster).
	Replicas int
	// DedupWindow is the Nats-Msg-Id duplicate window; 0 means 10 min.
	DedupWindow time.Duration
	// Retention is how long CAU_INBOUND, CAU_TRIAGED and CAU_DLQ keep messages; 0 means 90 days.
	Retention time.Duration
	// LeaseRetention is how long lease records stay in cau_leases; 0 means 24 h.
	LeaseRetention time.Duration
	// Spare says whether the spare intake lane CAU_INBOUND_SPARE exists; SpareAuto (0) means on a
	// cluster only (Replicas > 1): a single server has no leader to lose.
	Spare SpareMode

	// AttemptTimeout bounds one JetStream API call of the set-up; 0 means 5 s.
	AttemptTimeout time.Duration
	// MaxBackoff caps the wait between attempts (exponential from 250 ms, with jitter); 0 means 5 s.
	MaxBackoff time.Duration
	// Logger receives a warning per failed attempt; nil discards.
	Logger *slog.Logger
	// OnWait, when set, is called after every failed attempt with the asset awaited and the
	// error, so that /readyz can say why the process is not ready yet.
	OnWait func(asset string, err error)
}

// SpareMode turns the spare intake lane on or off.
type SpareMode int

// Spare lane modes.
const (
	SpareAuto SpareMode = iota // on when Replicas > 1
	SpareOn
	SpareOff
)

func (t Topology) spare() bool {
	return t.Spare == SpareOn || (t.Spare == SpareAuto && t.Replicas > 1)
}

func (t Topology) withDefaults() Topology {
	if t.Replicas == 0 {
		t.Replicas = 1
	}
	if t.DedupWindow == 0 {
		t.DedupWindow = 10 * time.Minute
	}
	if t.Retention == 0 {
		t.Retention = 90 * 24 * time.Hour
	}
	if t.LeaseRetention == 0 {
		t.LeaseRetention = 24 * time.Hour
	}
	if t.AttemptTimeout == 0 {
		t.AttemptTimeout = 5 * time.Second
	}
	if t.MaxBackoff == 0 {
		t.MaxBackoff = 5 * time.Second
	}
	t.Logger = channels.OrDiscard(t.Logger)
	return t
}

// Handles are the created topology's streams and buckets.
type Handles struct {
	JS      jetstream.JetStream
	Inbound jetstream.Stream
	// Spare is the spare intake lane; nil when the topology has none (a single server).
	Spare       jetstream.Stream
	Triaged     jetstream.Stream
	DLQ         jetstream.Stream
	Corrections jetstream.Stream
	Originals   jetstream.ObjectStore
	State       jetstream.KeyValue
	Requests    jetstream.KeyValue
	Leases      jetstream.KeyValue
}

// EnsureTopology creates every stream and bucket caud uses (the names above), or brings an existing one to the
// wanted settings. Many replicas may run it at the same moment, on one server or on a cluster: each
// asset is created first (the server answers an identical create, even one still in flight, as a
// success), and only an asset that exists with different settings is updated, with those settings
// changed and the rest (e.g. a max_bytes an operator set) kept. A failed attempt (no JetStream yet,
// no quorum, a timeout) is retried with exponential backoff and jitter until ctx ends; only an
// invalid configuration fails at once.
func EnsureTopology(ctx context.Context, js jetstream.JetStream, t Topology) (*Handles, error) {
	t = t.withDefaults()
	h := &Handles{JS: js}
	type streamSpec struct {
		dst *jetstream.Stream
		cfg jetstream.StreamConfig
	}
	inbound := t.stream(StreamInbound, SubjectInboundPrefix+">", "every request that reached the help desk", t.Retention)
	var streams []streamSpec
	if t.spare() {
		// The spare first, so that CAU_INBOUND's source names a stream that exists.
		streams = append(streams, streamSpec{&h.Spare, t.stream(StreamInboundSpare, SubjectSparePrefix+">", "spare intake lane, sourced into CAU_INBOUND", t.Retention)})
		inbound.Sources = []*jetstream.StreamSource{spareSource()}
	}
	streams = append(streams, []streamSpec{
		{&h.Inbound, inbound},
		{&h.Triaged, t.stream(StreamTriaged, SubjectTriagedPrefix+">", "triaged items, one work queue per outcome", t.Retention)},
		{&h.DLQ, t.stream(StreamDLQ, SubjectDLQPrefix+">", "dead letters: the original message plus the reason", t.Retention)},
		{&h.Corrections, t.stream(StreamCorrections, SubjectCorrections, "agents' corrections of triage decisions, kept for evaluation", 0)},
	}...)
	for _, s := range streams {
		err := t.retry(ctx, "stream "+s.cfg.Name, func(actx context.Context) (err error) {
			*s.dst, err = ensureStream(actx, js, s.cfg)
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	obj := jetstream.ObjectStoreConfig{
		Bucket:      ObjectOriginals,
		Description: "raw originals: e-mail, scan, webhook body",
		Storage:     jetstream.FileStorage,
		Replicas:    t.Replicas,
		TTL:         t.Retention,
	}
	if err := t.retry(ctx, "object store "+obj.Bucket, func(actx context.Context) (err error) {
		h.Originals, err = ensureObjectStore(actx, js, obj)
		return err
	}); err != nil {
		return nil, err
	}
	buckets := []struct {
		dst *jetstream.KeyValue
		cfg jetstream.KeyValueConfig
	}{
		{&h.State, t.kv(KVState, "checkpoints and mailbox leases", 0)},
		{&h.Requests, t.kv(KVRequests, "request id to state, queue and sequences", t.Retention)},
		{&h.Leases, t.kv(KVLeases, "agent leases on claimed items", t.LeaseRetention)},
	}
	for _, b := range buckets {
		if err := t.retry(ctx, "kv "+b.cfg.Bucket, func(actx context.Context) (err error) {
			*b.dst, err = ensureKeyValue(actx, js, b.cfg)
			return err
		}); err != nil {
			return nil, err
		}
	}
	// Reads of the index and of the leases must see writes made through other replicas.
	h.Requests, h.Leases = LeaderReads(h.Requests, js), LeaderReads(h.Leases, js)
	return h, nil
}

func (t Topology) stream(name, subject, desc string, maxAge time.Duration) jetstream.StreamConfig {
	c := jetstream.StreamConfig{
		Name:        name,
		Description: desc,
		Subjects:    []string{subject},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      maxAge,
		Duplicates:  t.DedupWindow,
		Replicas:    t.Replicas,
		AllowDirect: true,
		Discard:     jetstream.DiscardOld,
	}
	return c
}

func (t Topology) kv(bucket, desc string, ttl time.Duration) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      bucket,
		Description: desc,
		History:     1,
		TTL:         ttl,
		Storage:     jetstream.FileStorage,
		Replicas:    t.Replicas,
	}
}

// ErrTopology wraps set-up errors that retrying cannot fix (an invalid configuration).
var ErrTopology = errors.New("jetstream topology")

// retry runs attempt until it succeeds, ctx ends, or it fails for good (channels/retry, with
// jitter so that replicas started together spread their attempts).
func (t Topology) retry(ctx context.Context, asset string, attempt func(context.Context) error) error {
	_, err := retry.Do(ctx, retry.Policy{Initial: 250 * time.Millisecond, Max: t.MaxBackoff, Jitter: 0.5}, func(ctx context.Context) (struct{}, error) {
		actx, cancel := context.WithTimeout(ctx, t.AttemptTimeout)
		defer cancel()
		err := attempt(actx)
		if err != nil && permanent(err) {
			return struct{}{}, fmt.Errorf("%w: %w: %w", ErrTopology, retry.ErrPermanent, err)
		}
		return struct{}{}, err
	}, func(n int, err error, wait time.Duration) {
		t.Logger.Warn("jetstream set-up not possible yet; retrying", "asset", asset, "attempt", n, "err", err, "in", wait.Round(time.Millisecond))
		if t.OnWait != nil {
			t.OnWait(asset, err)
		}
	})
	if err != nil {
		return fmt.Errorf("ensure %s: %w", asset, err)
	}
	return nil
}

// permanent reports errors that no retry can fix.
func permanent(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case 10052, // stream configuration invalid
			10065: // subjects overlap with an existing stream
			return true
		}
	}
	return errors.Is(err, nats.ErrAuthorization) || errors.Is(err, jetstream.ErrInvalidBucketName) ||
		errors.Is(err, jetstream.ErrInvalidStoreName) || errors.Is(err, jetstream.ErrHistoryTooLarge)
}

// ensureStream creates want, or updates the existing stream's differing settings.
func ensureStream(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig) (jetstream.Stream, error) {
	s, err := js.CreateStream(ctx, want)
	if err == nil {
		return s, nil
	}
	if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return nil, err
	}
	return reconcile(ctx, js, want.Name, func(c *jetstream.StreamConfig) {
		c.Description, c.Subjects, c.MaxAge, c.Duplicates = want.Description, want.Subjects, want.MaxAge, want.Duplicates
		c.Replicas, c.AllowDirect, c.Discard, c.Retention = want.Replicas, want.AllowDirect, want.Discard, want.Retention
		// Sources this set-up wants are added; an operator's other sources are kept.
		c.Sources = slices.Clone(c.Sources)
		for _, src := range want.Sources {
			if !slices.ContainsFunc(c.Sources, func(s *jetstream.StreamSource) bool { return s != nil && s.Name == src.Name }) {
				c.Sources = append(c.Sources, src)
			}
		}
	})
}

func ensureKeyValue(ctx context.Context, js jetstream.JetStream, want jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	return ensureBucket(ctx, js, "KV_"+want.Bucket,
		func() (jetstream.KeyValue, error) { return js.CreateKeyValue(ctx, want) },
		func(c *jetstream.StreamConfig) {
			c.Description, c.MaxAge, c.Replicas = want.Description, want.TTL, want.Replicas
			c.MaxMsgsPerSubject = int64(max(want.History, 1))
		},
		func() (jetstream.KeyValue, error) { return js.KeyValue(ctx, want.Bucket) })
}

func ensureObjectStore(ctx context.Context, js jetstream.JetStream, want jetstream.ObjectStoreConfig) (jetstream.ObjectStore, error) {
	return ensureBucket(ctx, js, "OBJ_"+want.Bucket,
		func() (jetstream.ObjectStore, error) { return js.CreateObjectStore(ctx, want) },
		func(c *jetstream.StreamConfig) {
			c.Description, c.MaxAge, c.Replicas = want.Description, want.TTL, want.Replicas
		},
		func() (jetstream.ObjectStore, error) { return js.ObjectStore(ctx, want.Bucket) })
}

// ensureBucket creates a KV or object-store bucket, or reconciles its stream and binds to it.
func ensureBucket[B any](ctx context.Context, js jetstream.JetStream, stream string, create func() (B, error), set func(*jetstream.StreamConfig), bind func() (B, error)) (B, error) {
	b, err := create()
	if err == nil {
		return b, nil
	}
	if !errors.Is(err, jetstream.ErrBucketExists) && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return b, err
	}
	if _, err := reconcile(ctx, js, stream, set); err != nil {
		return b, err
	}
	return bind()
}

// reconcile reads stream name, applies set to a copy of its configuration, and updates the stream
// only when that changed something.
func reconcile(ctx context.Context, js jetstream.JetStream, name string, set func(*jetstream.StreamConfig)) (jetstream.Stream, error) {
	s, err := js.Stream(ctx, name)
	if err != nil {
		return nil, err
	}
	have := s.CachedInfo().Config
	want := have
	want.Subjects = slices.Clone(have.Subjects)
	set(&want)
	if configEqual(have, want) {
		return s, nil
	}
	return js.UpdateStream(ctx, want)
}

func configEqual(a, b jetstream.StreamConfig) bool {
	return a.Description == b.Description && slices.Equal(a.Subjects, b.Subjects) && a.MaxAge == b.MaxAge &&
		a.Duplicates == b.Duplicates && a.Replicas == b.Replicas && a.AllowDirect == b.AllowDirect &&
		a.Discard == b.Discard && a.Retention == b.Retention && a.MaxMsgsPerSubject == b.MaxMsgsPerSubject &&
		slices.EqualFunc(a.Sources, b.Sources, func(x, y *jetstream.StreamSource) bool {
			return x != nil && y != nil && x.Name == y.Name
		})
}

// spareSource is CAU_INBOUND's source of the spare lane: every cau.spare.<channel> message is
// copied in as cau.inbound.<channel>, with its Nats-Msg-Id, so that JetStream drops a copy of a
// request CAU_INBOUND already has (the ack of the first publish was lost) within the dedup window.
func spareSource() *jetstream.StreamSource {
	return &jetstream.StreamSource{
		Name:              StreamInboundSpare,
		SubjectTransforms: []jetstream.SubjectTransformConfig{{Source: SubjectSparePrefix + ">", Destination: SubjectInboundPrefix + ">"}},
	}
}

// EnsureStream sets up one stream outside the core topology (a stage's own stream) the way
// EnsureTopology does: create first, update only differing settings, retry transient failures
// with backoff until ctx ends. t supplies the retry settings; its sizes are not used.
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig, t Topology) (jetstream.Stream, error) {
	return retried(ctx, t, "stream "+cfg.Name, func(actx context.Context) (jetstream.Stream, error) {
		return ensureStream(actx, js, cfg)
	})
}

// EnsureKeyValue is EnsureStream for a KV bucket.
func EnsureKeyValue(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig, t Topology) (jetstream.KeyValue, error) {
	return retried(ctx, t, "kv "+cfg.Bucket, func(actx context.Context) (jetstream.KeyValue, error) {
		return ensureKeyValue(actx, js, cfg)
	})
}

// EnsureObjectStore is EnsureStream for an object store bucket.
func EnsureObjectStore(ctx context.Context, js jetstream.JetStream, cfg jetstream.ObjectStoreConfig, t Topology) (jetstream.ObjectStore, error) {
	return retried(ctx, t, "object store "+cfg.Bucket, func(actx context.Context) (jetstream.ObjectStore, error) {
		return ensureObjectStore(actx, js, cfg)
	})
}

// EnsureConsumer creates or updates a durable consumer on s, retrying a failed attempt (a
// consumer leader not elected yet, no quorum, a timeout) with backoff until ctx ends, so that
// replicas starting together on a cluster all come up. t supplies the retry settings.
func EnsureConsumer(ctx context.Context, s jetstream.Stream, cfg jetstream.ConsumerConfig, t Topology) (jetstream.Consumer, error) {
	return retried(ctx, t, "consumer "+cfg.Durable, func(actx context.Context) (jetstream.Consumer, error) {
		return s.CreateOrUpdateConsumer(actx, cfg)
	})
}

// retried runs op with t's retry settings (defaults filled in) and returns what its last attempt
// made.
func retried[T any](ctx context.Context, t Topology, what string, op func(context.Context) (T, error)) (T, error) {
	t = t.withDefaults()
	var v T
	err := t.retry(ctx, what, func(actx context.Context) (err error) {
		v, err = op(actx)
		return err
	})
	return v, err
}
