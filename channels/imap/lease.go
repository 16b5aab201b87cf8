package imap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ipn-cgsi/caud/channels/retry"
)

// Lease is the value of cau_state key imap.<name>.lease: which process works the mailbox.
type Lease struct {
	Holder string `json:"holder"`
	// Expires is when the lease ends without renewal, by the holder's clock (for people reading
	// the key; standbys judge expiry by their own clock, see leaseHolder).
	Expires time.Time `json:"expires"`
	// TTLMillis is the holder's lease TTL; standbys honour it whatever their own setting.
	TTLMillis int64 `json:"ttl_ms,omitempty"`
}

func (l Lease) ttl(fallback time.Duration) time.Duration {
	if l.TTLMillis > 0 {
		return time.Duration(l.TTLMillis) * time.Millisecond
	}
	return fallback
}

// leaseHolder keeps or awaits a mailbox lease in KV with compare-and-set on the key's revision.
//
// Expiry is judged without trusting any clock but the local one: a standby notes when it first
// saw the current revision, and takes the lease over only when that revision stayed unchanged for
// the holder's TTL (or, as a guard for a standby that starts long after its holder died, when the
// server stamped the revision more than twice the TTL ago). The holder stops working before that:
// it gives up when it could not renew within five sixths of its TTL.
type leaseHolder struct {
	kv     jetstream.KeyValue
	key    string
	holder string
	ttl    time.Duration
	rev    uint64    // our revision while we hold the lease
	until  time.Time // our lease's end, by our clock

	// The other holder's lease, as a standby last saw it.
	seen    Lease
	seenRev uint64
	seenAt  time.Time
}

func (l *leaseHolder) value(now time.Time) []byte {
	b, _ := json.Marshal(Lease{Holder: l.holder, Expires: now.Add(l.ttl).UTC(), TTLMillis: l.ttl.Milliseconds()})
	return b
}

// observe records a revision of the lease key that a standby saw.
func (l *leaseHolder) observe(rev uint64, val []byte, now time.Time) {
	if rev == l.seenRev {
		return
	}
	var cur Lease
	_ = json.Unmarshal(val, &cur)
	l.seen, l.seenRev, l.seenAt = cur, rev, now
}

// expiresIn is how long until the seen lease counts as expired (≤ 0: now).
func (l *leaseHolder) expiresIn(now time.Time) time.Duration {
	return l.seenAt.Add(l.seen.ttl(l.ttl)).Sub(now)
}

// tryAcquire takes the lease when it is free, released, expired, or ours (held by this process's
// previous run: a restart resumes at once). Otherwise it returns the current holder's lease.
func (l *leaseHolder) tryAcquire(ctx context.Context) (bool, Lease, error) {
	now := time.Now()
	e, err := l.kv.Get(ctx, l.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		rev, err := l.kv.Create(ctx, l.key, l.value(now))
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
	l.observe(e.Revision(), e.Value(), now)
	cur := l.seen
	stale := now.Sub(e.Created()) > 2*cur.ttl(l.ttl)
	if cur.Holder != l.holder && l.expiresIn(now) > 0 && !stale {
		return false, cur, nil
	}
	rev, err := l.kv.Update(ctx, l.key, l.value(now), e.Revision())
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
	rev, err := l.kv.Update(ctx, l.key, l.value(now), l.rev)
	if err != nil {
		if isConflict(err) {
			return ErrLeaseLost
		}
		return err
	}
	l.rev, l.until = rev, now.Add(l.ttl)
	return nil
}

// release deletes the lease (only if it is still ours) so that a standby, which watches the key,
// takes over at once.
func (l *leaseHolder) release(ctx context.Context) error {
	if l.rev == 0 {
		return nil
	}
	err := l.kv.Delete(ctx, l.key, jetstream.LastRevision(l.rev))
	l.rev = 0
	return err
}

// acquire blocks until the lease is ours (true) or ctx ends (false). As a standby it watches the
// lease key, so a released lease is taken at once and an expired one when its TTL ran out, with
// no polling in between.
func (m *Mailbox) acquire(ctx context.Context, l *leaseHolder) bool {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var updates <-chan jetstream.KeyValueEntry
	if w, err := l.kv.Watch(wctx, l.key, jetstream.UpdatesOnly()); err == nil {
		updates = w.Updates()
	} else {
		m.log.Warn("mailbox lease: cannot watch the key; checking it every third of the TTL", "err", err)
	}
	b := retry.Policy{Initial: m.o.MinBackoff, Max: l.ttl, Jitter: 0.5}.Start()
	for {
		ok, cur, err := l.tryAcquire(ctx)
		now := time.Now()
		wait := l.ttl / 3
		switch {
		case err != nil:
			m.setHealth(false, "lease: "+err.Error())
			m.log.Warn("mailbox lease", "err", err)
			wait = min(b.Spread(b.Next()), l.ttl/3)
		case ok:
			if cur.Holder != "" && cur.Holder != l.holder {
				m.log.Info("mailbox lease taken over", "from", cur.Holder, "silent_for", now.Sub(l.seenAt).Round(time.Millisecond))
			}
			return true
		default:
			b.Reset()
			m.standbyHealth(l, now)
			// Check again when the seen revision expires; a watch event comes sooner.
			wait = min(max(l.expiresIn(now), 10*time.Millisecond), l.ttl)
		}
		t := time.NewTimer(wait)
	watch:
		for {
			select {
			case <-ctx.Done():
				t.Stop()
				return false
			case <-t.C:
				break watch
			case e, open := <-updates:
				if !open {
					updates = nil
					continue
				}
				if e == nil {
					continue
				}
				if e.Operation() != jetstream.KeyValuePut {
					break watch // released or purged: take it now
				}
				l.observe(e.Revision(), e.Value(), time.Now())
				m.standbyHealth(l, time.Now())
				if l.seen.Holder == l.holder {
					break watch
				}
			}
		}
		t.Stop()
	}
}

// standbyHealth reports the holder for /readyz: a standby is healthy while the holder renews,
// and says so when the holder went silent (the mailbox is not being worked until takeover).
func (m *Mailbox) standbyHealth(l *leaseHolder, now time.Time) {
	silent := now.Sub(l.seenAt)
	ttl := l.seen.ttl(l.ttl)
	if silent > ttl/3+ttl/6 {
		m.setHealth(false, fmt.Sprintf("standby: %s holds the lease but has not renewed it for %s; taking over in %s if it stays silent",
			l.seen.Holder, silent.Round(100*time.Millisecond), max(ttl-silent, 0).Round(100*time.Millisecond)))
		return
	}
	m.setHealth(true, fmt.Sprintf("standby: worked by %s (lease renewed %s ago)", l.seen.Holder, silent.Round(100*time.Millisecond)))
}

// keepLease renews the lease every third of its TTL, retrying a failed renewal every half second;
// it cancels lctx when the lease is lost, or when it could not be renewed within five sixths of
// the TTL (a standby may take over at the full TTL).
func (m *Mailbox) keepLease(lctx context.Context, cancel context.CancelCauseFunc, l *leaseHolder) {
	next := l.ttl / 3
	for {
		t := time.NewTimer(next)
		select {
		case <-lctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		giveUp := l.until.Add(-l.ttl / 6)
		rctx, rcancel := context.WithDeadline(lctx, giveUp)
		err := l.renew(rctx)
		rcancel()
		switch {
		case err == nil:
			next = l.ttl / 3
		case errors.Is(err, ErrLeaseLost):
			cancel(ErrLeaseLost)
			return
		case !time.Now().Before(giveUp):
			m.log.Warn("mailbox lease could not be renewed in time; stopping", "err", err)
			cancel(fmt.Errorf("%w: %v", ErrLeaseLost, err))
			return
		default:
			m.log.Warn("mailbox lease renewal failed; retrying", "err", err)
			next = min(500*time.Millisecond, time.Until(giveUp))
		}
	}
}
