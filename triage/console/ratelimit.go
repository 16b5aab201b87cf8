package console

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// loginLimiter limits sign-in attempts per client address and per account name, so a guesser is
// slowed whether it tries many passwords for one name or one password for many names. Defaults:
// bursts of 5, then one attempt every 12 s (5 a minute) per key; successful sign-ins count too.
type loginLimiter struct {
	mu      sync.Mutex
	keys    map[string]*limEntry
	every   time.Duration
	burst   int
	lastGC  time.Time
	maxKeys int
}

type limEntry struct {
	l    *rate.Limiter
	seen time.Time
}

func newLoginLimiter(every time.Duration, burst int) *loginLimiter {
	if every <= 0 {
		every = 12 * time.Second
	}
	if burst <= 0 {
		burst = 5
	}
	return &loginLimiter{keys: map[string]*limEntry{}, every: every, burst: burst, maxKeys: 100000}
}

// allow takes one attempt for every key, or reports how long to wait. All keys are checked before
// any is charged, so a refused attempt costs nothing.
func (l *loginLimiter) allow(now time.Time, keys ...string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.gc(now)
	rs := make([]*rate.Reservation, 0, len(keys))
	var wait time.Duration
	for _, k := range keys {
		e := l.keys[k]
		if e == nil {
			e = &limEntry{l: rate.NewLimiter(rate.Every(l.every), l.burst)}
			l.keys[k] = e
		}
		e.seen = now
		r := e.l.ReserveN(now, 1)
		rs = append(rs, r)
		wait = max(wait, r.DelayFrom(now))
	}
	if wait > 0 {
		for _, r := range rs {
			r.CancelAt(now)
		}
		return false, wait
	}
	return true, 0
}

// gc forgets keys idle long enough to have refilled, at most once a minute, and bounds the map.
func (l *loginLimiter) gc(now time.Time) {
	if now.Sub(l.lastGC) < time.Minute && len(l.keys) < l.maxKeys {
		return
	}
	l.lastGC = now
	full := l.every * time.Duration(l.burst)
	for k, e := range l.keys {
		if now.Sub(e.seen) > full || len(l.keys) >= l.maxKeys {
			delete(l.keys, k)
		}
	}
}
