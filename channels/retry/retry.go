// Package retry is caud's one way of trying again: exponential backoff (cenkalti/backoff/v5), a
// sleep that ends with its context, and the marker of errors no retry can fix.
//
// Every loop that waits after a failure (a publish, a JetStream fetch, an IMAP session, a NATS
// connection) takes a Policy and either runs Do or keeps a Backoff of its own.
package retry

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// ErrPermanent marks input or failures that no retry can fix; wrap it (fmt.Errorf("%w: …",
// retry.ErrPermanent)) and callers test it with errors.Is.
var ErrPermanent = errors.New("cannot be processed")

// Policy is an exponential backoff: the first wait is Initial, each next one doubles, up to Max.
// Zero values: Initial 100 ms, Max 5 s, no jitter.
type Policy struct {
	Initial time.Duration
	Max     time.Duration
	// Jitter spreads each wait over [d·(1-Jitter), d·(1+Jitter)] so that many clients that failed
	// together do not retry together; 0 keeps the waits exact, 0.5 is usual.
	Jitter float64
}

func (p Policy) exponential() *backoff.ExponentialBackOff {
	b := &backoff.ExponentialBackOff{
		InitialInterval:     p.Initial,
		RandomizationFactor: p.Jitter,
		Multiplier:          2,
		MaxInterval:         p.Max,
	}
	if b.InitialInterval <= 0 {
		b.InitialInterval = 100 * time.Millisecond
	}
	if b.MaxInterval <= 0 {
		b.MaxInterval = 5 * time.Second
	}
	b.MaxInterval = max(b.MaxInterval, b.InitialInterval)
	b.Reset()
	return b
}

// Backoff is the running state of a Policy for a loop that retries by itself (a fetch loop that
// resets after each success). Not safe for concurrent use.
type Backoff struct {
	b      *backoff.ExponentialBackOff
	jitter float64
}

// Start returns a Backoff at the policy's first wait.
func (p Policy) Start() *Backoff {
	e := p.exponential()
	e.RandomizationFactor = 0 // Next is the nominal wait; Spread applies the jitter
	return &Backoff{b: e, jitter: p.Jitter}
}

// Next returns the next nominal wait (doubling from Initial up to Max, without jitter) and
// advances the backoff.
func (b *Backoff) Next() time.Duration { return b.b.NextBackOff() }

// Spread returns d spread by the policy's jitter: uniformly in [d·(1-Jitter), d·(1+Jitter)].
func (b *Backoff) Spread(d time.Duration) time.Duration {
	if b.jitter <= 0 || d <= 0 {
		return d
	}
	return time.Duration(float64(d) * (1 - b.jitter + 2*b.jitter*rand.Float64()))
}

// Reset brings the next wait back to the first one (after a success).
func (b *Backoff) Reset() { b.b.Reset() }

// Wait sleeps for the next wait, spread; false when ctx ended first.
func (b *Backoff) Wait(ctx context.Context) bool { return Sleep(ctx, b.Spread(b.Next())) }

// Sleep waits d or until ctx ends; it reports whether the whole d elapsed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Do runs op until it succeeds, returns an error wrapping ErrPermanent (returned as is), or ctx
// ends (then the error wraps both ctx's cause and op's last error, and says how many attempts were
// made). onRetry, if not nil, is called before each wait with the error and the wait.
func Do[T any](ctx context.Context, p Policy, op func(context.Context) (T, error), onRetry func(attempt int, err error, wait time.Duration)) (T, error) {
	var last error
	attempts := 0
	v, err := backoff.Retry(ctx, func() (T, error) {
		attempts++
		v, err := op(ctx)
		if err != nil && errors.Is(err, ErrPermanent) {
			return v, backoff.Permanent(err)
		}
		last = err
		return v, err
	}, backoff.WithBackOff(p.exponential()), backoff.WithMaxElapsedTime(0), backoff.WithNotify(func(err error, d time.Duration) {
		if onRetry != nil {
			onRetry(attempts, err, d)
		}
	}))
	if err != nil && !errors.Is(err, ErrPermanent) && ctx.Err() != nil && last != nil && !errors.Is(last, ctx.Err()) {
		return v, fmt.Errorf("%w (last error after %d attempts: %w)", context.Cause(ctx), attempts, last)
	}
	return v, err
}
