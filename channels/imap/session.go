package imap

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/deadletter"
	"github.com/ipn-cgsi/caud/channels/natsjs"
)

// ErrTimeout is wrapped when an IMAP command got no answer within its timeout; the connection is
// then closed and the session restarts.
var ErrTimeout = errors.New("imap command timed out")

// Keywords set in flag-only mode.
const (
	KeywordProcessed   = "$CauProcesado"
	KeywordSuppressed  = "$CauSuprimido"
	KeywordQuarantined = "$CauCuarentena"
)

// Quarantine reasons (label reason of caud_imap_quarantined_total).
const (
	ReasonTooLarge    = "too_large"
	ReasonUnparseable = "unparseable"
	ReasonEmpty       = "empty"
	ReasonRejected    = "publish_rejected"
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
		return nil, fmt.Errorf("dial %s: %w", o.Host, err)
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
		return nil, fmt.Errorf("greeting %s: %w", o.Host, err)
	}
	_ = conn.SetDeadline(time.Time{})
	return c, nil
}

// session connects, selects the folder and syncs, then waits for new mail (IDLE or polling) and
// syncs again, until ctx ends or something fails.
func (m *Mailbox) session(ctx context.Context, sink channels.Sink) error {
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

type pending struct {
	uid  imap.UID
	size int64
}

// sync handles every message above the checkpoint, batch by batch.
func (s *session) sync() error {
	o := s.m.o
	for {
		last := s.cp.cp.LastUID
		var bufs []*imapclient.FetchMessageBuffer
		uids := imap.UIDSet{imap.UIDRange{Start: imap.UID(last + 1), Stop: 0}}
		err := s.cmd(func() (err error) {
			bufs, err = s.c.Fetch(uids, &imap.FetchOptions{UID: true, RFC822Size: true}).Collect()
			return err
		})
		if err != nil {
			return fmt.Errorf("list new messages: %w", err)
		}
		var todo []pending
		for _, b := range bufs {
			if uint32(b.UID) > last { // "n:*" always includes the highest UID, even below n
				todo = append(todo, pending{uid: b.UID, size: b.RFC822Size})
			}
		}
		if len(todo) == 0 {
			s.m.m.lastSync.WithLabelValues(o.Name).SetToCurrentTime()
			return nil
		}
		sort.Slice(todo, func(i, j int) bool { return todo[i].uid < todo[j].uid })
		var inflight chan error
		wait := func() error {
			if inflight == nil {
				return nil
			}
			err := <-inflight
			inflight = nil
			return err
		}
		for len(todo) > 0 {
			n, bytes := 0, int64(0)
			for n < len(todo) && n < o.BatchSize && (n == 0 || bytes+min(todo[n].size, o.MaxMessageBytes) <= o.BatchBytes) {
				bytes += min(todo[n].size, o.MaxMessageBytes)
				n++
			}
			b, err := s.prepare(todo[:n], last)
			if werr := wait(); werr != nil {
				return werr
			}
			if err != nil {
				return err
			}
			if b.firstErr != nil {
				return s.commit(b)
			}
			// Batch n is filed (STORE, MOVE, checkpoint) while batch n+1 is fetched and handled:
			// the IMAP server's work overlaps ours. Commits stay strictly in order.
			last = b.newLast
			done := make(chan error, 1)
			go func() { done <- s.commit(b) }()
			inflight = done
			todo = todo[n:]
		}
		if err := wait(); err != nil {
			return err
		}
	}
}

type outcome int

const (
	outFailed outcome = iota
	outGone
	outProcessed
	outSuppressed
	outQuarantined
)

type result struct {
	uid imap.UID
	out outcome
	err error
}

// prepared is a fetched and handled batch waiting to be filed.
type prepared struct {
	n        int
	groups   map[outcome]imap.UIDSet
	newLast  uint32
	firstErr error
	dFetch   time.Duration
	dHandle  time.Duration
}

// prepare fetches and handles one batch (publishing what it can). last is the checkpoint the batch
// follows; the result says how far the checkpoint may advance once the batch is filed.
func (s *session) prepare(batch []pending, last uint32) (*prepared, error) {
	o := s.m.o
	var small, large imap.UIDSet
	var total int64
	for _, p := range batch {
		if p.size > o.MaxMessageBytes {
			large.AddNum(p.uid)
		} else {
			small.AddNum(p.uid)
			total += p.size
		}
	}
	raws := map[imap.UID][]byte{}
	tFetch := time.Now()
	if len(small) > 0 {
		section := &imap.FetchItemBodySection{Peek: true}
		err := s.do(o.CommandTimeout+time.Duration(total>>20)*time.Second, func() error {
			cmd := s.c.Fetch(small, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{section}})
			for {
				msg := cmd.Next()
				if msg == nil {
					break
				}
				var uid imap.UID
				var raw []byte
				for item := msg.Next(); item != nil; item = msg.Next() {
					switch it := item.(type) {
					case imapclient.FetchItemDataUID:
						uid = it.UID
					case imapclient.FetchItemDataBodySection:
						if it.Literal != nil {
							b, err := io.ReadAll(io.LimitReader(it.Literal, o.MaxMessageBytes+1))
							if err != nil {
								cmd.Close()
								return err
							}
							raw = b
						}
					}
				}
				if uid != 0 && raw != nil {
					raws[uid] = raw
				}
			}
			return cmd.Close()
		})
		if err != nil {
			return nil, fmt.Errorf("fetch: %w", err)
		}
	}
	if len(large) > 0 {
		// Only the header of an oversized message is read; the quarantine keeps the whole one.
		section := &imap.FetchItemBodySection{Peek: true, Specifier: imap.PartSpecifierHeader}
		var bufs []*imapclient.FetchMessageBuffer
		if err := s.cmd(func() (err error) {
			bufs, err = s.c.Fetch(large, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{section}}).Collect()
			return err
		}); err != nil {
			return nil, fmt.Errorf("fetch headers: %w", err)
		}
		for _, b := range bufs {
			if len(b.BodySection) > 0 {
				raws[b.UID] = b.BodySection[0].Bytes
			}
		}
	}
	s.m.stats.fetched.Add(int64(len(raws)))
	s.m.m.fetched.WithLabelValues(o.Name).Add(float64(len(raws)))

	dFetch := time.Since(tFetch)
	tHandle := time.Now()
	results := make([]result, len(batch))
	for _, wave := range waves(batch, raws) {
		sem := make(chan struct{}, o.Workers)
		var wg sync.WaitGroup
		for _, i := range wave {
			p := batch[i]
			raw, ok := raws[p.uid]
			if !ok {
				results[i] = result{uid: p.uid, out: outGone} // expunged meanwhile by someone else
				continue
			}
			wg.Add(1)
			sem <- struct{}{}
			go func(i int, p pending, raw []byte) {
				defer func() { <-sem; wg.Done() }()
				out, err := s.handle(p.uid, p.size, raw)
				results[i] = result{uid: p.uid, out: out, err: err}
			}(i, p, raw)
		}
		wg.Wait()
	}

	b := &prepared{n: len(batch), groups: map[outcome]imap.UIDSet{}, newLast: last, dFetch: dFetch, dHandle: time.Since(tHandle)}
	prefix := true
	for _, r := range results {
		if r.out == outFailed {
			prefix = false
			if b.firstErr == nil {
				b.firstErr = fmt.Errorf("uid %d: %w", r.uid, r.err)
			}
			continue
		}
		if r.out != outGone {
			set := b.groups[r.out]
			set.AddNum(r.uid)
			b.groups[r.out] = set
		}
		if prefix {
			b.newLast = uint32(r.uid)
		}
	}
	return b, nil
}

// commit files a prepared batch, then advances the checkpoint over its handled prefix. It returns
// the batch's first handling error, if any, once the rest is filed.
func (s *session) commit(b *prepared) error {
	o := s.m.o
	tFile := time.Now()
	defer func() {
		s.m.log.Debug("batch", "n", b.n, "fetch", b.dFetch, "handle", b.dHandle, "file+checkpoint", time.Since(tFile))
	}()
	groups := b.groups
	// File the handled mail before advancing the checkpoint: a crash in between re-reads it, and
	// the Message-ID index turns that into a duplicate, not a second request.
	if err := s.file(groups[outProcessed], o.ProcessedFolder, KeywordProcessed); err != nil {
		return err
	}
	if err := s.file(groups[outSuppressed], o.SuppressedFolder, KeywordSuppressed); err != nil {
		return err
	}
	if err := s.file(groups[outQuarantined], o.QuarantineFolder, KeywordQuarantined); err != nil {
		return err
	}
	if err := s.cp.save(s.ctx, Checkpoint{UIDValidity: s.uidv, LastUID: b.newLast}); err != nil {
		return err
	}
	return b.firstErr
}

// file marks uids \Seen and moves them to folder (MOVE, else COPY + STORE \Deleted + UID
// EXPUNGE); with no folder it adds keyword and leaves them in place.
func (s *session) file(uids imap.UIDSet, folder, keyword string) error {
	if len(uids) == 0 {
		return nil
	}
	flags := []imap.Flag{imap.FlagSeen}
	if folder == "" || folder == s.m.o.Folder {
		flags = append(flags, imap.Flag(keyword))
	}
	if err := s.cmd(func() error {
		return s.c.Store(uids, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: flags}, nil).Close()
	}); err != nil {
		return fmt.Errorf("store flags: %w", err)
	}
	if folder == "" || folder == s.m.o.Folder {
		return nil
	}
	if s.move {
		if err := s.cmd(func() error { _, err := s.c.Move(uids, folder).Wait(); return err }); err != nil {
			return fmt.Errorf("move to %s: %w", folder, err)
		}
		return nil
	}
	if err := s.cmd(func() error { _, err := s.c.Copy(uids, folder).Wait(); return err }); err != nil {
		return fmt.Errorf("copy to %s: %w", folder, err)
	}
	if err := s.cmd(func() error {
		return s.c.Store(uids, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close()
	}); err != nil {
		return fmt.Errorf("store \\Deleted: %w", err)
	}
	if err := s.cmd(func() error {
		if s.uidplus {
			return s.c.UIDExpunge(uids).Close()
		}
		return s.c.Expunge().Close()
	}); err != nil {
		return fmt.Errorf("expunge: %w", err)
	}
	return nil
}

// handle turns one message into a request, a duplicate, a suppression or a quarantine. Only
// transient failures (JetStream unreachable) return outFailed; the message is then retried.
func (s *session) handle(uid imap.UID, size int64, raw []byte) (outcome, error) {
	o := s.m.o
	ctx := s.ctx
	if size > o.MaxMessageBytes || int64(len(raw)) > o.MaxMessageBytes {
		return s.quarantine(uid, raw, ReasonTooLarge, fmt.Sprintf("el mensaje mide %d bytes; el máximo es %d", size, o.MaxMessageBytes))
	}
	msg, err := Normalize(bytes.NewReader(raw), nil)
	if err != nil {
		return s.quarantine(uid, raw, ReasonUnparseable, err.Error())
	}
	if msg.Auto != "" {
		if _, err := s.sink.Archive(ctx, o.Channel, "message/rfc822", bytes.NewReader(raw)); err != nil {
			return outFailed, fmt.Errorf("archive suppressed: %w", err)
		}
		s.m.stats.suppressed.Add(1)
		s.m.m.suppressed.WithLabelValues(o.Name, msg.Auto).Inc()
		s.m.log.Info("auto-reply or bounce suppressed", "uid", uid, "reason", msg.Auto, "from", msg.FromEmail)
		return outSuppressed, nil
	}
	key := natsjs.RawMailKey(raw)
	if msg.MessageID != "" {
		key = natsjs.MessageIDKey(msg.MessageID)
	}
	if e, err := o.Requests.Get(ctx, key.String()); err == nil {
		s.m.stats.duplicates.Add(1)
		s.m.m.duplicates.WithLabelValues(o.Name).Inc()
		s.m.log.Info("duplicate mail: request already created", "uid", uid, "message_id", msg.MessageID, "request", string(e.Value()))
		return outProcessed, nil
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return outFailed, fmt.Errorf("message-id index: %w", err)
	}
	// Second pass: stream the attachments into the archive.
	msg, err = Normalize(bytes.NewReader(raw), func(name, ct string, r io.Reader) (string, error) {
		obj, err := s.sink.Archive(ctx, "email", ct, r)
		if err != nil {
			return "", err
		}
		return obj.Object, nil
	})
	if err != nil {
		if errors.Is(err, ErrUnparseable) {
			return s.quarantine(uid, raw, ReasonUnparseable, err.Error())
		}
		return outFailed, err
	}
	req, err := s.request(uid, msg)
	if err != nil {
		return outFailed, err
	}
	if req == nil {
		return s.quarantine(uid, raw, ReasonEmpty, "el mensaje no tiene texto, asunto ni adjuntos")
	}
	rec, err := s.sink.Publish(ctx, channels.Submission{
		Request: req, Subject: o.Channel, MsgID: MsgID(msg.MessageID, raw), Source: s.m.source,
		Original: raw, OriginalType: "message/rfc822",
	})
	if err != nil {
		if errors.Is(err, channels.ErrInvalid) || errors.Is(err, natsjs.ErrPermanent) {
			return s.quarantine(uid, raw, ReasonRejected, err.Error())
		}
		return outFailed, fmt.Errorf("publish: %w", err)
	}
	id := req.ID
	if rec.Duplicate {
		// Published before a crash: index the request JetStream kept, not the one just built.
		if orig, err := s.storedID(rec.Sequence); err == nil {
			id = orig
		}
	}
	if _, err := o.Requests.Create(ctx, key.String(), []byte(id)); err != nil && !isConflict(err) {
		return outFailed, fmt.Errorf("index message-id: %w", err)
	}
	if rec.Duplicate {
		s.m.stats.duplicates.Add(1)
		s.m.m.duplicates.WithLabelValues(o.Name).Inc()
	} else {
		s.m.stats.published.Add(1)
		s.m.m.published.WithLabelValues(o.Name).Inc()
	}
	return outProcessed, nil
}

func (s *session) storedID(seq uint64) (string, error) {
	st, err := s.m.o.JS.Stream(s.ctx, natsjs.StreamInbound)
	if err != nil {
		return "", err
	}
	rm, err := st.GetMsg(s.ctx, seq)
	if err != nil {
		return "", err
	}
	if id := rm.Header.Get("ce-id"); id != "" {
		return id, nil
	}
	return "", errors.New("stored request has no ce-id")
}

// request builds the Request of a normalized message; nil when there is nothing to read at all.
func (s *session) request(uid imap.UID, msg *Message) (*channels.Request, error) {
	o := s.m.o
	sp := SplitRequest(msg)
	f := ExtractFieldsFrom(sp, msg.FromEmail, o.Units)
	subject := msg.Subject
	if len(subject) > channels.MaxSubjectBytes {
		subject = cleanText(subject[:channels.MaxSubjectBytes-4]) // cleanText fixes a cut rune
	}
	now := time.Now().UTC()
	req := &channels.Request{
		ID:         s.m.ids.New(now),
		Channel:    channels.MediumEmail,
		ReceivedAt: now,
		Source: channels.Source{
			Mailbox: o.Address, Folder: o.Folder, UIDValidity: s.uidv, UID: uint32(uid), MessageID: msg.MessageID,
		},
		Requester: channels.Requester{
			Name: msg.FromName, Email: msg.FromEmail, Unit: f.Unit, Role: f.Role, Extension: f.Extension,
		},
		Subject:   subject,
		Text:      sp.Text,
		Signature: sp.Signature,
		Quoted:    sp.Quoted,
		Auto:      channels.Auto{AutoSubmitted: false},
	}
	decorate(req, msg)
	for _, a := range msg.Attachments {
		req.Attachments = append(req.Attachments, channels.Attachment{
			Name: a.Name, ContentType: a.ContentType, Size: a.Size, SHA256: a.SHA256, Object: a.Object,
		})
	}
	if msg.InReplyTo != "" || len(msg.References) > 0 {
		th := &channels.Thread{InReplyTo: msg.InReplyTo, References: msg.References}
		// In-Reply-To first, then References from the most recent.
		cands := []string{msg.InReplyTo}
		for i := len(msg.References) - 1; i >= 0; i-- {
			cands = append(cands, msg.References[i])
		}
		for _, id := range cands {
			if id == "" {
				continue
			}
			e, err := o.Requests.Get(s.ctx, natsjs.MessageIDKey(id).String())
			if err == nil {
				th.FollowupOf = string(e.Value())
				break
			}
			if !errors.Is(err, jetstream.ErrKeyNotFound) {
				return nil, fmt.Errorf("follow-up lookup: %w", err)
			}
		}
		req.Thread = th
	}
	if req.Text == "" && req.Subject == "" && len(req.Attachments) == 0 {
		return nil, nil
	}
	return req, nil
}

// quarantine archives a poison message, dead-letters it with the reason and files it in the
// quarantine folder. The mailbox goes on.
func (s *session) quarantine(uid imap.UID, raw []byte, reason, detail string) (outcome, error) {
	o := s.m.o
	obj, err := s.sink.Archive(s.ctx, o.Channel, "message/rfc822", bytes.NewReader(raw))
	if err != nil {
		return outFailed, fmt.Errorf("archive poison: %w", err)
	}
	var body []byte
	if len(raw) <= 256<<10 {
		body = raw
	}
	msg := deadletter.NewMsg(deadletter.StageIMAP, fmt.Sprintf("imap-dlq:%s:%d:%d", o.Name, s.uidv, uid), reason+": "+detail, body)
	msg.Header.Set(deadletter.HeaderOrigObject, obj.Object)
	msg.Header.Set("Cau-Mailbox", o.Address)
	msg.Header.Set("Cau-Folder", o.Folder)
	msg.Header.Set("Cau-Uidvalidity", strconv.FormatUint(uint64(s.uidv), 10))
	msg.Header.Set("Cau-Uid", strconv.FormatUint(uint64(uid), 10))
	pctx, cancel := context.WithTimeout(s.ctx, o.CommandTimeout)
	defer cancel()
	if err := deadletter.Publish(pctx, o.JS, msg); err != nil {
		return outFailed, err
	}
	s.m.stats.quarantined.Add(1)
	s.m.m.quarantined.WithLabelValues(o.Name, reason).Inc()
	s.m.log.Warn("poison mail quarantined", "uid", uid, "reason", reason, "detail", detail, "object", obj.Object)
	return outQuarantined, nil
}

// waves orders a batch for concurrent handling: a message that repeats the Message-ID of an
// earlier one in the batch, or answers one, waits for a later wave, so that the index entry it
// needs (duplicate, follow-up) exists by then. Most batches are one wave.
func waves(batch []pending, raws map[imap.UID][]byte) [][]int {
	type ids struct {
		mid  string
		refs []string
	}
	hdr := make([]ids, len(batch))
	for i, p := range batch {
		raw := raws[p.uid]
		if raw == nil {
			continue
		}
		h, _, _ := readHeader(raw)
		hdr[i].mid = natsjs.NormalizeMessageID(firstMsgID(h.Get("Message-Id")))
		for _, r := range append(msgIDList(h.Get("In-Reply-To")), msgIDList(h.Get("References"))...) {
			hdr[i].refs = append(hdr[i].refs, natsjs.NormalizeMessageID(r))
		}
	}
	level := make([]int, len(batch))
	firstAt := map[string]int{} // message id -> index of its first occurrence
	maxLevel := 0
	for i := range batch {
		for _, r := range append([]string{hdr[i].mid}, hdr[i].refs...) {
			if j, ok := firstAt[r]; ok && r != "" && level[j]+1 > level[i] {
				level[i] = level[j] + 1
			}
		}
		if hdr[i].mid != "" {
			if _, ok := firstAt[hdr[i].mid]; !ok {
				firstAt[hdr[i].mid] = i
			}
		}
		maxLevel = max(maxLevel, level[i])
	}
	out := make([][]int, maxLevel+1)
	for i, l := range level {
		out[l] = append(out[l], i)
	}
	return out
}
