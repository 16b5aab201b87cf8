package imap

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"

	"github.com/emersion/go-imap/v2"

	"github.com/ipn-cgsi/caud/channels"
)

// Attachment reading: PDF and image attachments are read (Options.Attachments, the memo pipeline)
// before the request is published, within Options.AttachmentTimeout per mail, so that their text
// reaches the triage and an attached oficio fills the memo fields. The mailbox does not wait for
// it: such a mail is read and published in the background (deferPublish) while the session goes
// on with the mails after it; it is left in the folder, and the checkpoint stays below it, until
// it is published; then the next sync finds it again, knows it by its Message-ID and files it.
// An attachment not read in time is published unread (Unread: timeout). A session that ends
// meanwhile loses nothing: the next one reads the mail again (the publish is idempotent).

// deferredSet is the set of UIDs being read in the background. Safe for concurrent use.
type deferredSet struct {
	mu   sync.Mutex
	uids map[uint32]bool
	// done holds the outcome of a background publish until the mail is filed.
	done map[uint32]outcome
}

// take returns (and forgets) the outcome a background publish left for uid.
func (d *deferredSet) take(uid imap.UID) (outcome, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	out, ok := d.done[uint32(uid)]
	delete(d.done, uint32(uid))
	return out, ok
}

func (d *deferredSet) finish(uid imap.UID, out outcome) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.uids, uint32(uid))
	if out == outFailed {
		return // handled again from the start
	}
	if d.done == nil {
		d.done = map[uint32]outcome{}
	}
	d.done[uint32(uid)] = out
}

func (d *deferredSet) has(uid imap.UID) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.uids[uint32(uid)]
}

func (d *deferredSet) set(uid imap.UID, on bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.uids == nil {
		d.uids = map[uint32]bool{}
	}
	d.uids[uint32(uid)] = on
}

// deferPublish reads the mail's attachments and publishes its request in the background, then
// wakes the session so that the mail is filed.
func (s *session) deferPublish(uid imap.UID, req *channels.Request, c *capture, msg *Message, raw []byte, key string) {
	s.deferred.set(uid, true)
	go func() {
		s.readAttachments(req, c)
		out, err := s.publish(uid, req, msg, raw, key)
		if err != nil {
			s.m.log.Warn("mail with attachments not published; retried on the next sync", "uid", uid, "err", err)
			out = outFailed
		}
		s.deferred.finish(uid, out)
		select {
		case s.newMail <- struct{}{}:
		default:
		}
	}()
}

// capture keeps the bytes of the attachments the reader reads, by archive object, while the
// second Normalize pass streams them into the archive.
type capture struct {
	reader   channels.AttachmentReader
	maxBytes int64
	maxFiles int

	mu    sync.Mutex
	files []captured
}

type captured struct {
	object, name string
	data         []byte
	tooLarge     bool
}

// wrap returns the AttachmentFunc that archives with archive and keeps what the reader wants.
func (c *capture) wrap(archive AttachmentFunc) AttachmentFunc {
	if c == nil || c.reader == nil {
		return archive
	}
	return func(name, ct string, r io.Reader) (string, error) {
		if !c.reader.Reads(name, ct, -1) {
			return archive(name, ct, r)
		}
		c.mu.Lock()
		full := len(c.files) >= c.maxFiles
		c.mu.Unlock()
		if full {
			return archive(name, ct, r)
		}
		var buf bytes.Buffer
		lw := &limitWriter{w: &buf, n: c.maxBytes}
		obj, err := archive(name, ct, io.TeeReader(r, lw))
		if err != nil || obj == "" {
			return obj, err
		}
		c.mu.Lock()
		c.files = append(c.files, captured{object: obj, name: name, data: buf.Bytes(), tooLarge: lw.over})
		c.mu.Unlock()
		return obj, nil
	}
}

// limitWriter keeps the first n bytes and notes whether more came.
type limitWriter struct {
	w    io.Writer
	n    int64
	over bool
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.n {
		l.over = true
		if l.n > 0 {
			_, _ = l.w.Write(p[:l.n])
		}
		l.n = 0
		return len(p), nil
	}
	l.n -= int64(len(p))
	return l.w.Write(p)
}

// read reads the captured attachments concurrently within the per-mail timeout and fills in the
// request's attachments (by archive object) and, from the first that reads as an oficio, its memo
// fields and the requester details the mail itself did not give.
func (s *session) readAttachments(req *channels.Request, c *capture) {
	if c == nil || len(c.files) == 0 {
		return
	}
	o := s.m.o
	ctx, cancel := context.WithTimeout(s.ctx, o.AttachmentTimeout)
	defer cancel()
	type result struct {
		text channels.AttachmentText
		err  error
	}
	results := make([]result, len(c.files))
	var wg sync.WaitGroup
	for i, f := range c.files {
		if f.tooLarge {
			results[i].err = &channels.UnreadError{Reason: "too_large", Detail: "over the attachment read limit"}
			continue
		}
		wg.Go(func() {
			t, err := c.reader.ReadAttachment(ctx, f.name, f.data)
			if err != nil && ctx.Err() != nil && !errors.Is(err, channels.ErrUnread) {
				err = &channels.UnreadError{Reason: "timeout", Detail: err.Error()}
			}
			results[i] = result{t, err}
		})
	}
	wg.Wait()
	byObject := map[string]int{}
	for i := range req.Attachments {
		byObject[req.Attachments[i].Object] = i
	}
	for i, f := range c.files {
		j, ok := byObject[f.object]
		if !ok {
			continue
		}
		a := &req.Attachments[j]
		r := results[i]
		if r.err != nil {
			a.Unread = channels.UnreadReason(r.err)
			if a.Unread == "" {
				a.Unread = "unreadable"
			}
			s.m.m.attachments.WithLabelValues(o.Name, "unread_"+a.Unread).Inc()
			s.m.log.Info("attachment not read", "uid", req.Source.UID, "name", f.name, "err", r.err)
			continue
		}
		a.Text, a.Method, a.Pages = r.text.Text, r.text.Method, r.text.Pages
		s.m.m.attachments.WithLabelValues(o.Name, "read_"+r.text.Method).Inc()
		if r.text.Memo != nil && req.Memo == nil {
			req.Memo = r.text.Memo
			if req.Requester.Extension == "" && len(r.text.Memo.Extensions) > 0 {
				req.Requester.Extension = r.text.Memo.Extensions[0]
			}
			if req.Subject == "" && r.text.Memo.Subject != "" {
				req.Subject = clipSubject(r.text.Memo.Subject)
			}
		}
	}
}

func clipSubject(s string) string {
	if len(s) > channels.MaxSubjectBytes {
		return cleanText(s[:channels.MaxSubjectBytes-4])
	}
	return s
}
