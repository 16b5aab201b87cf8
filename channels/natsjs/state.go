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

// StateSubject is the KV subject of a request's index entry, for pipelined (async) puts.
func StateSubject(id string) string { return "$KV." + KVRequests + "." + id }

// GetState reads a request's index entry and its revision; ErrUnknownRequest when absent.
func GetState(ctx context.Context, kv jetstream.KeyValue, id string) (RequestState, uint64, error) {
	var st RequestState
	e, err := kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrInvalidKey) {
		return st, 0, ErrUnknownRequest
	}
	if err != nil {
		return st, 0, fmt.Errorf("get state %s: %w", id, err)
	}
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return st, 0, fmt.Errorf("decode state %s: %w", id, err)
	}
	return st, e.Revision(), nil
}

// UpdateState applies fn to a request's entry with compare-and-set, retrying on conflicts.
func UpdateState(ctx context.Context, kv jetstream.KeyValue, id string, fn func(*RequestState) error) (RequestState, error) {
	for attempt := 0; ; attempt++ {
		st, rev, err := GetState(ctx, kv, id)
		if err != nil && !errors.Is(err, ErrUnknownRequest) {
			return st, err
		}
		if err := fn(&st); err != nil {
			return st, err
		}
		st.UpdatedAt = time.Now().UTC()
		b, _ := json.Marshal(st)
		if rev == 0 {
			_, err = kv.Create(ctx, id, b)
		} else {
			_, err = kv.Update(ctx, id, b, rev)
		}
		if err == nil {
			return st, nil
		}
		var apiErr *jetstream.APIError
		conflict := errors.Is(err, jetstream.ErrKeyExists) || (errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence)
		if !conflict || attempt >= 20 {
			return st, fmt.Errorf("update state %s: %w", id, err)
		}
	}
}

// StateMsg builds a pipelined put of a request's index entry. With createOnly it never overwrites an
// existing entry (used for "received", which must not clobber a later state).
func StateMsg(id string, st RequestState, createOnly bool) *nats.Msg {
	st.UpdatedAt = time.Now().UTC()
	b, _ := json.Marshal(st)
	m := nats.NewMsg(StateSubject(id))
	m.Data = b
	if createOnly {
		m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, "0")
	}
	return m
}

// ErrUnknownRequest means no request with that id is indexed.
var ErrUnknownRequest = errors.New("unknown request")
