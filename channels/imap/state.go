package imap

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ipn-cgsi/caud/channels/natsjs"
)

// ErrLeaseLost means another process took the mailbox's lease (or a checkpoint write conflicted).
var ErrLeaseLost = errors.New("mailbox lease lost")

// Checkpoint is the value of cau_state key imap.<name>.checkpoint: every message of the folder
// with a UID up to LastUID (under UIDValidity) has been handled.
type Checkpoint struct {
	UIDValidity uint32 `json:"uidvalidity"`
	LastUID     uint32 `json:"last_uid"`
}

// Lease is the value of cau_state key imap.<name>.lease.
type Lease struct {
	Holder  string    `json:"holder"`
	Expires time.Time `json:"expires"`
}

func checkpointKey(name string) string { return "imap." + name + ".checkpoint" }
func leaseKey(name string) string      { return "imap." + name + ".lease" }

// MsgID is the Nats-Msg-Id of a mail: from its Message-ID, else from its bytes.
func MsgID(messageID string, raw []byte) string {
	if messageID != "" {
		sum := sha256.Sum256([]byte(natsjs.NormalizeMessageID(messageID)))
		return "email:mid:" + hex.EncodeToString(sum[:16])
	}
	sum := sha256.Sum256(raw)
	return "email:raw:" + hex.EncodeToString(sum[:16])
}

type checkpointer struct {
	kv  jetstream.KeyValue
	key string
	rev uint64
	cp  Checkpoint
}

func loadCheckpoint(ctx context.Context, kv jetstream.KeyValue, name string) (*checkpointer, error) {
	c := &checkpointer{kv: kv, key: checkpointKey(name)}
	e, err := kv.Get(ctx, c.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load checkpoint: %w", err)
	}
	if err := json.Unmarshal(e.Value(), &c.cp); err != nil {
		return nil, fmt.Errorf("decode checkpoint: %w", err)
	}
	c.rev = e.Revision()
	return c, nil
}

// save writes cp with compare-and-set against the revision read or written last; a conflict means
// another process is working the mailbox and wraps ErrLeaseLost.
func (c *checkpointer) save(ctx context.Context, cp Checkpoint) error {
	if cp == c.cp && c.rev != 0 {
		return nil
	}
	b, _ := json.Marshal(cp)
	var rev uint64
	var err error
	if c.rev == 0 {
		rev, err = c.kv.Create(ctx, c.key, b)
	} else {
		rev, err = c.kv.Update(ctx, c.key, b, c.rev)
	}
	if err != nil {
		if isConflict(err) {
			return fmt.Errorf("save checkpoint: %w: %v", ErrLeaseLost, err)
		}
		return fmt.Errorf("save checkpoint: %w", err)
	}
	c.rev, c.cp = rev, cp
	return nil
}

func isConflict(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) ||
		(errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence)
}

// leaseHolder keeps a mailbox lease.
type leaseHolder struct {
	kv     jetstream.KeyValue
	key    string
	holder string
	ttl    time.Duration
	rev    uint64
	until  time.Time
}

// tryAcquire takes the lease when it is free, expired, or already ours. It returns the current
// holder when someone else has it.
func (l *leaseHolder) tryAcquire(ctx context.Context) (bool, Lease, error) {
	now := time.Now()
	val, _ := json.Marshal(Lease{Holder: l.holder, Expires: now.Add(l.ttl)})
	e, err := l.kv.Get(ctx, l.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		rev, err := l.kv.Create(ctx, l.key, val)
		if err != nil {
			if isConflict(err) {
				return false, Lease{}, nil
			}
			return false, Lease{}, err
		}
		l.rev, l.until = rev, now.Add(l.ttl)
		return true, Lease{}, nil
	}
	if err != nil {
		return false, Lease{}, err
	}
	var cur Lease
	_ = json.Unmarshal(e.Value(), &cur)
	if cur.Holder != l.holder && now.Before(cur.Expires) {
		return false, cur, nil
	}
	rev, err := l.kv.Update(ctx, l.key, val, e.Revision())
	if err != nil {
		if isConflict(err) {
			return false, cur, nil
		}
		return false, cur, err
	}
	l.rev, l.until = rev, now.Add(l.ttl)
	return true, cur, nil
}

// renew extends the lease; ErrLeaseLost when someone else wrote it.
func (l *leaseHolder) renew(ctx context.Context) error {
	now := time.Now()
	val, _ := json.Marshal(Lease{Holder: l.holder, Expires: now.Add(l.ttl)})
	rev, err := l.kv.Update(ctx, l.key, val, l.rev)
	if err != nil {
		if isConflict(err) {
			return ErrLeaseLost
		}
		return err
	}
	l.rev, l.until = rev, now.Add(l.ttl)
	return nil
}

// release expires the lease at once so that a standby takes over without waiting for the TTL.
func (l *leaseHolder) release(ctx context.Context) {
	val, _ := json.Marshal(Lease{Holder: l.holder, Expires: time.Now().Add(-time.Second)})
	_, _ = l.kv.Update(ctx, l.key, val, l.rev)
}
