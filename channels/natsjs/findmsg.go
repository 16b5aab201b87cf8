package natsjs

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// FindMsgID looks in s, among the messages on subject stored at or after since, for the one whose
// Nats-Msg-Id is id, reading headers only, and returns its sequence (0: none). It answers what the
// duplicate window cannot once it has passed: did a publish whose ack was lost land? A source
// that knows when it first tried (a claim written before the publish) asks it before publishing
// again.
func FindMsgID(ctx context.Context, s jetstream.Stream, subject, id string, since time.Time) (uint64, error) {
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject}, DeliverPolicy: jetstream.DeliverByStartTimePolicy,
		OptStartTime: &since, HeadersOnly: true,
	})
	if err != nil {
		return 0, fmt.Errorf("find %s: %w", id, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("find %s: %w", id, err)
	}
	for left := info.NumPending; left > 0; {
		if err := ctx.Err(); err != nil {
			return 0, fmt.Errorf("find %s: %w", id, err)
		}
		batch, err := c.Fetch(int(min(left, 512)), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return 0, fmt.Errorf("find %s: %w", id, err)
		}
		n := uint64(0)
		for m := range batch.Messages() {
			n++
			if m.Headers().Get(jetstream.MsgIDHeader) == id {
				md, err := m.Metadata()
				if err != nil {
					return 0, fmt.Errorf("find %s: %w", id, err)
				}
				return md.Sequence.Stream, nil
			}
		}
		if err := batch.Error(); err != nil && n == 0 {
			return 0, fmt.Errorf("find %s: %w", id, err)
		}
		if n == 0 {
			return 0, fmt.Errorf("find %s: %d messages left unread", id, left)
		}
		left -= min(n, left)
	}
	return 0, nil
}
