package imap

import (
	"context"
	"strings"
	"testing"
	"time"
)

func newLease(e *testEnv, holder string, ttl time.Duration) *leaseHolder {
	return &leaseHolder{kv: e.State, key: leaseKey("cau"), holder: holder, ttl: ttl}
}

func standby(t *testing.T, e *testEnv, holder string, ttl time.Duration) (*Mailbox, <-chan time.Time) {
	t.Helper()
	o := e.options("127.0.0.1:1")
	o.Holder, o.LeaseTTL = holder, ttl
	mb, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	got := make(chan time.Time, 1)
	go func() {
		if mb.acquire(ctx, newLease(e, holder, ttl)) {
			got <- time.Now()
		}
	}()
	return mb, got
}

// A holder that dies without releasing (kill -9) is taken over once its TTL passed without a
// renewal, never while it still renews.
func TestLeaseTakeoverAfterTheHolderDies(t *testing.T) {
	env := startNATS(t)
	ctx := context.Background()
	const ttl = 1500 * time.Millisecond
	a := newLease(env, "caud-a", ttl)
	if ok, _, err := a.tryAcquire(ctx); !ok || err != nil {
		t.Fatalf("a: %v %v", ok, err)
	}
	mb, took := standby(t, env, "caud-b", ttl)
	// a renews for three TTLs: b must wait.
	for range 9 {
		time.Sleep(ttl / 3)
		if err := a.renew(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case <-took:
			t.Fatal("the standby took the lease while its holder renewed it")
		default:
		}
	}
	waitFor(t, 5*time.Second, "standby reports the holder", func() bool {
		return strings.Contains(mb.Health(context.Background())[0].Detail, "worked by caud-a")
	})
	died := time.Now()
	select {
	case at := <-took:
		if at.Sub(died) < ttl/2 {
			t.Fatalf("taken over %s after the last renewal, before the TTL %s could pass", at.Sub(died), ttl)
		}
		t.Logf("takeover %s after the holder's last renewal (ttl %s)", at.Sub(died).Round(time.Millisecond), ttl)
	case <-time.After(30 * time.Second):
		t.Fatal("no takeover")
	}
	if err := a.renew(ctx); err != ErrLeaseLost {
		t.Fatalf("the dead holder's renewal: %v, want ErrLeaseLost", err)
	}
}

// A released lease is taken over at once: the standby watches the key (a TTL of a minute would
// otherwise hold it).
func TestLeaseReleaseWakesTheStandby(t *testing.T) {
	env := startNATS(t)
	ctx := context.Background()
	a := newLease(env, "caud-a", time.Minute)
	if ok, _, err := a.tryAcquire(ctx); !ok || err != nil {
		t.Fatalf("a: %v %v", ok, err)
	}
	mb, took := standby(t, env, "caud-b", time.Minute)
	waitFor(t, 10*time.Second, "standby", func() bool { return strings.HasPrefix(mb.Health(context.Background())[0].Detail, "standby") })
	released := time.Now()
	if err := a.release(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case at := <-took:
		t.Logf("takeover %s after release", at.Sub(released).Round(time.Millisecond))
	case <-time.After(20 * time.Second):
		t.Fatal("the standby did not take the released lease")
	}
}

// A process that restarts under the same holder name (caud's instance id) resumes its own lease
// at once, even though it never released it.
func TestLeaseRestartResumesItsOwnLease(t *testing.T) {
	env := startNATS(t)
	ctx := context.Background()
	first := newLease(env, "host/instance-1", time.Minute)
	if ok, _, err := first.tryAcquire(ctx); !ok || err != nil {
		t.Fatalf("first run: %v %v", ok, err)
	}
	// The first run dies; the second run of the same instance finds the lease under its name.
	second := newLease(env, "host/instance-1", time.Minute)
	ok, _, err := second.tryAcquire(ctx)
	if !ok || err != nil {
		t.Fatalf("restart: %v %v, want the lease at once", ok, err)
	}
	// Someone else still has to wait.
	other := newLease(env, "host/instance-2", time.Minute)
	if ok, cur, _ := other.tryAcquire(ctx); ok || cur.Holder != "host/instance-1" {
		t.Fatalf("other instance: took=%v holder %q", ok, cur.Holder)
	}
}
