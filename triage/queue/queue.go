// Package queue is the agents' side of caud: one work queue per triage outcome over CAU_TRIAGED, with
// leases an agent claims, extends, finishes, gives back or uses to correct the triage. A lease is the
// JetStream delivery of one item, recorded in KV cau_leases, so any caud replica can finish it; when
// the agent vanishes, JetStream's ack wait returns the item to its queue.
package queue

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/channels/retry"
	"github.com/ipn-cgsi/caud/triage"
	"github.com/ipn-cgsi/caud/triage/audit"
)

// Errors callers map to HTTP statuses. Lease errors come wrapped in a *LeaseError, which names the
// lease as it was found.
var (
	ErrUnknownQueue = errors.New("unknown queue")
	// ErrLeaseMalformed: the id is no lease id at all (400).
	ErrLeaseMalformed = errors.New("malformed lease id")
	// ErrLeaseUnknown: no such lease, or its record is older than the topology's LeaseRetention (404).
	ErrLeaseUnknown = errors.New("unknown lease")
	// ErrLeaseFinished: the lease was already done, released or re-routed (409).
	ErrLeaseFinished = errors.New("lease already finished")
	// ErrLeaseExpired: the lease ran out; JetStream handed the item back to its queue (410).
	ErrLeaseExpired  = errors.New("lease expired")
	ErrLeaseTooLong  = errors.New("lease would exceed the maximum lease")
	ErrBadReroute    = errors.New("invalid re-route")
	ErrFolioRequired = errors.New("an sai item needs its SAI folio or a reason why there is none")
	ErrBadDuration   = errors.New("invalid lease duration")
)

// LeaseError is a lease error with the lease it concerns (zero for malformed and unknown ids).
type LeaseError struct {
	Err   error
	Lease Lease
}

func (e *LeaseError) Error() string { return fmt.Sprintf("lease %s: %v", e.Lease.ID, e.Err) }
func (e *LeaseError) Unwrap() error { return e.Err }

// How a lease finished.
const (
	FinishedDone     = "done"
	FinishedReleased = "released"
	FinishedRerouted = "rerouted"
)

// Catalog is what a re-route needs of the service catalog.
type Catalog interface {
	Service(id string) (triage.Service, bool)
	Orientation(target string) (triage.Orientation, bool)
	Tests(serviceID string) []string
	Version() string
}

// Options configures Queues. Zero values are documented defaults.
type Options struct {
	// Lease is how long a claim lasts without an extend; it is the queue consumers' ack wait.
	// 0 means 15 min.
	Lease time.Duration
	// MaxLease bounds a lease's total life through extends; 0 means 8 h.
	MaxLease time.Duration
	// Catalog returns the current catalog for re-routes; required for Reroute.
	Catalog    func() Catalog
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Audit records the agents' actions in CAU_AUDIT; nil records nothing. The agent of an event is
	// audit.Actor(ctx) when set (the console's signed-in user), else the lease's or the call's agent.
	Audit *audit.Recorder
	// Trail, when set, adds each request's history to Get (View.History).
	Trail *audit.Trail
}

// Queues gives access to the work queues. Safe for concurrent use.
type Queues struct {
	h    *natsjs.Handles
	nc   *nats.Conn
	o    Options
	log  *slog.Logger
	cons map[string]jetstream.Consumer
	redo chan func(context.Context) (natsjs.RequestState, error)
}

// ConsumerName is the durable consumer behind a queue.
func ConsumerName(queue string) string { return "queue_" + queue }

// emptyWait is how long a claim on a queue that looks empty waits for an item.
const emptyWait = 200 * time.Millisecond

// margin keeps our idea of a lease's end safely before JetStream's, so a finished lease never acks a
// delivery that was already handed to someone else.
const margin = time.Second

// New creates or updates the durable consumers of every queue.
func New(ctx context.Context, h *natsjs.Handles, nc *nats.Conn, o Options) (*Queues, error) {
	if o.Lease == 0 {
		o.Lease = 15 * time.Minute
	}
	if o.MaxLease == 0 {
		o.MaxLease = 8 * time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Lease <= 2*margin {
		return nil, fmt.Errorf("queues: lease %s is too short", o.Lease)
	}
	log := channels.OrDiscard(o.Logger)
	q := &Queues{h: h, nc: nc, o: o, log: log, cons: map[string]jetstream.Consumer{}, redo: make(chan func(context.Context) (natsjs.RequestState, error), 1024)}
	for _, name := range triage.Outcomes {
		c, err := natsjs.EnsureConsumer(ctx, h.Triaged, jetstream.ConsumerConfig{
			Durable:       ConsumerName(name),
			Description:   "agents' work queue " + name,
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       o.Lease,
			MaxDeliver:    -1, // an item is never dropped because leases expired
			MaxAckPending: 100000,
			FilterSubject: natsjs.SubjectTriagedPrefix + name,
			DeliverPolicy: jetstream.DeliverAllPolicy,
		}, natsjs.Topology{Logger: log})
		if err != nil {
			return nil, fmt.Errorf("queue %s consumer: %w", name, err)
		}
		q.cons[name] = c
	}
	if o.Registerer != nil {
		o.Registerer.MustRegister(&collector{q: q})
	}
	return q, nil
}

// Stat is one queue's depth as GET /api/v1/queues and /metrics report it.
type Stat struct {
	Name             string  `json:"name"`
	Pending          uint64  `json:"pending"`
	InProgress       int     `json:"in_progress"`
	OldestAgeSeconds float64 `json:"oldest_age_seconds"`
}

// Stats reads every queue's depth from its consumer: pending (not yet claimed), in progress (claimed,
// not finished) and the age of the oldest unfinished item.
//
// In progress counts the leases agents hold (KV cau_leases), not JetStream's unacknowledged
// deliveries: those also include items released or expired that wait for their next delivery,
// which are pending again.
func (q *Queues) Stats(ctx context.Context) ([]Stat, error) {
	out := make([]Stat, 0, len(triage.Outcomes))
	now := q.o.Now()
	live, err := q.Leases(ctx)
	if err != nil {
		return nil, err
	}
	held := map[string]int{}
	for _, l := range live {
		held[l.Queue]++
	}
	for _, name := range triage.Outcomes {
		info, err := q.cons[name].Info(ctx)
		if err != nil {
			return nil, fmt.Errorf("queue %s info: %w", name, err)
		}
		s := Stat{Name: name, Pending: info.NumPending, InProgress: held[name]}
		if waiting := info.NumAckPending - held[name]; waiting > 0 {
			s.Pending += uint64(waiting)
		}
		if info.NumPending > 0 || info.NumAckPending > 0 {
			m, err := q.h.Triaged.GetMsg(ctx, info.AckFloor.Stream+1, jetstream.WithGetMsgSubject(natsjs.SubjectTriagedPrefix+name))
			if err == nil {
				s.OldestAgeSeconds = max(0, now.Sub(m.Time).Seconds())
			} else if !errors.Is(err, jetstream.ErrMsgNotFound) {
				return nil, fmt.Errorf("queue %s oldest: %w", name, err)
			}
		}
		out = append(out, s)
	}
	return out, nil
}

// Lease is an agent's hold on one item, stored in KV cau_leases under its ID. The record stays after
// the lease ends (Finished says how), so a late call gets the truth: finished (409) or expired (410),
// not "unknown".
type Lease struct {
	ID         string    `json:"id"`
	Queue      string    `json:"queue"`
	RequestID  string    `json:"request_id"`
	Seq        uint64    `json:"seq"`
	AckSubject string    `json:"ack_subject"`
	Agent      string    `json:"agent,omitempty"`
	ClaimedAt  time.Time `json:"claimed_at"`
	ExpiresAt  time.Time `json:"expires_at"`
	// AckedAt is when JetStream's ack timer last started (the claim or a renewal): JetStream hands
	// the item to someone else one Lease after it unless the lease is renewed, whatever ExpiresAt says.
	AckedAt    time.Time `json:"acked_at,omitzero"`
	Finished   string    `json:"finished,omitempty"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	// RerouteQueue is the queue a re-routed item went to.
	RerouteQueue string `json:"reroute_queue,omitempty"`
}

// end is when the lease really ends: its ExpiresAt, or earlier when JetStream's ack timer was not
// renewed in time (no caud process renewed it).
func (l Lease) end(lease time.Duration) time.Time {
	if l.AckedAt.IsZero() {
		return l.ExpiresAt
	}
	return minTime(l.ExpiresAt, l.AckedAt.Add(lease-margin))
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// live reports whether an agent holds the lease at now.
func (l Lease) live(now time.Time, lease time.Duration) bool {
	return l.Finished == "" && now.Before(l.end(lease))
}

// Claim is what an agent gets: the lease and the item.
type Claim struct {
	Lease     string          `json:"lease"`
	ExpiresAt time.Time       `json:"expires_at"`
	Item      json.RawMessage `json:"item"`
}

// Claim takes the next item of queue under a new lease; nil, nil when the queue is empty. Two
// concurrent claims never get the same item: JetStream delivers it to one pull at a time.
func (q *Queues) Claim(ctx context.Context, queue, agent string) (*Claim, error) {
	c, ok := q.cons[queue]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownQueue, queue)
	}
	t0 := q.o.Now()
	// A no-wait pull can answer "none" for an item stored a moment ago (the consumer learns of new
	// messages asynchronously), so an empty answer waits briefly for one.
	msgs, err := natsjs.Fetch(c, 1, emptyWait)
	if err != nil {
		return nil, fmt.Errorf("claim %s: %w", queue, err)
	}
	if len(msgs) == 0 {
		return nil, nil
	}
	m := msgs[0]
	md, err := m.Metadata()
	if err != nil {
		_ = m.Nak()
		return nil, fmt.Errorf("claim %s: metadata: %w", queue, err)
	}
	var head struct {
		Request struct {
			ID string `json:"id"`
		} `json:"request"`
	}
	if err := json.Unmarshal(m.Data(), &head); err != nil {
		_ = m.Nak()
		return nil, fmt.Errorf("claim %s: decode item: %w", queue, err)
	}
	l := Lease{
		ID:         ulid.MustNew(ulid.Timestamp(t0), rand.Reader).String(),
		Queue:      queue,
		RequestID:  head.Request.ID,
		Seq:        md.Sequence.Stream,
		AckSubject: m.Reply(),
		Agent:      agent,
		ClaimedAt:  t0.UTC(),
		ExpiresAt:  t0.Add(q.o.Lease - margin).UTC(),
		AckedAt:    t0.UTC(),
	}
	b, _ := json.Marshal(l)
	if _, err := q.h.Leases.Create(ctx, l.ID, b); err != nil {
		_ = m.Nak()
		return nil, fmt.Errorf("claim %s: record lease: %w", queue, err)
	}
	// In order with the worker's own entry, whichever lands first: see natsjs.UpdateState.
	q.setState(ctx, l.RequestID, l.Seq, func(st *natsjs.RequestState) {
		st.State, st.Queue, st.Agent, st.TriagedSeq = natsjs.StateClaimed, queue, agent, l.Seq
	})
	q.o.Audit.Record(ctx, audit.Event{ID: "claimed:" + l.ID, RequestID: l.RequestID, Type: audit.Claimed, At: t0, Agent: agent, Queue: queue, Lease: l.ID, ExpiresAt: &l.ExpiresAt})
	return &Claim{Lease: l.ID, ExpiresAt: l.ExpiresAt, Item: m.Data()}, nil
}

// lease reads a lease that an agent still holds, from the bucket's leader (a lease created through
// another replica a moment ago is found). Errors are *LeaseError.
func (q *Queues) lease(ctx context.Context, id string) (Lease, uint64, error) {
	var l Lease
	if _, err := ulid.ParseStrict(id); err != nil {
		return l, 0, &LeaseError{Err: ErrLeaseMalformed, Lease: Lease{ID: id}}
	}
	e, err := q.h.Leases.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return l, 0, &LeaseError{Err: ErrLeaseUnknown, Lease: Lease{ID: id}}
	}
	if err != nil {
		return l, 0, fmt.Errorf("lease %s: %w", id, err)
	}
	if err := json.Unmarshal(e.Value(), &l); err != nil {
		return l, 0, fmt.Errorf("lease %s: decode: %w", id, err)
	}
	switch {
	case l.Finished != "":
		return l, 0, &LeaseError{Err: ErrLeaseFinished, Lease: l}
	case !l.live(q.o.Now(), q.o.Lease):
		end := l.end(q.o.Lease)
		q.o.Audit.Record(ctx, audit.Event{ID: "expired:" + l.ID, RequestID: l.RequestID, Type: audit.Expired, At: end, Agent: l.Agent, Queue: l.Queue, Lease: l.ID})
		return l, 0, &LeaseError{Err: ErrLeaseExpired, Lease: l}
	}
	return l, e.Revision(), nil
}

// Lease returns a live lease by its ID (the web console shows the leased item and its countdown);
// a *LeaseError when it expired, was finished, is malformed or never existed.
func (q *Queues) Lease(ctx context.Context, id string) (Lease, error) {
	l, _, err := q.lease(ctx, id)
	return l, err
}

// finish ends a lease: it records how (compare-and-set, so of two concurrent calls on any replicas
// exactly one proceeds and the other is told the lease is finished), runs before (nil for none),
// then sends verb to the delivery. When before or the ack fails the record is put back and the call
// fails, so the agent can try again. also adds to the finished record.
func (q *Queues) finish(ctx context.Context, l Lease, rev uint64, how, verb string, also func(*Lease), before func() error) error {
	for attempt := 0; ; attempt++ {
		prev := l
		l.Finished, l.FinishedAt = how, q.o.Now().UTC()
		if also != nil {
			also(&l)
		}
		b, _ := json.Marshal(l)
		nrev, err := q.h.Leases.Update(ctx, l.ID, b, rev)
		if natsjs.IsConflict(err) && attempt < 5 {
			// Renewed or finished meanwhile: read it again (a finished lease ends here).
			if l, rev, err = q.lease(ctx, l.ID); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("%s lease %s: %w", how, l.ID, err)
		}
		err = nil
		if before != nil {
			err = before()
		}
		if err == nil {
			err = q.ack(ctx, prev, verb)
		}
		if err != nil {
			pb, _ := json.Marshal(prev)
			if _, rerr := q.h.Leases.Update(context.WithoutCancel(ctx), l.ID, pb, nrev); rerr != nil {
				q.log.Error("put back lease after failed ack", "lease", l.ID, "err", rerr)
			}
			return err
		}
		return nil
	}
}

// ack sends an acknowledgement verb to the delivery behind a lease and waits for the server's
// confirmation, so a done is never reported for an ack that was lost.
func (q *Queues) ack(ctx context.Context, l Lease, verb string) error {
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := q.nc.RequestWithContext(actx, l.AckSubject, []byte(verb)); err != nil {
		return fmt.Errorf("%s lease %s: %w", strings.TrimPrefix(verb, "+"), l.ID, err)
	}
	return nil
}

// Done finishes a lease: the item leaves its queue. folio is the SAI folio the agent registered; an
// sai item needs one, or noFolio, the agent's reason why it has none (ErrFolioRequired otherwise).
func (q *Queues) Done(ctx context.Context, leaseID, folio, noFolio string) error {
	l, rev, err := q.lease(ctx, leaseID)
	if err != nil {
		return err
	}
	folio, noFolio = strings.TrimSpace(folio), strings.TrimSpace(noFolio)
	if l.Queue == triage.OutcomeSAI && folio == "" && noFolio == "" {
		return &LeaseError{Err: ErrFolioRequired, Lease: l}
	}
	if err := q.finish(ctx, l, rev, FinishedDone, "+ACK", nil, nil); err != nil {
		return err
	}
	q.setState(ctx, l.RequestID, l.Seq, func(st *natsjs.RequestState) {
		st.State, st.Folio = natsjs.StateDone, folio
		if folio == "" && noFolio != "" {
			st.Reason = "sin folio: " + noFolio
		}
	})
	q.o.Audit.Record(ctx, audit.Event{ID: "done:" + l.ID, RequestID: l.RequestID, Type: audit.Done, Agent: l.Agent, Queue: l.Queue, Lease: l.ID, Folio: folio, Note: noFolio})
	return nil
}

// Release gives the item back to its queue at once.
func (q *Queues) Release(ctx context.Context, leaseID string) error {
	l, rev, err := q.lease(ctx, leaseID)
	if err != nil {
		return err
	}
	if err := q.finish(ctx, l, rev, FinishedReleased, "-NAK", nil, nil); err != nil {
		return err
	}
	q.setState(ctx, l.RequestID, l.Seq, func(st *natsjs.RequestState) {
		st.State, st.Agent = natsjs.StateQueued, ""
	})
	q.o.Audit.Record(ctx, audit.Event{ID: "released:" + l.ID, RequestID: l.RequestID, Type: audit.Released, Agent: l.Agent, Queue: l.Queue, Lease: l.ID})
	return nil
}

// Extend keeps a lease longer: for d from now (0 means one Lease period), up to MaxLease after the
// claim. JetStream keeps an item for one Lease period after its last renewal, so a longer d is
// honoured by renewals: every caud process running Run renews the leases that need it, and Extend
// renews at once. A d shorter than a Lease period gets a whole period (the item could not return to
// its queue earlier anyway). It returns when the lease now ends.
func (q *Queues) Extend(ctx context.Context, leaseID string, d time.Duration) (time.Time, error) {
	if d < 0 {
		return time.Time{}, ErrBadDuration
	}
	l, rev, err := q.lease(ctx, leaseID)
	if err != nil {
		return time.Time{}, err
	}
	now := q.o.Now()
	until := now.Add(max(d, q.o.Lease-margin))
	if until.Sub(l.ClaimedAt) > q.o.MaxLease {
		return time.Time{}, &LeaseError{Err: fmt.Errorf("%w (%s)", ErrLeaseTooLong, q.o.MaxLease), Lease: l}
	}
	if err := q.ack(ctx, l, "+WPI"); err != nil {
		return time.Time{}, err
	}
	l.ExpiresAt, l.AckedAt = maxTime(l.ExpiresAt, until).UTC(), now.UTC()
	b, _ := json.Marshal(l)
	if _, err := q.h.Leases.Update(ctx, l.ID, b, rev); err != nil {
		return time.Time{}, fmt.Errorf("extend lease %s: %w", l.ID, err)
	}
	q.o.Audit.Record(ctx, audit.Event{ID: "extended:" + l.ID + ":" + l.ExpiresAt.Format(time.RFC3339Nano), RequestID: l.RequestID, Type: audit.Extended, At: now, Agent: l.Agent, Queue: l.Queue, Lease: l.ID, ExpiresAt: &l.ExpiresAt})
	return l.ExpiresAt, nil
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Leases returns the leases agents hold now, read from KV cau_leases (what every replica sees).
func (q *Queues) Leases(ctx context.Context) ([]Lease, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wa, err := q.h.Leases.WatchAll(wctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("list leases: %w", err)
	}
	defer func() { _ = wa.Stop() }()
	now := q.o.Now()
	var out []Lease
	for {
		select {
		case e, ok := <-wa.Updates():
			if !ok {
				return nil, fmt.Errorf("list leases: watcher closed")
			}
			if e == nil {
				return out, nil
			}
			var l Lease
			if json.Unmarshal(e.Value(), &l) == nil && l.live(now, q.o.Lease) {
				out = append(out, l)
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("list leases: %w", ctx.Err())
		}
	}
}

// Run renews, until ctx ends, the leases extended beyond one Lease period, so that JetStream keeps
// the item as long as the agent asked. Any number of caud processes may run it: a renewal is an
// in-progress ack (harmless twice) recorded with compare-and-set. It also finishes the index writes
// that failed in agents' calls (a full store).
func (q *Queues) Run(ctx context.Context) error {
	go q.redoIndex(ctx)
	every := max(q.o.Lease/4, time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := q.renew(ctx, 2*every); err != nil && ctx.Err() == nil {
			q.log.Warn("renew leases", "err", err)
		}
	}
}

// renew renews the leases that need JetStream to keep their item beyond one Lease period and have
// less than ahead left of JetStream's ack timer.
func (q *Queues) renew(ctx context.Context, ahead time.Duration) error {
	held, err := q.Leases(ctx)
	if err != nil {
		return err
	}
	now := q.o.Now()
	for _, l := range held {
		if jsEnd := l.AckedAt.Add(q.o.Lease - margin); !l.ExpiresAt.After(jsEnd) || jsEnd.Sub(now) > ahead {
			continue
		}
		e, err := q.h.Leases.Get(ctx, l.ID)
		if err != nil {
			continue
		}
		var cur Lease
		if json.Unmarshal(e.Value(), &cur) != nil || !cur.live(now, q.o.Lease) {
			continue
		}
		if err := q.ack(ctx, cur, "+WPI"); err != nil {
			return err
		}
		cur.AckedAt = now.UTC()
		b, _ := json.Marshal(cur)
		if _, err := q.h.Leases.Update(ctx, cur.ID, b, e.Revision()); err != nil && !natsjs.IsConflict(err) {
			return fmt.Errorf("renew lease %s: %w", cur.ID, err)
		}
	}
	return nil
}

// Reroute is an agent's correction of a triage.
type Reroute struct {
	Outcome string `json:"outcome"`
	Service string `json:"service,omitempty"`
	Kind    string `json:"kind,omitempty"`
	Target  string `json:"target,omitempty"`
	Note    string `json:"note,omitempty"`
	Agent   string `json:"agent,omitempty"`
}

// Reroute corrects the triage of a leased item: the corrected item (keeping the engine's decision in
// Previous, so corrections can be evaluated later) goes to the queue of the new outcome, and the old
// delivery is finished. Errors wrapping ErrBadReroute carry a message in Spanish for the agent.
func (q *Queues) Reroute(ctx context.Context, leaseID string, r Reroute) (string, error) {
	l, rev, err := q.lease(ctx, leaseID)
	if err != nil {
		return "", err
	}
	raw, err := q.h.Triaged.GetMsg(ctx, l.Seq)
	if err != nil {
		return "", fmt.Errorf("reroute %s: read item: %w", l.ID, err)
	}
	var item triage.Item
	if err := json.Unmarshal(raw.Data, &item); err != nil {
		return "", fmt.Errorf("reroute %s: decode item: %w", l.ID, err)
	}
	nt, err := q.corrected(item.Triage, r)
	if err != nil {
		return "", err
	}
	prev := item.Triage
	item.Previous = &prev
	item.Triage = nt
	item.TriagedAt = q.o.Now().UTC()
	body, _ := json.Marshal(item)
	out := nats.NewMsg(natsjs.SubjectTriagedPrefix + nt.Outcome)
	out.Data = body
	natsjs.SetCloudEvent(out.Header, "rerouted:"+l.ID, raw.Header.Get("ce-source"), natsjs.TypeTriaged, item.TriagedAt)
	out.Header.Set(jetstream.MsgIDHeader, "rerouted:"+l.ID)
	out.Header.Set("Cau-Rerouted-From", l.Queue)
	// The corrected item is published once the lease is recorded as re-routed (so a concurrent done
	// cannot also win) and before the old delivery is finished (so the item is never in no queue).
	// Its Nats-Msg-Id comes from the lease: a retry publishes nothing new.
	var ack *jetstream.PubAck
	err = q.finish(ctx, l, rev, FinishedRerouted, "+ACK", func(l *Lease) { l.RerouteQueue = nt.Outcome }, func() error {
		var err error
		if ack, err = q.h.JS.PublishMsg(ctx, out); err != nil {
			return fmt.Errorf("reroute %s: publish: %w", l.ID, err)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	q.setState(ctx, l.RequestID, l.Seq, func(st *natsjs.RequestState) {
		st.State, st.Queue, st.TriagedSeq, st.Agent = natsjs.StateQueued, nt.Outcome, ack.Sequence, ""
	})
	q.recordCorrection(ctx, l.ID, item, prev, r)
	q.o.Audit.Record(ctx, audit.Event{ID: "rerouted:" + l.ID, RequestID: l.RequestID, Type: audit.Rerouted, At: item.TriagedAt, Agent: cmp.Or(r.Agent, l.Agent),
		Lease: l.ID, From: l.Queue, To: nt.Outcome, Service: r.Service, Target: r.Target, Kind: nt.Kind, Note: r.Note})
	q.log.Info("triage corrected by agent", "request", l.RequestID, "from", l.Queue, "to", nt.Outcome, "agent", r.Agent)
	return nt.Outcome, nil
}

// Correction is an agent's correction of a triage, one JSON line on cau.corrections. Its labels use
// the names of labelled examples (triage.Example: outcome, tipo, area), so `cauctl triage eval` runs
// on exported corrections as on any labelled corpus.
type Correction struct {
	ID             string    `json:"id"`
	Channel        string    `json:"channel"`
	Subject        string    `json:"subject,omitempty"`
	Body           string    `json:"body"`
	Outcome        string    `json:"outcome"`
	Tipo           string    `json:"tipo"`
	Area           string    `json:"area"`
	Previous       Label     `json:"previous"`
	Agent          string    `json:"agent,omitempty"`
	Note           string    `json:"note,omitempty"`
	At             time.Time `json:"at"`
	CatalogVersion string    `json:"catalog_version,omitempty"`
}

// Label is a triage in the labels of the labelled examples (outcome/tipo/area, as cauctl triage eval reads them): tipo and area are "-" when they do not apply.
type Label struct {
	Outcome string `json:"outcome"`
	Tipo    string `json:"tipo"`
	Area    string `json:"area"`
}

func labelOf(t triage.Triage) Label {
	l := Label{Outcome: t.Outcome, Tipo: t.Kind, Area: t.Area}
	if l.Tipo == "" {
		l.Tipo = "-"
	}
	if l.Area == "" || t.Outcome == triage.OutcomeInformativo || t.Outcome == triage.OutcomeAclaracion {
		l.Area = "-"
	}
	return l
}

// recordCorrection keeps the correction durably; a failure is logged: the re-route itself is done.
func (q *Queues) recordCorrection(ctx context.Context, leaseID string, item triage.Item, prev triage.Triage, r Reroute) {
	now := labelOf(item.Triage)
	c := Correction{
		ID: item.Request.ID, Channel: item.Request.Channel, Subject: item.Request.Subject, Body: item.Request.Text,
		Outcome: now.Outcome, Tipo: now.Tipo, Area: now.Area, Previous: labelOf(prev),
		Agent: r.Agent, Note: r.Note, At: item.TriagedAt, CatalogVersion: prev.CatalogVersion,
	}
	b, _ := json.Marshal(c)
	if _, err := q.h.JS.Publish(ctx, natsjs.SubjectCorrections, b, jetstream.WithMsgID("correction:"+leaseID)); err != nil {
		q.log.Warn("record correction", "request", c.ID, "err", err)
	}
}

// Corrections writes every recorded correction as JSON Lines to w, oldest first.
func (q *Queues) Corrections(ctx context.Context, w io.Writer) (int, error) {
	info, err := q.h.Corrections.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("corrections: %w", err)
	}
	n := 0
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := q.h.Corrections.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return n, fmt.Errorf("correction %d: %w", seq, err)
		}
		if _, err := w.Write(append(m.Data, '\n')); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func (q *Queues) corrected(prev triage.Triage, r Reroute) (triage.Triage, error) {
	bad := func(format string, a ...any) (triage.Triage, error) {
		return triage.Triage{}, fmt.Errorf("%w: %s", ErrBadReroute, fmt.Sprintf(format, a...))
	}
	if _, ok := q.cons[r.Outcome]; !ok {
		return bad("outcome %q desconocido; use sai, informativo, aclaracion o no_competente", r.Outcome)
	}
	if q.o.Catalog == nil {
		return bad("no hay catálogo cargado")
	}
	cat := q.o.Catalog()
	by := "agent"
	if r.Agent != "" {
		by = "agent:" + r.Agent
	}
	t := triage.Triage{Outcome: r.Outcome, Confidence: 1, CatalogVersion: cat.Version(), By: by,
		Explanation: "Corregido por agente (antes: " + prev.Outcome + ")"}
	if r.Note != "" {
		t.Explanation += ": " + r.Note
	}
	kind := r.Kind
	switch r.Outcome {
	case triage.OutcomeSAI, triage.OutcomeInformativo:
		if kind == "" {
			kind = prev.Kind
		}
		if kind != triage.KindFalla && kind != triage.KindServicio {
			return bad("indique kind: falla o servicio")
		}
		t.Kind = kind
	default:
		if kind != "" {
			return bad("kind solo aplica a sai e informativo")
		}
	}
	switch r.Outcome {
	case triage.OutcomeSAI:
		s, ok := cat.Service(r.Service)
		if !ok {
			return bad("servicio %q no existe en el catálogo", r.Service)
		}
		t.Service, t.Area = &s, s.Area
		if kind == triage.KindFalla {
			t.Tests = cat.Tests(s.ID)
		}
	case triage.OutcomeInformativo:
		t.Concept = triage.ConceptInformativo
		if c, ok := cat.(interface{ Concept() string }); ok {
			t.Concept = c.Concept() // the loaded catalog names its own concept
		}
	case triage.OutcomeNoCompetente:
		o, ok := cat.Orientation(r.Target)
		if !ok {
			return bad("destino de orientación %q no existe en el catálogo", r.Target)
		}
		t.Orientation, t.Area = &o, o.Target
	case triage.OutcomeAclaracion:
		t.Questions = prev.Questions
	}
	if r.Outcome != triage.OutcomeSAI && r.Service != "" {
		return bad("service solo aplica a sai")
	}
	if r.Outcome != triage.OutcomeNoCompetente && r.Target != "" {
		return bad("target solo aplica a no_competente")
	}
	return t, nil
}

// setState records what an agent did with item seq in the request index, with compare-and-set and
// in order: a change is applied only while the index names that item or an earlier one (never
// over a re-route's newer item), whether the worker's own entry has landed yet or not. A failure is
// logged, never fatal: the queue itself is the source of truth for what agents see.
func (q *Queues) setState(ctx context.Context, id string, seq uint64, fn func(*natsjs.RequestState)) {
	if id == "" {
		return
	}
	update := func(ctx context.Context) (natsjs.RequestState, error) {
		return natsjs.UpdateState(ctx, q.h.Requests, id, func(st *natsjs.RequestState) error {
			if st.TriagedSeq > seq {
				return natsjs.ErrUnchanged
			}
			fn(st)
			return nil
		})
	}
	// Retried (a full store, a leader election) for a few seconds in the call, then by Run until it
	// lands, so the index stays truthful.
	ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), indexRetry)
	defer cancel()
	if _, err := retry.Do(ictx, indexPolicy, update, nil); err != nil {
		q.log.Warn("index state, retrying in the background", "id", id, "err", err)
		select {
		case q.redo <- update:
		default:
			q.log.Error("index state lost: too many pending index writes", "id", id)
		}
	}
}

// indexRetry bounds the index write retries inside an agent's call; indexPolicy paces them.
const indexRetry = 3 * time.Second

var indexPolicy = retry.Policy{Initial: 50 * time.Millisecond, Max: time.Second, Jitter: 0.3}

// redoIndex retries, until they land or ctx ends, the index writes that failed in agents' calls.
func (q *Queues) redoIndex(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case update := <-q.redo:
			if _, err := retry.Do(ctx, indexPolicy, update, nil); err != nil && ctx.Err() == nil {
				q.log.Error("index state", "err", err)
			}
		}
	}
}

// View is a request with its triage and state, as GET /api/v1/requests/{id} answers it.
type View struct {
	Request   json.RawMessage `json:"request"`
	Triage    json.RawMessage `json:"triage"`
	State     string          `json:"state"`
	Queue     string          `json:"queue,omitempty"`
	Folio     string          `json:"folio,omitempty"`
	Reason    string          `json:"reason,omitempty"`
	UpdatedAt time.Time       `json:"updated_at"`
	// History is who did what, oldest first (Options.Trail); absent when it could not be read.
	History []audit.Event `json:"history,omitempty"`
}

// Get returns one request with its current triage and state; natsjs.ErrUnknownRequest when absent.
func (q *Queues) Get(ctx context.Context, id string) (*View, error) {
	if _, err := ulid.ParseStrict(id); err != nil {
		return nil, natsjs.ErrUnknownRequest
	}
	st, _, err := natsjs.GetState(ctx, q.h.Requests, id)
	if err != nil {
		return nil, err
	}
	v := &View{State: st.State, Queue: st.Queue, Folio: st.Folio, Reason: st.Reason, UpdatedAt: st.UpdatedAt, Triage: json.RawMessage("null")}
	if q.o.Trail != nil {
		if v.History, err = q.o.Trail.History(ctx, id); err != nil {
			q.log.Warn("read history", "id", id, "err", err)
		}
	}
	if st.TriagedSeq > 0 {
		m, err := q.h.Triaged.GetMsg(ctx, st.TriagedSeq)
		if err != nil {
			return nil, fmt.Errorf("get %s: triaged item: %w", id, err)
		}
		var item struct {
			Request json.RawMessage `json:"request"`
			Triage  json.RawMessage `json:"triage"`
		}
		if err := json.Unmarshal(m.Data, &item); err != nil {
			return nil, fmt.Errorf("get %s: decode item: %w", id, err)
		}
		v.Request, v.Triage = item.Request, item.Triage
		return v, nil
	}
	if st.InboundSeq == 0 {
		return nil, natsjs.ErrUnknownRequest
	}
	m, err := q.h.Inbound.GetMsg(ctx, st.InboundSeq)
	if err != nil {
		return nil, fmt.Errorf("get %s: request: %w", id, err)
	}
	v.Request = m.Data
	return v, nil
}

// collector exports queue depth at scrape time from the same Stats the API answers with, so
// /metrics and GET /api/v1/queues always agree.
type collector struct{ q *Queues }

var (
	descPending    = prometheus.NewDesc("caud_queue_pending", "Items waiting to be claimed, per queue.", []string{"queue"}, nil)
	descInProgress = prometheus.NewDesc("caud_queue_in_progress", "Items claimed and not finished, per queue.", []string{"queue"}, nil)
	descOldest     = prometheus.NewDesc("caud_queue_oldest_age_seconds", "Age of the oldest unfinished item, per queue.", []string{"queue"}, nil)
	descUp         = prometheus.NewDesc("caud_queue_stats_up", "1 when queue depth could be read from JetStream.", nil, nil)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descPending
	ch <- descInProgress
	ch <- descOldest
	ch <- descUp
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	stats, err := c.q.Stats(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, 1)
	for _, s := range stats {
		ch <- prometheus.MustNewConstMetric(descPending, prometheus.GaugeValue, float64(s.Pending), s.Name)
		ch <- prometheus.MustNewConstMetric(descInProgress, prometheus.GaugeValue, float64(s.InProgress), s.Name)
		ch <- prometheus.MustNewConstMetric(descOldest, prometheus.GaugeValue, s.OldestAgeSeconds, s.Name)
	}
}
