package natsjs

import (
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Fetch takes what is waiting on a pull consumer, up to n messages, without waiting; when nothing
// is, it waits up to wait for one message, so a lone message is handled at once rather than when a
// batch fills. An empty result with a nil error means nothing arrived in time.
func Fetch(c jetstream.Consumer, n int, wait time.Duration) ([]jetstream.Msg, error) {
	msgs, err := collect(c.FetchNoWait(n))
	if err != nil || len(msgs) > 0 {
		return msgs, err
	}
	return collect(c.Fetch(1, jetstream.FetchMaxWait(wait)))
}

func collect(batch jetstream.MessageBatch, err error) ([]jetstream.Msg, error) {
	if err != nil {
		return nil, err
	}
	var msgs []jetstream.Msg
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	if err := batch.Error(); err != nil && len(msgs) == 0 && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoMessages) {
		return nil, err
	}
	return msgs, nil
}
