package imap

import (
	"bytes"
	"context"
	"errors"
	"net"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// crashingMove is a connection that turns the client's first UID MOVE into a UID COPY and drops
// the connection as soon as the server has answered it, before the client hears the answer: the
// mail is then in both folders, as after a server crash between the copy and the expunge.
type crashingMove struct {
	net.Conn
	fired *atomic.Bool
	mu    sync.Mutex
	tag   []byte
	seen  []byte
}

var moveCmd = regexp.MustCompile(`(?m)^(\S+) UID MOVE `)

func (c *crashingMove) Write(p []byte) (int, error) {
	if m := moveCmd.FindSubmatchIndex(p); m != nil && c.fired.CompareAndSwap(false, true) {
		q := bytes.Clone(p)
		copy(q[m[3]+1:], "UID COPY ") // same length as "UID MOVE "
		c.mu.Lock()
		c.tag = append(bytes.Clone(p[m[2]:m[3]]), ' ')
		c.mu.Unlock()
		_, err := c.Conn.Write(q)
		return len(p), err
	}
	return c.Conn.Write(p)
}

func (c *crashingMove) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tag != nil && n > 0 {
		c.seen = append(c.seen, p[:n]...)
		if bytes.Contains(c.seen, append([]byte("\r\n"), c.tag...)) || bytes.HasPrefix(c.seen, c.tag) {
			c.Conn.Close()
			return 0, net.ErrClosed
		}
		if len(c.seen) > 4096 {
			c.seen = c.seen[len(c.seen)-4096:]
		}
	}
	return n, err
}

// testInterruptedMove: a move cut between copy and expunge leaves each mail once in Procesados
// and none in INBOX, with one request each, once the mailbox reconnects.
func testInterruptedMove(t *testing.T, addr, user string, o Options, dial func(testing.TB, string, string) (appendTo func([]byte), count func(string) uint32)) {
	env := startNATS(t)
	appendTo, count := dial(t, addr, user)
	const n = 4
	for i := range n {
		appendTo(synthMail(100 + i))
	}
	var fired atomic.Bool
	o.Dial = func(ctx context.Context, network, a string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, network, a)
		if err != nil || fired.Load() {
			return conn, err
		}
		return &crashingMove{Conn: conn, fired: &fired}, nil
	}
	r := runMailbox(t, o, env.Sink)
	waitFor(t, 30*time.Second, "inbox emptied", func() bool { return fired.Load() && count("INBOX") == 0 })
	waitFor(t, 10*time.Second, "checkpoint without a move", func() bool {
		cp, err := loadCheckpoint(context.Background(), env.State, o.Name)
		return err == nil && cp.cp.Move == nil
	})
	if got := count("Procesados"); got != n {
		t.Errorf("Procesados holds %d, want %d (one copy each)", got, n)
	}
	if got := env.inboundCount(t); got != n {
		t.Errorf("%d requests, want %d", got, n)
	}
	if got := testutil.ToFloat64(r.mb.m.moveRecovered.WithLabelValues(o.Name)); got != n {
		t.Errorf("move_recovered %v, want %d", got, n)
	}
}

func TestInterruptedMoveLeavesNoSecondCopy(t *testing.T) {
	srv := startMemServer(t, serverOpts{})
	env := startNATS(t)
	testInterruptedMove(t, srv.Addr, testUser, env.options(srv.Addr), func(t testing.TB, addr, _ string) (func([]byte), func(string) uint32) {
		c := dialIMAP(t, addr)
		return func(raw []byte) { appendRaw(t, c, "INBOX", raw) }, func(f string) uint32 { return folderCount(t, c, f) }
	})
}

// backoffAtDial records, at every dial, the reconnect backoff the mailbox slept before it.
type backoffAtDial struct {
	mu     sync.Mutex
	seen   []float64
	refuse func(attempt int) bool
	mb     *Mailbox
	conns  []net.Conn
}

func (b *backoffAtDial) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seen = append(b.seen, testutil.ToFloat64(b.mb.m.reconnectBackoff.WithLabelValues(b.mb.o.Name)))
	if b.refuse(len(b.seen)) {
		return nil, errors.New("connection refused (test)")
	}
	conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err == nil {
		b.conns = append(b.conns, conn)
	}
	return conn, err
}

func (b *backoffAtDial) snapshot() []float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]float64(nil), b.seen...)
}

// TestBackoffRestartsAfterASyncAndRedialsSoon: while the server refuses connections the backoff
// grows only to RedialBackoff; after a session that synced, the next reconnect waits MinBackoff
// again, however long the backoff had grown before.
func TestBackoffRestartsAfterASyncAndRedialsSoon(t *testing.T) {
	env := startNATS(t)
	srv := startMemServer(t, serverOpts{})
	c := dialIMAP(t, srv.Addr)
	o := env.options(srv.Addr)
	o.MinBackoff, o.RedialBackoff, o.MaxBackoff = 20*time.Millisecond, 80*time.Millisecond, 2*time.Second
	mb, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	b := &backoffAtDial{mb: mb, refuse: func(n int) bool { return n <= 6 }}
	mb.o.Dial = b.dial
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mb.Run(ctx, env.Sink) }()
	t.Cleanup(func() { cancel(); <-done })
	appendRaw(t, c, "INBOX", synthMail(1))
	waitFor(t, 20*time.Second, "first request", func() bool { return env.inboundCount(t) == 1 })
	seen := b.snapshot()
	want := []float64{0, 0.02, 0.04, 0.08, 0.08, 0.08, 0.08} // capped at RedialBackoff
	if len(seen) != len(want) {
		t.Fatalf("dials saw backoffs %v, want %v", seen, want)
	}
	for i := range want {
		if seen[i] != want[i] {
			t.Fatalf("dials saw backoffs %v, want %v", seen, want)
		}
	}
	// A session that synced and then lost its connection is retried after MinBackoff.
	waitFor(t, 20*time.Second, "a complete sync", func() bool {
		return testutil.ToFloat64(mb.m.reconnectBackoff.WithLabelValues(o.Name)) == 0
	})
	b.mu.Lock()
	for _, conn := range b.conns {
		conn.Close()
	}
	b.mu.Unlock()
	waitFor(t, 20*time.Second, "redial", func() bool { return len(b.snapshot()) > len(want) })
	if got := b.snapshot()[len(want)]; got != 0.02 {
		t.Errorf("redial after a synced session waited %v s, want MinBackoff 0.02", got)
	}
	appendRaw(t, c, "INBOX", synthMail(2))
	deadline := time.Now().Add(30 * time.Second)
	for env.inboundCount(t) != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no second request; health %+v, backoffs at dials %v", mb.Health(context.Background()), b.snapshot())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestDovecotInterruptedMoveLeavesNoSecondCopy(t *testing.T) {
	dc := startDovecot(t)
	env := startNATS(t)
	o := env.options(dc.Addr)
	o.Username, o.Address = "move@ipn.mx", "move@ipn.mx"
	testInterruptedMove(t, dc.Addr, o.Username, o, func(t testing.TB, addr, user string) (func([]byte), func(string) uint32) {
		c := dialDovecot(t, addr, user)
		return func(raw []byte) { appendRaw(t, c, "INBOX", raw) }, func(f string) uint32 { return folderCount(t, c, f) }
	})
}
