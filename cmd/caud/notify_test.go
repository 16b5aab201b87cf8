package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/triage/notify"
)

// smtpSink is a real SMTP server (go-smtp) on loopback that keeps what it receives.
type smtpSink struct {
	mu   sync.Mutex
	msgs [][]byte
	rcpt []string
}

func (s *smtpSink) NewSession(*smtp.Conn) (smtp.Session, error) { return &smtpSession{s: s}, nil }

type smtpSession struct{ s *smtpSink }

func (x *smtpSession) Reset()                               {}
func (x *smtpSession) Logout() error                        { return nil }
func (x *smtpSession) Mail(string, *smtp.MailOptions) error { return nil }
func (x *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	x.s.mu.Lock()
	x.s.rcpt = append(x.s.rcpt, to)
	x.s.mu.Unlock()
	return nil
}
func (x *smtpSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	x.s.mu.Lock()
	x.s.msgs = append(x.s.msgs, b)
	x.s.mu.Unlock()
	return err
}

// With notifications on, a desk request whose agent asked for a confirmation mail gets exactly one,
// through the whole daemon: desk → triage → notifier → SMTP.
func TestConfirmationMailThroughTheDaemon(t *testing.T) {
	sink := &smtpSink{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := smtp.NewServer(sink)
	srv.Domain = "localhost"
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	t.Setenv("CAU_NOTIFY_ENABLED", "true")
	t.Setenv("CAU_NOTIFY_SMTP_HOST", "127.0.0.1")
	t.Setenv("CAU_NOTIFY_SMTP_PORT", strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	t.Setenv("CAU_NOTIFY_SMTP_TLS", "none")
	t.Setenv("CAU_NOTIFY_SMTP_FROM", "CAU IPN <cau@ipn.mx>")
	app, base := startApp(t)

	_, id := submit(t, base, `{"channel":"phone","email":"aruiz@ipn.mx","name":"Ana Ruiz","confirm":true,"description":"No puedo entrar a mi correo institucional"}`)
	_, other := submit(t, base, `{"channel":"phone","email":"luis@ipn.mx","description":"No hay internet en el laboratorio 3"}`)
	waitQueued(t, base, id)
	waitQueued(t, base, other)
	deadline := time.Now().Add(20 * time.Second)
	for {
		sink.mu.Lock()
		n := len(sink.msgs)
		sink.mu.Unlock()
		if n >= 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Settled: the notifier has planned every triaged item and sent or suppressed every notice, so
	// no second, wrong mail can still arrive.
	ctx := context.Background()
	plan, err := app.h.JS.Consumer(ctx, natsjs.StreamTriaged, notify.ConsumerPlan)
	if err != nil {
		t.Fatal(err)
	}
	send, err := app.h.JS.Consumer(ctx, notify.StreamNotify, notify.ConsumerSend)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if idle, err := notify.ConsumersIdle(ctx, plan, send); err == nil && idle {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the notifier did not settle")
		}
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if len(sink.msgs) != 1 || strings.Join(sink.rcpt, ",") != "aruiz@ipn.mx" {
		t.Fatalf("%d mails to %v", len(sink.msgs), sink.rcpt)
	}
	m := sink.msgs[0]
	for _, want := range []string{"Auto-Submitted: auto-replied", "X-Auto-Response-Suppress: All", "To: ", "aruiz@ipn.mx", "From: "} {
		if !bytes.Contains(m, []byte(want)) {
			t.Errorf("mail lacks %q:\n%s", want, m)
		}
	}
	if !bytes.Contains(m, []byte(id)) && !bytes.Contains(bytes.ReplaceAll(m, []byte("=\r\n"), nil), []byte(id)) {
		t.Errorf("mail does not name the request %s", id)
	}
}
