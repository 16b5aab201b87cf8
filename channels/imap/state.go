package imap

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

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
	// Move, while set, is a move to another folder that was started and not yet confirmed: if the
	// connection dies in it, the next session finds the copies it made and does not copy again.
	Move *Move `json:"move,omitempty"`
}

// Move records a MOVE (or COPY + EXPUNGE) in flight: the source UIDs (as [first, last] ranges)
// and the destination folder's UIDVALIDITY and UIDNEXT just before it, so that every copy the move
// made has a destination UID from DestUIDNext on.
type Move struct {
	UIDs            [][2]uint32 `json:"uids"`
	Folder          string      `json:"folder"`
	DestUIDValidity uint32      `json:"dest_uidvalidity"`
	DestUIDNext     uint32      `json:"dest_uidnext"`
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
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) ||
		(errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant))
}
