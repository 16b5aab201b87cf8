package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/channels/retry"
)

// Sent is the value of cau_notify key sent.<request id>.<kind>: the proof a notice went out.
type Sent struct {
	Channel   string    `json:"channel"`
	To        string    `json:"to,omitempty"`
	MessageID string    `json:"message_id,omitempty"`
	SentAt    time.Time `json:"sent_at"`
}

// SentKey is the cau_notify key recording that a notice was sent.
func SentKey(requestID, kind string) string { return "sent." + requestID + "." + kind }

func (n *Notifier) sendMsg(ctx context.Context, m jetstream.Msg) {
	var nt Notice
	if err := json.Unmarshal(m.Data(), &nt); err != nil || nt.RequestID == "" || nt.Kind == "" ||
		(nt.Email == nil) == (nt.Social == nil) {
		if err == nil {
			err = errors.New("incomplete notice")
		}
		n.deadLetter(ctx, m, fmt.Errorf("%w: decode notice: %v", retry.ErrPermanent, err))
		return
	}
	key := SentKey(nt.RequestID, nt.Kind)
	_, err := n.kv.Get(ctx, key)
	switch {
	case err == nil:
		// Sent before, and the ack was lost (or the notice was planned twice): nothing to do.
		n.m.suppressed.WithLabelValues(ReasonAlreadySent).Inc()
		n.log.Info("notice already sent", "request", nt.RequestID, "kind", nt.Kind)
		_ = m.Ack()
		return
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case errors.Is(err, jetstream.ErrInvalidKey):
		n.deadLetter(ctx, m, fmt.Errorf("%w: request id %q is not a valid key", retry.ErrPermanent, nt.RequestID))
		return
	default:
		n.retry(m, &nt, fmt.Errorf("read %s: %w", key, err))
		return
	}
	// Keep the delivery ours while we talk to a slow server.
	_ = m.InProgress()
	start := time.Now()
	rec := Sent{Channel: nt.Channel, SentAt: n.o.Now().UTC()}
	switch {
	case nt.Email != nil:
		rec.To, rec.MessageID = nt.Email.To, "<"+nt.Email.MessageID+">"
		err = n.sendEmail(ctx, &nt)
	case nt.Channel == DeliverX:
		err = n.social.xDM(ctx, nt.Social.RecipientID, nt.Social.Text)
	case nt.Social.Kind == "comment":
		err = n.social.comment(ctx, nt.Social.CommentID, nt.Social.Text)
	default:
		err = n.social.messenger(ctx, nt.Social.RecipientID, nt.Social.Text)
	}
	n.m.seconds.WithLabelValues(nt.Channel).Observe(time.Since(start).Seconds())
	if err != nil {
		if isPermanent(err) {
			n.m.failed.WithLabelValues(nt.Channel, "permanent").Inc()
			n.deadLetter(ctx, m, err)
			return
		}
		n.m.failed.WithLabelValues(nt.Channel, "transient").Inc()
		n.retry(m, &nt, err)
		return
	}
	n.m.sent.WithLabelValues(nt.Channel, nt.Kind).Inc()
	n.log.Info("notice sent", "request", nt.RequestID, "kind", nt.Kind, "channel", nt.Channel)
	// Recorded before the ack: a redelivery from here on finds it and sends nothing.
	b, _ := json.Marshal(rec)
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err = retry.Do(rctx, retry.Policy{Initial: 100 * time.Millisecond, Max: time.Second}, func(ctx context.Context) (uint64, error) {
		return n.kv.Put(ctx, key, b)
	}, nil)
	cancel()
	if err != nil {
		// Acknowledging anyway: the notice went out; a redelivery would send it twice.
		n.log.Error("record sent notice", "request", nt.RequestID, "kind", nt.Kind, "err", err)
	}
	if err := m.Ack(); err != nil {
		n.log.Warn("ack notice", "request", nt.RequestID, "err", err)
	}
}

// sendEmail indexes the notice's Message-ID in cau_requests first (so a reply that arrives at once
// is linked to the request), then submits it.
func (n *Notifier) sendEmail(ctx context.Context, nt *Notice) error {
	e := nt.Email
	if _, err := n.o.Requests.Put(ctx, natsjs.MessageIDKey(e.MessageID).String(), []byte(nt.RequestID)); err != nil {
		return transient(fmt.Errorf("index message-id: %w", err))
	}
	msg, err := compose(e, nt.PlannedAt)
	if err != nil {
		return permanent(err)
	}
	return n.mail.send(ctx, e.From, e.To, msg)
}

func (n *Notifier) retry(m jetstream.Msg, nt *Notice, cause error) {
	var delivered uint64 = 1
	if md, err := m.Metadata(); err == nil {
		delivered = md.NumDelivered
	}
	delay := n.backoff(delivered)
	n.log.Warn("notice not sent, will retry", "request", nt.RequestID, "kind", nt.Kind, "channel", nt.Channel,
		"err", cause, "delivery", delivered, "delay", delay)
	_ = m.NakWithDelay(delay)
}
