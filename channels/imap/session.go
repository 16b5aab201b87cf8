package imap

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/ipn-cgsi/caud/channels"
)

// ErrTimeout is wrapped when an IMAP command got no answer within its timeout; the connection is
// then closed and the session restarts.
var ErrTimeout = errors.New("imap command timed out")

// errUnreachable marks a session that never reached the server's greeting (refused, reset, no
// answer): retried at the short RedialBackoff.
var errUnreachable = errors.New("server unreachable")

// Keywords set in flag-only mode.
const (
	KeywordProcessed   = "$CauProcesado"
	KeywordSuppressed  = "$CauSuprimido"
	KeywordQuarantined = "$CauCuarentena"
)

type session struct {
	m       *Mailbox
	ctx     context.Context
	sink    channels.Sink
	c       *imapclient.Client
	newMail chan struct{}
	cp      *checkpointer
	uidv    uint32
	idle    bool
	move    bool
	uidplus bool
	// deferred are the UIDs whose attachments are being read in the background (attachments.go).
	deferred deferredSet
}

// do runs one IMAP command with a timeout. go-imap waits forever for the first byte of an answer
// (issue #762), so on timeout the connection is closed, which fails the command.
func (s *session) do(d time.Duration, fn func() error) error {
	done := make(chan error, 1)
	go func() { done <- fn() }()
	t := time.NewTimer(d)
	defer t.Stop()
	var cause error
	select {
	case err := <-done:
		return err
	case <-t.C:
		cause = fmt.Errorf("%w after %v", ErrTimeout, d)
	case <-s.ctx.Done():
		cause = context.Cause(s.ctx)
	}
	s.c.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
	return cause
}

func (s *session) cmd(fn func() error) error { return s.do(s.m.o.CommandTimeout, fn) }

func (m *Mailbox) dial(ctx context.Context, s *session) (*imapclient.Client, error) {
	o := m.o
	dctx, cancel := context.WithTimeout(ctx, o.CommandTimeout)
	defer cancel()
	conn, err := o.Dial(dctx, "tcp", o.Host)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w: %w", o.Host, errUnreachable, err)
	}
	host, _, _ := net.SplitHostPort(o.Host)
	tlsConfig := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if o.TLSConfig != nil {
		tlsConfig = o.TLSConfig.Clone()
		if tlsConfig.ServerName == "" {
			tlsConfig.ServerName = host
		}
	}
	copts := &imapclient.Options{
		TLSConfig: tlsConfig,
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{
			Mailbox: func(d *imapclient.UnilateralDataMailbox) {
				if d.NumMessages != nil {
					select {
					case s.newMail <- struct{}{}:
					default:
					}
				}
			},
		},
	}
	// The handshake and the greeting are bounded by the same deadline as the dial.
	_ = conn.SetDeadline(time.Now().Add(o.CommandTimeout))
	var c *imapclient.Client
	switch o.TLS {
	case TLSImplicit:
		tc := tls.Client(conn, tlsConfig)
		if err := tc.HandshakeContext(dctx); err != nil {
			conn.Close()
			return nil, fmt.Errorf("tls handshake %s: %w", o.Host, err)
		}
		c = imapclient.New(tc, copts)
	case TLSStartTLS:
		c, err = imapclient.NewStartTLS(conn, copts)
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("starttls %s: %w", o.Host, err)
		}
	default:
		c = imapclient.New(conn, copts)
	}
	// go-imap waits 30 s for a greeting whatever the deadline: bound it by closing the connection.
	var timedOut atomic.Bool
	t := time.AfterFunc(o.CommandTimeout, func() { timedOut.Store(true); c.Close() })
	err = c.WaitGreeting()
	t.Stop()
	if timedOut.Load() {
		err = fmt.Errorf("%w after %v", ErrTimeout, o.CommandTimeout)
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("greeting %s: %w: %w", o.Host, errUnreachable, err)
	}
	_ = conn.SetDeadline(time.Time{})
	return c, nil
}

// session connects, selects the folder and syncs, then waits for new mail (IDLE or polling) and
// syncs again, until ctx ends or something fails. synced is called after every complete sync.
func (m *Mailbox) session(ctx context.Context, sink channels.Sink, synced func()) error {
	s := &session{m: m, ctx: ctx, sink: sink, newMail: make(chan struct{}, 1)}
	c, err := m.dial(ctx, s)
	if err != nil {
		return err
	}
	s.c = c
	defer c.Close()
	o := m.o
	if err := s.cmd(func() error { return c.Login(o.Username, o.Password).Wait() }); err != nil {
		return fmt.Errorf("login %s: %w", o.Username, err)
	}
	caps := c.Caps()
	s.idle = caps.Has(imap.CapIdle) || caps.Has(imap.CapIMAP4rev2)
	s.move = caps.Has(imap.CapMove) || caps.Has(imap.CapIMAP4rev2)
	s.uidplus = caps.Has(imap.CapUIDPlus) || caps.Has(imap.CapIMAP4rev2)
	for _, f := range []string{o.ProcessedFolder, o.QuarantineFolder, o.SuppressedFolder} {
		if f == "" || f == o.Folder {
			continue
		}
		// CREATE of an existing folder fails with NO [ALREADYEXISTS] (or a bare NO): harmless.
		if err := s.cmd(func() error { return c.Create(f, nil).Wait() }); err != nil {
			var ie *imap.Error
			if !errors.As(err, &ie) {
				return fmt.Errorf("create %s: %w", f, err)
			}
		}
	}
	var sel *imap.SelectData
	if err := s.cmd(func() (err error) { sel, err = c.Select(o.Folder, nil).Wait(); return err }); err != nil {
		return fmt.Errorf("select %s: %w", o.Folder, err)
	}
	if s.cp, err = loadCheckpoint(ctx, o.State, o.Name); err != nil {
		return err
	}
	s.uidv = sel.UIDValidity
	if s.cp.cp.UIDValidity != sel.UIDValidity {
		if s.cp.cp.UIDValidity != 0 {
			m.log.Warn("UIDVALIDITY changed: rescanning the folder; the Message-ID index keeps it from doubling requests",
				"old", s.cp.cp.UIDValidity, "new", sel.UIDValidity)
		}
		if err := s.cp.save(ctx, Checkpoint{UIDValidity: sel.UIDValidity, LastUID: 0}); err != nil {
			return err
		}
	}
	if err := s.recoverMove(); err != nil {
		return err
	}
	m.m.connected.WithLabelValues(o.Name).Set(1)
	mode := "idle"
	if !s.idle {
		mode = fmt.Sprintf("polling every %v (server lacks IDLE)", o.PollInterval)
	}
	m.log.Info("mailbox connected", "folder", o.Folder, "uidvalidity", sel.UIDValidity, "messages", sel.NumMessages, "mode", mode)
	m.setHealth(true, "connected: "+mode)
	for {
		if err := s.sync(); err != nil {
			return err
		}
		synced()
		if err := s.wait(); err != nil {
			return err
		}
	}
}

// wait returns when there may be new mail: IDLE saw EXISTS, the IDLE refresh or poll interval
// elapsed (a sync then also proves the connection alive).
func (s *session) wait() error {
	o := s.m.o
	select {
	case <-s.newMail:
		return nil // arrived while syncing
	default:
	}
	if !s.idle {
		select {
		case <-s.ctx.Done():
			return context.Cause(s.ctx)
		case <-s.c.Closed():
			return errors.New("connection closed")
		case <-s.newMail:
		case <-time.After(o.PollInterval):
		}
		return s.cmd(func() error { return s.c.Noop().Wait() })
	}
	var idle *imapclient.IdleCommand
	if err := s.cmd(func() (err error) { idle, err = s.c.Idle(); return err }); err != nil {
		return fmt.Errorf("idle: %w", err)
	}
	t := time.NewTimer(o.IdleRefresh)
	defer t.Stop()
	var cause error
	select {
	case <-s.newMail:
	case <-t.C:
	case <-s.c.Closed():
		cause = errors.New("connection closed during IDLE")
	case <-s.ctx.Done():
		cause = context.Cause(s.ctx)
	}
	if cause != nil {
		return cause
	}
	if err := s.cmd(func() error {
		if err := idle.Close(); err != nil {
			return err
		}
		return idle.Wait()
	}); err != nil {
		return fmt.Errorf("end idle: %w", err)
	}
	return nil
}
