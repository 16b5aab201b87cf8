package retry

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// Do retries transient failures until op succeeds, and reports each wait.
func TestDoRetriesUntilSuccess(t *testing.T) {
	n := 0
	var waits []time.Duration
	v, err := Do(context.Background(), Policy{Initial: time.Millisecond, Max: 4 * time.Millisecond}, func(context.Context) (int, error) {
		if n++; n < 5 {
			return 0, errors.New("busy")
		}
		return 42, nil
	}, func(_ int, _ error, d time.Duration) { waits = append(waits, d) })
	if err != nil || v != 42 || n != 5 {
		t.Fatalf("v=%d err=%v after %d attempts", v, err, n)
	}
	want := []time.Duration{time.Millisecond, 2 * time.Millisecond, 4 * time.Millisecond, 4 * time.Millisecond}
	if fmt.Sprint(waits) != fmt.Sprint(want) {
		t.Fatalf("waits %v, want %v (doubling, capped)", waits, want)
	}
}

// A permanent error stops at once and is returned as the caller wrapped it.
func TestDoStopsOnPermanent(t *testing.T) {
	n := 0
	cause := fmt.Errorf("%w: bad input", ErrPermanent)
	_, err := Do(context.Background(), Policy{}, func(context.Context) (int, error) { n++; return 0, cause }, nil)
	if !errors.Is(err, ErrPermanent) || err.Error() != cause.Error() || n != 1 {
		t.Fatalf("err=%v after %d attempts", err, n)
	}
}

// When the context ends, the error says why and keeps the last failure for the log.
func TestDoReportsTheLastErrorWhenTheContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	busy := errors.New("nats: no responders")
	_, err := Do(ctx, Policy{Initial: time.Millisecond}, func(context.Context) (int, error) { cancel(); return 0, busy }, nil)
	if !errors.Is(err, context.Canceled) || !errors.Is(err, busy) {
		t.Fatalf("err=%v", err)
	}
}

// Next doubles up to Max and Reset starts over; Spread keeps a wait within the jitter factor.
func TestBackoffNextSpreadReset(t *testing.T) {
	b := Policy{Initial: 100 * time.Millisecond, Max: 400 * time.Millisecond, Jitter: 0.5}.Start()
	var got []time.Duration
	for range 4 {
		got = append(got, b.Next())
	}
	if fmt.Sprint(got) != "[100ms 200ms 400ms 400ms]" {
		t.Fatalf("waits %v", got)
	}
	for range 100 {
		if d := b.Spread(time.Second); d < 500*time.Millisecond || d > 1500*time.Millisecond {
			t.Fatalf("spread %s outside [0.5s, 1.5s]", d)
		}
	}
	b.Reset()
	if d := b.Next(); d != 100*time.Millisecond {
		t.Fatalf("after Reset: %s", d)
	}
}

func TestSleepEndsWithTheContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Sleep(ctx, time.Hour) {
		t.Fatal("Sleep reported a full wait on an ended context")
	}
	if !Sleep(context.Background(), time.Millisecond) {
		t.Fatal("Sleep cut short")
	}
}
