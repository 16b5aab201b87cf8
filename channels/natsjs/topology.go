package natsjs

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Names of the JetStream topology. They are a contract: ops and other services use them.
const (
	StreamInbound = "CAU_INBOUND"
	StreamTriaged = "CAU_TRIAGED"
	StreamDLQ     = "CAU_DLQ"
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
	return t
}

// Handles are the created topology's streams and buckets.
type Handles struct {
	JS          jetstream.JetStream
	Inbound     jetstream.Stream
	Triaged     jetstream.Stream
	DLQ         jetstream.Stream
	Corrections jetstream.Stream
	Originals   jetstream.ObjectStore
	State       jetstream.KeyValue
	Requests    jetstream.KeyValue
	Leases      jetstream.KeyValue
}

// EnsureTopology creates or updates every stream and bucket of DESIGN.md. It is idempotent: caud
// calls it at every start, and several replicas may call it at once.
func EnsureTopology(ctx context.Context, js jetstream.JetStream, t Topology) (*Handles, error) {
	t = t.withDefaults()
	h := &Handles{JS: js}
	stream := func(name, subjects, desc string) (jetstream.Stream, error) {
		s, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			Name:        name,
			Description: desc,
			Subjects:    []string{subjects},
			Storage:     jetstream.FileStorage,
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      t.Retention,
			Duplicates:  t.DedupWindow,
			Replicas:    t.Replicas,
			AllowDirect: true,
			Discard:     jetstream.DiscardOld,
		})
		if err != nil {
			return nil, fmt.Errorf("ensure stream %s: %w", name, err)
		}
		return s, nil
	}
	var err error
	if h.Inbound, err = stream(StreamInbound, SubjectInboundPrefix+">", "every request that reached the help desk"); err != nil {
		return nil, err
	}
	if h.Triaged, err = stream(StreamTriaged, SubjectTriagedPrefix+">", "triaged items, one work queue per outcome"); err != nil {
		return nil, err
	}
	if h.DLQ, err = stream(StreamDLQ, SubjectDLQPrefix+">", "dead letters: the original message plus the reason"); err != nil {
		return nil, err
	}
	if h.Corrections, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        StreamCorrections,
		Description: "agents' corrections of triage decisions, kept for evaluation",
		Subjects:    []string{SubjectCorrections},
		Storage:     jetstream.FileStorage,
		Duplicates:  t.DedupWindow,
		Replicas:    t.Replicas,
		AllowDirect: true,
	}); err != nil {
		return nil, fmt.Errorf("ensure stream %s: %w", StreamCorrections, err)
	}
	if h.Originals, err = js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      ObjectOriginals,
		Description: "raw originals: e-mail, scan, webhook body",
		Storage:     jetstream.FileStorage,
		Replicas:    t.Replicas,
		TTL:         t.Retention,
	}); err != nil {
		return nil, fmt.Errorf("ensure object store %s: %w", ObjectOriginals, err)
	}
	kv := func(bucket, desc string, ttl time.Duration) (jetstream.KeyValue, error) {
		b, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      bucket,
			Description: desc,
			History:     1,
			TTL:         ttl,
			Storage:     jetstream.FileStorage,
			Replicas:    t.Replicas,
		})
		if err != nil {
			return nil, fmt.Errorf("ensure kv %s: %w", bucket, err)
		}
		return b, nil
	}
	if h.State, err = kv(KVState, "checkpoints and mailbox leases", 0); err != nil {
		return nil, err
	}
	if h.Requests, err = kv(KVRequests, "request id to state, queue and sequences", t.Retention); err != nil {
		return nil, err
	}
	if h.Leases, err = kv(KVLeases, "agent leases on claimed items", t.LeaseRetention); err != nil {
		return nil, err
	}
	// Reads of the index and of the leases must see writes made through other replicas.
	h.Requests, h.Leases = LeaderReads(h.Requests, js), LeaderReads(h.Leases, js)
	return h, nil
}
