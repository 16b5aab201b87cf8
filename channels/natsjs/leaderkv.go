package natsjs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// LeaderReads wraps a KV bucket so that Get and GetRevision are answered by the leader of the
// bucket's stream instead of by any replica.
//
// The library reads KV buckets with direct get, which every replica of a replicated stream serves;
// a replica that has not applied a write yet answers "key not found" for a key that another client
// has just created (NATS has no read-after-write for direct gets). The stream message-get API is
// answered by the stream leader only, which has every acknowledged write, so a read right after a
// Create or Update elsewhere sees it. caud reads through the leader wherever a read must see a write:
// the request index, idempotency and per-source records, and the agents' leases. Writes, watches
// and listings go to the wrapped bucket unchanged. Reads cost a JSON round trip to the leader instead
// of a direct get: fine for the index, which is written far more than it is read.
func LeaderReads(kv jetstream.KeyValue, js jetstream.JetStream) jetstream.KeyValue {
	if _, ok := kv.(*leaderKV); ok {
		return kv
	}
	return &leaderKV{KeyValue: kv, js: js}
}

type leaderKV struct {
	jetstream.KeyValue
	js jetstream.JetStream
}

// Get returns the latest value of key, read from the stream leader.
func (l *leaderKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	return l.get(ctx, key, 0)
}

// GetRevision returns the value of key at revision, read from the stream leader.
func (l *leaderKV) GetRevision(ctx context.Context, key string, revision uint64) (jetstream.KeyValueEntry, error) {
	return l.get(ctx, key, revision)
}

// leaderReadTimeout bounds one leader read when ctx has no deadline.
const leaderReadTimeout = 5 * time.Second

func (l *leaderKV) get(ctx context.Context, key string, revision uint64) (jetstream.KeyValueEntry, error) {
	if !validKey(key) {
		return nil, jetstream.ErrInvalidKey
	}
	subject := "$KV." + l.Bucket() + "." + key
	req := msgGet{Seq: revision}
	if revision == 0 {
		req.LastFor = subject
	}
	m, err := leaderMsg(ctx, l.js, "KV_"+l.Bucket(), req)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, jetstream.ErrKeyNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("kv %s: %w", l.Bucket(), err)
	}
	if m.Subject != subject {
		return nil, jetstream.ErrKeyNotFound
	}
	e := &entry{bucket: l.Bucket(), key: key, value: m.Data, revision: m.Seq, created: m.Time, op: jetstream.KeyValuePut}
	if len(m.Header) > 0 {
		h, err := nats.DecodeHeadersMsg(m.Header)
		if err != nil {
			return nil, fmt.Errorf("kv %s: leader read: headers: %w", l.Bucket(), err)
		}
		switch {
		case h.Get("KV-Operation") == "DEL":
			e.op = jetstream.KeyValueDelete
		case h.Get("KV-Operation") == "PURGE", h.Get(jetstream.MarkerReasonHeader) != "":
			e.op = jetstream.KeyValuePurge
		}
	}
	if e.op != jetstream.KeyValuePut {
		// A delete or purge marker: the key has no value, as the library reports it.
		return nil, jetstream.ErrKeyNotFound
	}
	return e, nil
}

// msgGet is the body of the stream message-get API: a sequence, or the last message of a subject.
type msgGet struct {
	Seq     uint64 `json:"seq,omitempty"`
	LastFor string `json:"last_by_subj,omitempty"`
}

// storedMsg is a message as the message-get API returns it.
type storedMsg struct {
	Subject string    `json:"subject"`
	Seq     uint64    `json:"seq"`
	Header  []byte    `json:"hdrs"`
	Data    []byte    `json:"data"`
	Time    time.Time `json:"time"`
}

// leaderMsg reads one message of stream through the message-get API, which only the stream's
// leader answers (so it has every acknowledged write); jetstream.ErrMsgNotFound when there is none.
func leaderMsg(ctx context.Context, js jetstream.JetStream, stream string, req msgGet) (*storedMsg, error) {
	body, _ := json.Marshal(req)
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, leaderReadTimeout)
		defer cancel()
	}
	msg, err := js.Conn().RequestWithContext(ctx, apiPrefix(js)+"STREAM.MSG.GET."+stream, body)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return nil, jetstream.ErrNoStreamResponse
		}
		return nil, fmt.Errorf("leader read: %w", err)
	}
	var resp struct {
		Error   *jetstream.APIError `json:"error"`
		Message *storedMsg          `json:"message"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return nil, fmt.Errorf("leader read: decode: %w", err)
	}
	if resp.Error != nil {
		if resp.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound {
			return nil, jetstream.ErrMsgNotFound
		}
		return nil, fmt.Errorf("leader read: %w", resp.Error)
	}
	if resp.Message == nil {
		return nil, jetstream.ErrMsgNotFound
	}
	return resp.Message, nil
}

// validKey is the library's rule for KV keys.
func validKey(key string) bool {
	if key == "" || key[0] == '.' || key[len(key)-1] == '.' || strings.Contains(key, "..") {
		return false
	}
	for _, r := range key {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-/_=.", r)) {
			return false
		}
	}
	return true
}

type entry struct {
	bucket, key string
	value       []byte
	revision    uint64
	created     time.Time
	op          jetstream.KeyValueOp
}

func (e *entry) Bucket() string                  { return e.bucket }
func (e *entry) Key() string                     { return e.key }
func (e *entry) Value() []byte                   { return e.value }
func (e *entry) Revision() uint64                { return e.revision }
func (e *entry) Created() time.Time              { return e.created }
func (e *entry) Delta() uint64                   { return 0 }
func (e *entry) Operation() jetstream.KeyValueOp { return e.op }
