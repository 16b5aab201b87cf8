package natsjs

// Intake lanes on a cluster.
//
// nats-server elects a new leader of a raft group only after its election timeout (4 to 9 s in
// v2.15, fixed, not configurable) when the leader's process dies; a graceful stop hands leadership
// over at once. No write to a group whose leader died can be acknowledged in between, and nothing
// a client can ask for makes a follower campaign sooner (a leader stepdown needs a leader). So
// intake never depends on one group alone:
//
//   - Two inbound lanes. The sink publishes to CAU_INBOUND; when no ack comes within
//     FailoverAfter, or the stream has no leader (no responders), it publishes the same message,
//     same Nats-Msg-Id, to CAU_INBOUND_SPARE (subjects cau.spare.<channel>), and the first ack
//     wins. CAU_INBOUND sources the spare (subject cau.spare.X becomes cau.inbound.X), and
//     JetStream drops a sourced copy whose Nats-Msg-Id it already has. Everything downstream
//     (triage, search, audit, archive) reads CAU_INBOUND alone, as before; a request the spare
//     took reaches it once CAU_INBOUND has a leader again.
//   - Leaders apart. KeepLeadersApart keeps the leaders of CAU_INBOUND, CAU_INBOUND_SPARE and KV
//     cau_requests (the desk's idempotency records) on different servers, moving the spare's or
//     the bucket's leader with a leader stepdown that names a preferred server (nats-server 2.11+).
//     One lost node then takes at most one of the three with it.
//   - The desk bounds its idempotency claim (channels/desk) and reads the record from any replica
//     when the bucket has no leader.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ipn-cgsi/caud/channels"
)

// DefaultFailoverAfter is how long intake waits for one raft group (CAU_INBOUND's ack, the desk's
// idempotency claim) before it takes the other way: long enough for a loaded cluster's normal
// ack, short enough to keep a leader's loss well under the 3 s a client may notice.
const DefaultFailoverAfter = 750 * time.Millisecond

// publishLanes publishes msg (subject cau.inbound.<sub>) to CAU_INBOUND and, when the topology
// has a spare lane and CAU_INBOUND neither acks within FailoverAfter nor refuses for good, a copy
// to cau.spare.<sub>. It returns the first ack; both failing is one failed attempt (ctx bounds it).
// A resource refusal (store full) is not a lost leader: it is returned as it is, never sent to the
// spare, so a full store is reported and held as before.
func (s *Sink) publishLanes(ctx context.Context, msg *nats.Msg, sub string) (*jetstream.PubAck, error) {
	if s.h.Spare == nil {
		return s.h.JS.PublishMsg(ctx, msg)
	}
	type result struct {
		ack *jetstream.PubAck
		err error
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan result, 2)
	send := func(m *nats.Msg) {
		go func() {
			// No retry inside the library on "no responders": that is the lane without a leader,
			// and the other lane is the retry.
			ack, err := s.h.JS.PublishMsg(ctx, m, jetstream.WithRetryAttempts(0))
			results <- result{ack, err}
		}()
	}
	send(msg)
	timer := time.NewTimer(s.opts.FailoverAfter)
	defer timer.Stop()
	pending, spared := 1, false
	spare := func() {
		if spared {
			return
		}
		spared = true
		pending++
		m := nats.NewMsg(SubjectSparePrefix + sub)
		m.Data = msg.Data
		for k, v := range msg.Header {
			m.Header[k] = slices.Clone(v)
		}
		send(m)
	}
	var errs []error
	for pending > 0 {
		select {
		case r := <-results:
			pending--
			if r.err == nil {
				return r.ack, nil
			}
			errs = append(errs, r.err)
			if _, full := ResourceRefusal(r.err); full || isPermanent(r.err) {
				return nil, r.err
			}
			spare()
		case <-timer.C:
			spare()
		}
	}
	return nil, errors.Join(errs...)
}

// headerStreamSource is the header nats-server puts on a message a stream sourced from another.
const headerStreamSource = "Nats-Stream-Source"

// FromSpare reports whether a CAU_INBOUND message came through the spare lane (it was sourced).
func FromSpare(h nats.Header) bool {
	return strings.HasPrefix(h.Get(headerStreamSource), StreamInboundSpare+" ")
}

// Recall reads the request a receipt names from its stream's leader (which just answered the
// publish, so it is reachable): for a duplicate, the request JetStream kept the first time.
func (s *Sink) Recall(ctx context.Context, rec channels.Receipt) (*channels.Request, error) {
	if rec.Stream == "" || rec.Sequence == 0 {
		return nil, fmt.Errorf("recall: %w: no stream sequence", channels.ErrInvalid)
	}
	m, err := leaderMsg(ctx, s.h.JS, rec.Stream, msgGet{Seq: rec.Sequence})
	if err != nil {
		return nil, fmt.Errorf("recall %s #%d: %w", rec.Stream, rec.Sequence, err)
	}
	var r channels.Request
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return nil, fmt.Errorf("recall %s #%d: decode: %w", rec.Stream, rec.Sequence, err)
	}
	return &r, nil
}

// ReplicaGet reads key from any replica of the bucket (a direct get), without the stream leader:
// the way to read a record while the bucket elects a new leader. A replica may not have applied
// the last few milliseconds of writes; callers use it only where that cannot do harm (see
// channels/desk).
func ReplicaGet(ctx context.Context, kv jetstream.KeyValue, key string) (jetstream.KeyValueEntry, error) {
	if l, ok := kv.(*leaderKV); ok {
		return l.KeyValue.Get(ctx, key)
	}
	return kv.Get(ctx, key)
}

// LeaderGroups are the raft groups intake writes to, in the order KeepLeadersApart keeps them
// apart: CAU_INBOUND, its spare, and the request index (desk idempotency records).
var LeaderGroups = []string{StreamInbound, StreamInboundSpare, "KV_" + KVRequests}

// KeeperOptions configures KeepLeadersApart. Zero values are documented defaults.
type KeeperOptions struct {
	// Interval between checks; 0 means 2 s (with up to 50 % jitter, so that replicas spread
	// their checks). A leader election of any of the groups triggers a check at once.
	Interval time.Duration
	Logger   *slog.Logger
}

// KeepLeadersApart keeps the leaders of LeaderGroups on different servers until ctx ends: when
// two share a server, the later group in LeaderGroups is asked to step down in favour of a
// current replica on a server that leads none of the others (never CAU_INBOUND itself, which
// would pause intake for the transfer). Every replica may run it: they pick the same server, and
// a request for a server that already leads is refused harmlessly. With fewer live servers than
// groups it keeps what it can, the spare away from CAU_INBOUND first. It does nothing without a
// spare lane.
func KeepLeadersApart(ctx context.Context, h *Handles, o KeeperOptions) {
	if h.Spare == nil {
		return
	}
	if o.Interval == 0 {
		o.Interval = 2 * time.Second
	}
	log := channels.OrDiscard(o.Logger)
	kick := make(chan struct{}, 1)
	sub, err := h.JS.Conn().Subscribe("$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.*", func(*nats.Msg) {
		select {
		case kick <- struct{}{}:
		default:
		}
	})
	if err == nil {
		defer func() { _ = sub.Unsubscribe() }()
	}
	for {
		wait := o.Interval/2 + rand.N(o.Interval/2+1)
		select {
		case <-ctx.Done():
			return
		case <-kick:
		case <-time.After(wait):
		}
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		moves, err := planLeaders(actx, h.JS)
		for _, m := range moves {
			if err := stepDown(actx, h.JS, m.group, m.to); err != nil {
				log.Debug("leader placement", "group", m.group, "to", m.to, "err", err)
				continue
			}
			log.Info("moved a raft group's leader apart from the others", "group", m.group, "from", m.from, "to", m.to)
		}
		cancel()
		if err != nil && ctx.Err() == nil {
			log.Debug("leader placement: read groups", "err", err)
		}
	}
}

type leaderMove struct{ group, from, to string }

// groupLeader is one raft group's leader and the servers of its replicas that are caught up and
// online, the leader included, sorted.
type groupLeader struct {
	name, leader string
	current      []string
}

// planLeaders reads the groups' leaders and current replicas and says which to move where.
func planLeaders(ctx context.Context, js jetstream.JetStream) ([]leaderMove, error) {
	var gs []groupLeader
	for _, name := range LeaderGroups {
		s, err := js.Stream(ctx, name)
		if err != nil {
			return nil, err
		}
		ci := s.CachedInfo().Cluster
		if ci == nil || ci.Leader == "" {
			return nil, nil // an election is under way, or a single server: nothing to do now
		}
		g := groupLeader{name: name, leader: ci.Leader, current: []string{ci.Leader}}
		for _, p := range ci.Replicas {
			if p != nil && p.Current && !p.Offline {
				g.current = append(g.current, p.Name)
			}
		}
		slices.Sort(g.current)
		gs = append(gs, g)
	}
	return placeApart(gs), nil
}

// placeApart decides moves: a group keeps its leader when no earlier group has that server;
// each other group moves to the first of its current servers that no group keeps or moves to;
// when there is none, a group sharing the first group's server moves to any other (and else
// stays). The first group never moves.
func placeApart(gs []groupLeader) []leaderMove {
	taken := map[string]bool{}
	var clash []groupLeader
	for _, g := range gs {
		if taken[g.leader] {
			clash = append(clash, g)
			continue
		}
		taken[g.leader] = true
	}
	var moves []leaderMove
	for _, g := range clash {
		to := ""
		for _, c := range g.current {
			if !taken[c] {
				to = c
				break
			}
		}
		if to == "" && g.leader == gs[0].leader {
			// Fewer live servers than groups: at least away from CAU_INBOUND's leader.
			for _, c := range g.current {
				if c != gs[0].leader {
					to = c
					break
				}
			}
		}
		if to != "" {
			moves = append(moves, leaderMove{group: g.name, from: g.leader, to: to})
			taken[to] = true
		}
	}
	return moves
}

// stepDown asks stream's leader to hand leadership to the server named to.
func stepDown(ctx context.Context, js jetstream.JetStream, stream, to string) error {
	body, _ := json.Marshal(map[string]any{"placement": map[string]string{"preferred": to}})
	msg, err := js.Conn().RequestWithContext(ctx, apiPrefix(js)+"STREAM.LEADER.STEPDOWN."+stream, body)
	if err != nil {
		return err
	}
	var resp struct {
		Error   *jetstream.APIError `json:"error"`
		Success bool                `json:"success"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return err
	}
	if resp.Error != nil {
		return resp.Error
	}
	return nil
}

func apiPrefix(js jetstream.JetStream) string {
	prefix := js.Options().APIPrefix
	if prefix == "" {
		prefix = jetstream.DefaultAPIPrefix
	}
	if !strings.HasSuffix(prefix, ".") {
		prefix += "."
	}
	return prefix
}
