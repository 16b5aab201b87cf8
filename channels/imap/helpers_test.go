package imap

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/channels/natsjs/natstest"
)

const (
	testUser = "cau@ipn.mx"
	testPass = "secret"
)

// memServer is an imapserver + imapmemserver on 127.0.0.1:0.
type memServer struct {
	Addr string
	User *imapmemserver.User
	srv  *imapserver.Server
}

type serverOpts struct {
	noIdle bool // hide IDLE from CAPABILITY (the server still answers it)
	noMove bool
}

func startMemServer(t testing.TB, so serverOpts) *memServer {
	t.Helper()
	mem := imapmemserver.New()
	u := imapmemserver.NewUser(testUser, testPass)
	if err := u.Create("INBOX", nil); err != nil {
		t.Fatal(err)
	}
	mem.AddUser(u)
	caps := imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapUIDPlus: {}}
	if !so.noMove {
		caps[imap.CapMove] = struct{}{}
	}
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps:         caps,
		InsecureAuth: true,
		Logger:       log.New(io.Discard, "", 0),
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var l net.Listener = ln
	if so.noIdle {
		l = &noIdleListener{Listener: ln}
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return &memServer{Addr: ln.Addr().String(), User: u, srv: srv}
}

// noIdleListener rewrites " IDLE" in what the server writes to " XDLE", so clients see no IDLE.
type noIdleListener struct{ net.Listener }

func (l *noIdleListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &noIdleConn{Conn: c}, nil
}

type noIdleConn struct{ net.Conn }

func (c *noIdleConn) Write(p []byte) (int, error) {
	q := bytes.ReplaceAll(p, []byte(" IDLE"), []byte(" XDLE"))
	_, err := c.Conn.Write(q)
	return len(p), err
}

// dialIMAP logs in with a plain client for test setup (APPEND, LIST, STATUS).
func dialIMAP(t testing.TB, addr string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Login(testUser, testPass).Wait(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func appendRaw(t testing.TB, c *imapclient.Client, folder string, raw []byte) {
	t.Helper()
	cmd := c.Append(folder, int64(len(raw)), nil)
	if _, err := cmd.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
}

func folderCount(t testing.TB, c *imapclient.Client, folder string) uint32 {
	t.Helper()
	st, err := c.Status(folder, &imap.StatusOptions{NumMessages: true}).Wait()
	if err != nil {
		t.Fatalf("status %s: %v", folder, err)
	}
	return *st.NumMessages
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func fixtureMail(t testing.TB, dir, name string) []byte {
	return readFile(t, filepath.Join("testdata", dir, name))
}

// synthMail is a small valid message with a unique Message-ID.
func synthMail(i int) []byte {
	return []byte(fmt.Sprintf("From: Usuario %d <u%d@ipn.mx>\r\nTo: cau@ipn.mx\r\nSubject: Solicitud %d\r\nMessage-ID: <synth-%d@ipn.mx>\r\n"+
		"Date: Tue, 14 Oct 2025 10:00:00 -0600\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"+
		"No puedo entrar a mi correo institucional, número %d. Gracias.\r\n", i, i, i, i, i))
}

type testEnv struct {
	*natstest.Env
	Sink *natsjs.Sink
}

func startNATS(t testing.TB) *testEnv {
	env := natstest.Start(t, natsjs.Topology{})
	return &testEnv{Env: env, Sink: natsjs.NewSink(env.Handles, natsjs.SinkOptions{})}
}

func (e *testEnv) options(addr string) Options {
	return Options{
		Name: "cau", Address: testUser, Host: addr, TLS: TLSInsecure, Password: testPass,
		State: e.State, Requests: e.Requests, JS: e.JS,
		LeaseTTL: 2 * time.Second, CommandTimeout: 5 * time.Second, PollInterval: 200 * time.Millisecond,
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond,
		Logger: testLogger(),
	}
}

func testLogger() *slog.Logger {
	if os.Getenv("IMAP_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}

// running is a Mailbox running in the background until stop.
type running struct {
	mb   *Mailbox
	stop func()
}

func runMailbox(t testing.TB, o Options, sink channels.Sink) *running {
	t.Helper()
	mb, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mb.Run(ctx, sink) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Errorf("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return &running{mb: mb, stop: stop}
}

// inbound reads every request on CAU_INBOUND.
func (e *testEnv) inbound(t testing.TB) []channels.Request {
	t.Helper()
	return readInbound(t, e.Inbound)
}

func readInbound(t testing.TB, stream jetstream.Stream) []channels.Request {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []channels.Request
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := stream.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		var r channels.Request
		if err := json.Unmarshal(m.Data, &r); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

func (e *testEnv) inboundCount(t testing.TB) uint64 {
	info, err := e.Inbound.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func dlqMessages(t testing.TB, e *testEnv) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx := context.Background()
	info, err := e.DLQ.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		if m, err := e.DLQ.GetMsg(ctx, seq); err == nil {
			out = append(out, m)
		}
	}
	return out
}
