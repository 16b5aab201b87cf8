// Package deadletter owns the dead letters of every stage: the headers a dead letter carries, how
// one is built and published onto CAU_DLQ (subject cau.dlq.<stage>), and the operator's view of them
// (list and replay, GET /api/v1/deadletters and POST /api/v1/deadletters/{seq}/replay).
//
// A dead letter is the original message (body and headers, without its Nats-Msg-Id) plus the reason;
// its own Nats-Msg-Id is derived from where it came from, so a stage that dead-letters the same
// message twice (a crash between the publish and the ack) stores it once.
package deadletter

import (
	"context"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ipn-cgsi/caud/channels/natsjs"
)

// Headers a stage sets on a dead letter.
const (
	HeaderReason      = "Cau-Dlq-Reason"
	HeaderStage       = "Cau-Dlq-Stage"
	HeaderOrigSubject = "Cau-Original-Subject"
	HeaderOrigSeq     = "Cau-Original-Seq"
	HeaderDeliveries  = "Cau-Deliveries"
	HeaderReplayedOf  = "Cau-Replayed-From"
	// HeaderOrigObject names the archived original in cau_originals when the body is not kept
	// (or not only kept) in the letter itself.
	HeaderOrigObject = "Cau-Original-Object"
)

// Stages that dead-letter (the last token of the subject, header Cau-Dlq-Stage).
const (
	StageIMAP   = "imap"
	StageMemo   = "memo"
	StageTriage = "triage"
	StageNotify = "notify"
)

// Subject is the CAU_DLQ subject of stage.
func Subject(stage string) string { return natsjs.SubjectDLQPrefix + stage }

// NewMsg returns a dead letter of stage with body data, the reason, and msgID as its Nats-Msg-Id; the
// caller may add headers (origin details) before publishing it.
func NewMsg(stage, msgID, reason string, data []byte) *nats.Msg {
	out := nats.NewMsg(Subject(stage))
	out.Data = data
	out.Header.Set(HeaderReason, reason)
	out.Header.Set(HeaderStage, stage)
	out.Header.Set(jetstream.MsgIDHeader, msgID)
	return out
}

// FromMsg returns the dead letter of a message a consumer of stage could not process: its body and
// headers, the reason, its subject, stream sequence and number of deliveries. The Nats-Msg-Id is
// "dlq:<stage>:<subject>:<stream sequence>".
func FromMsg(stage string, m jetstream.Msg, cause error) *nats.Msg {
	var seq, delivered uint64
	if md, err := m.Metadata(); err == nil {
		seq, delivered = md.Sequence.Stream, md.NumDelivered
	}
	out := NewMsg(stage, "dlq:"+stage+":"+m.Subject()+":"+strconv.FormatUint(seq, 10), cause.Error(), m.Data())
	for k, v := range m.Headers() {
		if k != jetstream.MsgIDHeader && out.Header.Get(k) == "" {
			out.Header[k] = v
		}
	}
	out.Header.Set(HeaderOrigSubject, m.Subject())
	out.Header.Set(HeaderOrigSeq, strconv.FormatUint(seq, 10))
	if delivered > 0 {
		out.Header.Set(HeaderDeliveries, strconv.FormatUint(delivered, 10))
	}
	return out
}

// Publish stores a dead letter and waits for JetStream's acknowledgement.
func Publish(ctx context.Context, js jetstream.JetStream, letter *nats.Msg) error {
	if _, err := js.PublishMsg(ctx, letter); err != nil {
		return fmt.Errorf("dead-letter on %s: %w", letter.Subject, err)
	}
	return nil
}
