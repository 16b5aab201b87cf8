// Package audit keeps the durable record of who did what to each request, and when: stream CAU_AUDIT,
// one subject per request (cau.audit.<request id>), one message per event, each published with a
// deterministic Nats-Msg-Id ("audit:" + Event.ID) so a retry or a replayed source never doubles it.
//
// Two writers feed it. The Projector derives what the pipeline did from the streams that already
// record it (received from CAU_INBOUND, triaged from CAU_TRIAGED, dead-lettered from CAU_DLQ, notified
// from KV cau_notify), through durable consumers shared by every replica: nothing in channels/ needs
// to know about auditing, and an event is never lost, only delayed. The Recorder takes the agents'
// actions (claimed, released, extended, re-routed, done, lease expired) from triage/queue, which
// alone knows who acted and why.
//
// Readers use Trail.History (the console calls it directly; the API serves it at
// GET /api/v1/requests/{id}/history).
package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	"github.com/ipn-cgsi/caud/channels/natsjs"
)

// Names of the audit topology (a contract, like natsjs's names).
const (
	// Stream is the audit stream.
	Stream = "CAU_AUDIT"
	// SubjectPrefix + request id is the subject of a request's events.
	SubjectPrefix = "cau.audit."
	// Consumer is the durable name of the Projector's consumer on each source stream.
	Consumer = "audit"
	// MsgIDPrefix + Event.ID is the Nats-Msg-Id of an event.
	MsgIDPrefix = "audit:"
	// TypeEvent is the CloudEvents type of an audit message.
	TypeEvent = "mx.ipn.cau.audit.v1"
)

// Event types, in the order they usually happen.
const (
	Received = "received" // reached the help desk (Channel, Source)
	Replayed = "replayed" // an operator replayed it from the dead letters (Channel, Source)
	Triaged  = "triaged"  // the engine decided (Outcome, Kind, Service, Group, Confidence, By)
	Claimed  = "claimed"  // an agent took it (Agent, Queue, Lease, ExpiresAt)
	Extended = "extended" // an agent kept it longer (Agent, Lease, ExpiresAt)
	Released = "released" // an agent gave it back to its queue (Agent, Queue, Lease)
	Expired  = "expired"  // a lease lapsed; the item went back to its queue (Agent, Lease)
	Rerouted = "rerouted" // an agent corrected the triage (Agent, From, To, Kind, Service or Target, Note)
	Done     = "done"     // an agent finished it (Agent, Queue, Folio, or Note: why there is no folio)
	Dead     = "dead"     // a stage could not process it (Stage, Reason)
	Notified = "notified" // a notice reached the requester (Notice, Channel, Recipient)
)

// Event is one entry of a request's history. Which fields are set depends on Type (see the Type
// constants); the JSON names are the API's.
type Event struct {
	// ID is unique per event and deterministic (e.g. "done:<lease id>"), so the same event
	// recorded twice is the same message.
	ID        string    `json:"id"`
	RequestID string    `json:"request_id"`
	Type      string    `json:"type"`
	At        time.Time `json:"at"`
	// Agent is who acted: the API's agent field, or the console's signed-in user (see WithActor).
	Agent string `json:"agent,omitempty"`

	Channel    string     `json:"channel,omitempty"`
	Source     string     `json:"source,omitempty"`
	Outcome    string     `json:"outcome,omitempty"`
	Kind       string     `json:"kind,omitempty"`
	Service    string     `json:"service,omitempty"`
	Target     string     `json:"target,omitempty"`
	Group      string     `json:"group,omitempty"`
	Confidence float64    `json:"confidence,omitempty"`
	By         string     `json:"by,omitempty"`
	Queue      string     `json:"queue,omitempty"`
	Lease      string     `json:"lease,omitempty"`
	ExpiresAt  *time.Time `json:"expires_at,omitempty"`
	From       string     `json:"from,omitempty"`
	To         string     `json:"to,omitempty"`
	Note       string     `json:"note,omitempty"`
	Folio      string     `json:"folio,omitempty"`
	Stage      string     `json:"stage,omitempty"`
	Reason     string     `json:"reason,omitempty"`
	Notice     string     `json:"notice,omitempty"`
	Recipient  string     `json:"recipient,omitempty"`
}

// ErrUnknownRequest is returned by History for an id that is no request id.
var ErrUnknownRequest = errors.New("unknown request")

// validID reports whether id can be a request id (a ULID), and so a subject token.
func validID(id string) bool {
	_, err := ulid.ParseStrict(id)
	return err == nil
}

// message builds the JetStream message of an event.
func message(e Event) (*nats.Msg, error) {
	if !validID(e.RequestID) {
		return nil, fmt.Errorf("audit event %q: request id %q is not a ULID", e.ID, e.RequestID)
	}
	if e.ID == "" || e.Type == "" {
		return nil, fmt.Errorf("audit event for %s: empty id or type", e.RequestID)
	}
	if e.At.IsZero() {
		e.At = time.Now()
	}
	e.At = e.At.UTC()
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("audit event %s: encode: %w", e.ID, err)
	}
	m := nats.NewMsg(SubjectPrefix + e.RequestID)
	m.Data = b
	m.Header.Set(jetstream.MsgIDHeader, MsgIDPrefix+e.ID)
	m.Header.Set("ce-specversion", "1.0")
	m.Header.Set("ce-id", e.ID)
	m.Header.Set("ce-source", "caud/audit")
	m.Header.Set("ce-type", TypeEvent)
	m.Header.Set("ce-time", e.At.Format(time.RFC3339Nano))
	m.Header.Set("content-type", "application/json")
	return m, nil
}

// TrailOptions sizes CAU_AUDIT. Zero values are documented defaults.
type TrailOptions struct {
	// Replicas of the stream; 0 means 1 (3 on a cluster).
	Replicas int
	// Retention is how long events are kept; 0 means 400 days (who did what outlives the requests
	// themselves, which CAU_INBOUND keeps 90 days by default).
	Retention time.Duration
	// DedupWindow is the Nats-Msg-Id duplicate window; 0 means 1 h. History also drops repeated
	// event ids, so a duplicate published after the window is still shown once.
	DedupWindow time.Duration
}

// Trail is the audit record. Safe for concurrent use.
type Trail struct {
	js     jetstream.JetStream
	stream jetstream.Stream
}

// Open creates or updates CAU_AUDIT and returns the Trail over it. It is idempotent; several replicas
// may call it at once.
func Open(ctx context.Context, js jetstream.JetStream, o TrailOptions) (*Trail, error) {
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.Retention == 0 {
		o.Retention = 400 * 24 * time.Hour
	}
	if o.DedupWindow == 0 {
		o.DedupWindow = time.Hour
	}
	s, err := natsjs.EnsureStream(ctx, js, jetstream.StreamConfig{
		Name:        Stream,
		Description: "who did what to each request, and when",
		Subjects:    []string{SubjectPrefix + "*"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      o.Retention,
		Duplicates:  o.DedupWindow,
		Replicas:    o.Replicas,
		// Reads go to the stream leader, so a history read right after an action shows it.
		AllowDirect: false,
		Discard:     jetstream.DiscardOld,
	}, natsjs.Topology{})
	if err != nil {
		return nil, fmt.Errorf("ensure stream %s: %w", Stream, err)
	}
	return &Trail{js: js, stream: s}, nil
}

// maxEvents bounds one history read; a request with more events is a runaway loop, and its first
// maxEvents events are what matters.
const maxEvents = 1000

// History returns a request's events, oldest first (by Event.At, then by record order), each event id
// once. A request with no events yet gives an empty slice and no error; an id that is no request id
// gives ErrUnknownRequest.
func (t *Trail) History(ctx context.Context, requestID string) ([]Event, error) {
	if !validID(requestID) {
		return nil, ErrUnknownRequest
	}
	subject := SubjectPrefix + requestID
	seen := map[string]bool{}
	out := []Event{}
	for seq := uint64(1); len(out) < maxEvents; {
		m, err := t.stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("history %s: %w", requestID, err)
		}
		seq = m.Sequence + 1
		var e Event
		if err := json.Unmarshal(m.Data, &e); err != nil || e.ID == "" || seen[e.ID] {
			continue
		}
		seen[e.ID] = true
		out = append(out, e)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out, nil
}

type actorKey struct{}

// WithActor returns a context that names who is acting (the console's signed-in user). The Recorder's
// events for actions taken under that context carry it as Agent, in preference to the agent named in
// the request or the lease.
func WithActor(ctx context.Context, agent string) context.Context {
	return context.WithValue(ctx, actorKey{}, strings.TrimSpace(agent))
}

// Actor returns the agent WithActor put in ctx, or "".
func Actor(ctx context.Context) string {
	s, _ := ctx.Value(actorKey{}).(string)
	return s
}
