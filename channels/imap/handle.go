package imap

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/channels/retry"
)

// Quarantine reasons (label reason of caud_imap_quarantined_total).
const (
	ReasonTooLarge    = "too_large"
	ReasonUnparseable = "unparseable"
	ReasonEmpty       = "empty"
	ReasonRejected    = "publish_rejected"
)

// handle turns one message into a request, a duplicate, a suppression or a quarantine. Only
// transient failures (JetStream unreachable) return outFailed; the message is then retried.
func (s *session) handle(uid imap.UID, size int64, raw []byte) (outcome, error) {
	o := s.m.o
	ctx := s.ctx
	if out, ok := s.deferred.take(uid); ok {
		return out, nil // published in the background (attachments read); now it is filed
	}
	if size > o.MaxMessageBytes || int64(len(raw)) > o.MaxMessageBytes {
		return s.quarantine(uid, raw, ReasonTooLarge, fmt.Sprintf("el mensaje mide %d bytes; el máximo es %d", size, o.MaxMessageBytes))
	}
	msg, err := normalizeSafe(raw, nil)
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
	// Second pass: stream the attachments into the archive, keeping those to read.
	var att *capture
	if o.Attachments != nil {
		att = &capture{reader: o.Attachments, maxBytes: o.MaxAttachmentReadBytes, maxFiles: o.MaxAttachmentsRead}
	}
	if len(msg.Attachments) > 0 { // without attachments the first pass already read everything
		msg, err = normalizeSafe(raw, att.wrap(func(name, ct string, r io.Reader) (string, error) {
			obj, err := s.sink.Archive(ctx, "email", ct, r)
			if err != nil {
				return "", err
			}
			return obj.Object, nil
		}))
	}
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
	if att != nil && len(att.files) > 0 {
		// Read in the background so that the mailbox goes on; published when read (or when
		// AttachmentTimeout ends the reading).
		s.deferPublish(uid, req, att, msg, raw, key.String())
		return outDeferred, nil
	}
	return s.publish(uid, req, msg, raw, key.String())
}

// publish publishes a request built from the mail and indexes its Message-ID.
func (s *session) publish(uid imap.UID, req *channels.Request, msg *Message, raw []byte, key string) (outcome, error) {
	o := s.m.o
	ctx := s.ctx
	rec, err := s.sink.Publish(ctx, channels.Submission{
		Request: req, Subject: o.Channel, MsgID: MsgID(msg.MessageID, raw), Source: s.m.source,
		Original: raw, OriginalType: "message/rfc822",
	})
	if err != nil {
		if errors.Is(err, channels.ErrInvalid) || errors.Is(err, retry.ErrPermanent) {
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
	if _, err := o.Requests.Create(ctx, key, []byte(id)); err != nil && !isConflict(err) {
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
