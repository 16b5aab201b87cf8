package natsjs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Request states as reported by GET /api/v1/requests/{id}.
const (
	StateReceived = "received"
	StateQueued   = "queued"
	StateClaimed  = "claimed"
	StateDone     = "done"
	StateDead     = "dead"
)

// RequestState is the index entry of one request in KV cau_requests, under StateKey(request id)
// (keys.go owns the keyspace).
type RequestState struct {
	State      string    `json:"state"`
	Queue      string    `json:"queue,omitempty"`
	InboundSeq uint64    `json:"inbound_seq,omitempty"`
	TriagedSeq uint64    `json:"triaged_seq,omitempty"`
	Folio      string    `json:"folio,omitempty"`
	Agent      string    `json:"agent,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// The request index keeps two keys per request. "<id>" is the request's life after intake, written
// only in order: the triage worker creates it (create-only, so it never overwrites anything) and
// every later change is a compare-and-set on its revision (UpdateState). "received.<id>" is the
// intake's note that the request arrived, written create-only by the sink right after JetStream
// acknowledged the request, so GET /api/v1/requests/{id} can answer "received" before triage. Two
// keys let both writers use create-only puts pipelined with their publishes: neither ever waits for
// or overwrites the other.

// StateSubject is the KV subject of a key of cau_requests, for pipelined (async) puts.
func StateSubject(k RequestKey) string { return "$KV." + KVRequests + "." + k.String() }

// GetState reads a request's state and the revision of its "<id>" entry (0 when only the intake's
// "received" note exists); ErrUnknownRequest when neither exists. Give it a bucket wrapped by
// LeaderReads (as EnsureTopology's handles are) so it sees every acknowledged write.
func GetState(ctx context.Context, kv jetstream.KeyValue, id string) (RequestState, uint64, error) {
	st, rev, err := getState(ctx, kv, StateKey(id))
	if !errors.Is(err, ErrUnknownRequest) {
		return st, rev, err
	}
	st, _, err = getState(ctx, kv, ReceivedKey(id))
	return st, 0, err
}

func getState(ctx context.Context, kv jetstream.KeyValue, key RequestKey) (RequestState, uint64, error) {
	var st RequestState
	e, err := kv.Get(ctx, key.String())
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrInvalidKey) {
		return st, 0, ErrUnknownRequest
	}
	if err != nil {
		return st, 0, fmt.Errorf("get state %s: %w", key, err)
	}
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return st, 0, fmt.Errorf("decode state %s: %w", key, err)
	}
	return st, e.Revision(), nil
}

// ErrUnchanged, returned by an UpdateState function, means the entry is right as it is: nothing is
// written and UpdateState returns the current state without error.
var ErrUnchanged = errors.New("state unchanged")

// UpdateState applies fn to a request's state with compare-and-set on the "<id>" entry (creating it
// when absent), re-reading and retrying on conflicts, so concurrent writers from any replica apply
// in some order and none is lost. fn sees the current state (the "received" note when "<id>" does
// not exist yet) and may return ErrUnchanged.
func UpdateState(ctx context.Context, kv jetstream.KeyValue, id string, fn func(*RequestState) error) (RequestState, error) {
	for attempt := 0; ; attempt++ {
		st, rev, err := GetState(ctx, kv, id)
		if err != nil && !errors.Is(err, ErrUnknownRequest) {
			return st, err
		}
		if err := fn(&st); err != nil {
			if errors.Is(err, ErrUnchanged) {
				return st, nil
			}
			return st, err
		}
		st.UpdatedAt = time.Now().UTC()
		b, _ := json.Marshal(st)
		if rev == 0 {
			_, err = kv.Create(ctx, StateKey(id).String(), b)
		} else {
			_, err = kv.Update(ctx, StateKey(id).String(), b, rev)
		}
		if err == nil {
			return st, nil
		}
		if !IsConflict(err) || attempt >= 20 {
			return st, fmt.Errorf("update state %s: %w", id, err)
		}
		if err := AwaitConflict(ctx, attempt); err != nil {
			return st, fmt.Errorf("update state %s: %w", id, err)
		}
	}
}

// AwaitConflict waits before the next try after a compare-and-set conflict. On a cluster the
// conflicting write may still be in flight (the stream leader refuses a second write to a key
// with one proposed but not yet applied), so an immediate re-read can miss it: 2 ms, doubling, at
// most 100 ms. It returns ctx's error when ctx ends first.
func AwaitConflict(ctx context.Context, attempt int) error {
	d := min(2*time.Millisecond<<min(attempt, 6), 100*time.Millisecond)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// IsConflict reports whether err is a compare-and-set conflict: the key exists (create-only) or
// has another revision (update).
func IsConflict(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) || (errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant))
}

// StateMsg builds a pipelined create-only put of a request's "<id>" entry: it fails with a
// conflict (IsConflict) when the entry exists, and the writer then merges with UpdateState.
func StateMsg(id string, st RequestState) *nats.Msg {
	return createOnly(StateSubject(StateKey(id)), st)
}

// ReceivedMsg builds the intake's pipelined create-only "received" note of a request.
func ReceivedMsg(id string, inboundSeq uint64) *nats.Msg {
	return createOnly(StateSubject(ReceivedKey(id)), RequestState{State: StateReceived, InboundSeq: inboundSeq})
}

func createOnly(subject string, st RequestState) *nats.Msg {
	st.UpdatedAt = time.Now().UTC()
	b, _ := json.Marshal(st)
	m := nats.NewMsg(subject)
	m.Data = b
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, "0")
	return m
}

// ErrUnknownRequest means no request with that id is indexed.
var ErrUnknownRequest = errors.New("unknown request")
