package notify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/deadletter"
	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/channels/retry"
	"github.com/ipn-cgsi/caud/triage"
)

// Notice is one rendered notice: the JSON body of a message on cau.notify.<channel>. Everything the
// sender needs is in it, so a resend after a crash is byte-for-byte the same message.
type Notice struct {
	RequestID  string    `json:"request_id"`
	Kind       string    `json:"kind"`
	Channel    string    `json:"channel"` // delivery: email | facebook | x
	Outcome    string    `json:"outcome"`
	ReceivedAt time.Time `json:"received_at"`
	PlannedAt  time.Time `json:"planned_at"`
	Email      *Email    `json:"email,omitempty"`
	Social     *Social   `json:"social,omitempty"`
}

// Email is an e-mail notice. Message-ID, In-Reply-To and References are without angle brackets.
type Email struct {
	From       string   `json:"from"`
	FromName   string   `json:"from_name,omitempty"`
	To         string   `json:"to"`
	ToName     string   `json:"to_name,omitempty"`
	Subject    string   `json:"subject"`
	MessageID  string   `json:"message_id"`
	InReplyTo  string   `json:"in_reply_to,omitempty"`
	References []string `json:"references,omitempty"`
	Text       string   `json:"text"`
	HTML       string   `json:"html"`
}

// Social is a notice on Facebook or X.
type Social struct {
	// Kind is "message" (Messenger), "comment" (a reply to a Page comment) or "dm" (X).
	Kind        string `json:"kind"`
	RecipientID string `json:"recipient_id,omitempty"`
	CommentID   string `json:"comment_id,omitempty"`
	Text        string `json:"text"`
}

// Platform limits on text length, in characters.
const (
	maxMessenger = 2000
	maxComment   = 8000
	maxXDM       = 10000
)

// mexico is Mexico City time (UTC-6, no daylight saving since 2022): for the dates requesters read
// and for the day of the per-sender cap.
var mexico = time.FixedZone("CST", -6*3600)

func (n *Notifier) planMsg(ctx context.Context, m jetstream.Msg) {
	md, err := m.Metadata()
	if err != nil {
		n.deadLetter(ctx, m, fmt.Errorf("%w: metadata: %v", retry.ErrPermanent, err))
		return
	}
	var it triage.Item
	if err := json.Unmarshal(m.Data(), &it); err != nil {
		n.deadLetter(ctx, m, fmt.Errorf("%w: decode item: %v", retry.ErrPermanent, err))
		return
	}
	if it.Request.ID == "" {
		n.deadLetter(ctx, m, fmt.Errorf("%w: item without request id", retry.ErrPermanent))
		return
	}
	notice, reason, err := n.decide(&it)
	if err == nil && reason == "" {
		reason, err = n.reserve(ctx, notice, md.Sequence.Stream)
	}
	if err == nil && reason == "" {
		err = n.publish(ctx, notice)
	}
	if err != nil {
		if errors.Is(err, retry.ErrPermanent) {
			n.deadLetter(ctx, m, err)
			return
		}
		delay := n.backoff(md.NumDelivered)
		n.log.Warn("notify plan failed, will retry", "request", it.Request.ID, "err", err, "delay", delay)
		_ = m.NakWithDelay(delay)
		return
	}
	if reason != "" {
		n.m.suppressed.WithLabelValues(reason).Inc()
		n.log.Info("notice suppressed", "request", it.Request.ID, "outcome", it.Triage.Outcome, "channel", it.Request.Channel, "reason", reason)
	} else {
		n.log.Info("notice planned", "request", it.Request.ID, "kind", notice.Kind, "channel", notice.Channel)
	}
	if err := m.Ack(); err != nil {
		// The notice is published under its Nats-Msg-Id and its plan key names this item: a
		// redelivery republishes a duplicate that JetStream drops.
		n.log.Warn("ack triaged item", "request", it.Request.ID, "err", err)
	}
}

// decide returns the notice a triaged item calls for, or the reason it gets none. It reads no
// state: what depends on earlier notices (already planned, daily cap) is reserve's.
func (n *Notifier) decide(it *triage.Item) (*Notice, string, error) {
	req := &it.Request
	kind := Kind(it.Triage.Outcome)
	switch {
	case !n.channels[req.Channel]:
		return nil, ReasonChannelDisabled, nil
	case kind == "" || (n.o.Outcomes != nil && !enabled(n.o.Outcomes, it.Triage.Outcome)):
		return nil, ReasonOutcomeDisabled, nil
	case req.Auto.NoReply():
		// Machine mail, or list and bulk mail: a list must never get an automatic answer.
		return nil, ReasonAutoSubmitted, nil
	case req.Thread != nil && req.Thread.FollowupOf != "":
		// A reply in a thread we already answered: the agent has it; answering every reply
		// would be a conversation with a machine, or a loop with one.
		return nil, ReasonFollowup, nil
	case (req.Channel == channels.MediumPhone || req.Channel == channels.MediumInPerson) && !req.Confirm:
		return nil, ReasonNoConfirm, nil
	case req.ReceivedAt.IsZero() || n.o.Now().Sub(req.ReceivedAt) > n.o.MaxAge:
		return nil, ReasonTooOld, nil
	}
	now := n.o.Now().UTC()
	d := n.data(it, kind)
	notice := &Notice{RequestID: req.ID, Kind: kind, Outcome: it.Triage.Outcome, ReceivedAt: req.ReceivedAt, PlannedAt: now}
	switch req.Channel {
	case channels.MediumFacebook, channels.MediumX:
		s := req.Source.Social
		if s == nil || s.SenderID == "" && s.CommentID == "" {
			return nil, ReasonNoAddress, nil
		}
		notice.Channel = req.Channel
		sn := &Social{}
		limit := maxXDM
		switch {
		case req.Channel == channels.MediumX:
			if n.o.XBearerToken == "" {
				return nil, ReasonNotConfigured, nil
			}
			if s.SenderID == "" || s.SenderID == s.ForUserID {
				return nil, ReasonNoAddress, nil
			}
			// A mention is answered privately too: a public reply would invite a public thread.
			sn.Kind, sn.RecipientID = "dm", s.SenderID
		case s.Kind == "comment":
			if n.o.FacebookPageToken == "" {
				return nil, ReasonNotConfigured, nil
			}
			if s.CommentID == "" || (s.PageID != "" && s.SenderID == s.PageID) {
				return nil, ReasonNoAddress, nil
			}
			sn.Kind, sn.CommentID, limit = "comment", s.CommentID, maxComment
			d.Public = true
		default:
			if n.o.FacebookPageToken == "" {
				return nil, ReasonNotConfigured, nil
			}
			if s.SenderID == "" || (s.PageID != "" && s.SenderID == s.PageID) {
				return nil, ReasonNoAddress, nil
			}
			sn.Kind, sn.RecipientID, limit = "message", s.SenderID, maxMessenger
		}
		r, err := n.tmpl.render(kind, d)
		if err != nil {
			return nil, "", fmt.Errorf("%w: %v", retry.ErrPermanent, err)
		}
		sn.Text = truncate(r.Social, limit)
		notice.Social = sn
		return notice, "", nil
	}
	// Everything else is answered by e-mail.
	to := req.Requester.Email
	if to == "" && req.Memo != nil && len(req.Memo.Emails) > 0 {
		to = req.Memo.Emails[0]
	}
	addr, err := parseAddress(to)
	if to == "" || err != nil {
		return nil, ReasonNoAddress, nil
	}
	if noReply(addr.Address) {
		return nil, ReasonNoReplyAddress, nil
	}
	fromAddr := strings.ToLower(strings.TrimSpace(req.Source.Mailbox))
	if req.Channel != channels.MediumEmail || fromAddr == "" {
		fromAddr = ""
	}
	var fromName string
	if f, err := parseAddress(n.o.SMTP.From); err == nil {
		fromName = f.Name
		if fromAddr == "" {
			fromAddr = f.Address
		}
	}
	if n.own[addr.Address] || addr.Address == fromAddr {
		return nil, ReasonOwnAddress, nil
	}
	if n.o.SMTP.Host == "" || fromAddr == "" {
		return nil, ReasonNotConfigured, nil
	}
	r, err := n.tmpl.render(kind, d)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %v", retry.ErrPermanent, err)
	}
	e := &Email{
		From: fromAddr, FromName: fromName, To: addr.Address, ToName: firstNonEmpty(addr.Name, req.Requester.Name),
		Subject: r.Subject, MessageID: MessageID(req.ID, kind, fromAddr), Text: r.Text, HTML: r.HTML,
	}
	if req.Channel == channels.MediumEmail {
		if req.Subject != "" {
			e.Subject = ReplySubject(req.Subject)
		}
		if mid := stripAngle(req.Source.MessageID); mid != "" {
			e.InReplyTo = mid
			var refs []string
			if req.Thread != nil {
				for _, r := range req.Thread.References {
					if r = stripAngle(r); r != "" {
						refs = append(refs, r)
					}
				}
			}
			refs = append(refs, mid)
			e.References = dedupRefs(refs)
		}
	}
	notice.Channel = DeliverEmail
	notice.Email = e
	return notice, "", nil
}

func enabled(m map[string]bool, k string) bool {
	on, ok := m[k]
	return !ok || on
}

// data builds the template variables of an item.
func (n *Notifier) data(it *triage.Item, kind string) Data {
	req, t := &it.Request, &it.Triage
	d := Data{
		RequestID: req.ID, Kind: kind, Name: strings.TrimSpace(req.Requester.Name), Subject: req.Subject,
		Text: excerpt(req.Text, 300), Questions: t.Questions, Concept: t.Concept, Channel: req.Channel,
		Unit: req.Requester.Unit, ReceivedAt: req.ReceivedAt.In(mexico).Format("02/01/2006 15:04 h"),
	}
	if req.Memo != nil && d.Subject == "" {
		d.Subject = req.Memo.Subject
	}
	if t.Orientation != nil {
		d.Office, d.Orientation = t.Orientation.Office, t.Orientation.Message
	}
	if t.Service != nil {
		d.Service = t.Service.Name
	}
	if kind == KindInformativo && d.Concept == "" {
		d.Concept = triage.ConceptInformativo
	}
	return d
}

// reserve makes sure at most one notice per request and kind is planned (a rerouted item triaged
// again gets none), and takes one from the sender's daily allowance. A redelivery of the item that
// planned the notice (same stream sequence) passes again, so a crash before publishing loses nothing.
func (n *Notifier) reserve(ctx context.Context, nt *Notice, seq uint64) (string, error) {
	key := "plan." + nt.RequestID + "." + nt.Kind
	mine := strconv.FormatUint(seq, 10)
	e, err := n.kv.Get(ctx, key)
	switch {
	case err == nil:
		if string(e.Value()) == mine {
			return "", nil
		}
		return ReasonAlreadyPlanned, nil
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case errors.Is(err, jetstream.ErrInvalidKey):
		return "", fmt.Errorf("%w: request id %q is not a valid key", retry.ErrPermanent, nt.RequestID)
	default:
		return "", fmt.Errorf("read %s: %w", key, err)
	}
	ok, err := n.takeDaily(ctx, recipientKey(nt))
	if err != nil {
		return "", err
	}
	if !ok {
		return ReasonRateLimited, nil
	}
	if _, err := n.kv.Create(ctx, key, []byte(mine)); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			// Another replica planned it meanwhile (a reroute racing its original).
			return ReasonAlreadyPlanned, nil
		}
		return "", fmt.Errorf("create %s: %w", key, err)
	}
	return "", nil
}

// recipientKey is what the daily cap counts: the address, or the platform account.
func recipientKey(nt *Notice) string {
	if nt.Email != nil {
		return strings.ToLower(nt.Email.To)
	}
	if nt.Social.RecipientID != "" {
		return nt.Channel + ":" + nt.Social.RecipientID
	}
	return nt.Channel + ":comment:" + nt.Social.CommentID
}

// RateKey is the cau_notify key of the daily counter of an address on the day of t (Mexico City).
func RateKey(address string, t time.Time) string {
	sum := sha256.Sum256([]byte(strings.ToLower(strings.TrimSpace(address))))
	return "rate." + hex.EncodeToString(sum[:])[:32] + "." + t.In(mexico).Format("20060102")
}

// takeDaily increments the recipient's counter for today with compare-and-set; false once the cap
// is reached. The counter is taken before the notice is published, so a crash in between costs the
// requester one of the day's notices, never a notice too many.
func (n *Notifier) takeDaily(ctx context.Context, who string) (bool, error) {
	if n.o.MaxPerSenderPerDay < 0 {
		return true, nil
	}
	key := RateKey(who, n.o.Now())
	for attempt := 0; attempt < 50; attempt++ {
		e, err := n.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			if _, err := n.kv.Create(ctx, key, []byte("1")); err == nil {
				return true, nil
			} else if !isConflict(err) {
				return false, fmt.Errorf("daily counter: %w", err)
			}
			continue
		}
		if err != nil {
			return false, fmt.Errorf("daily counter: %w", err)
		}
		count, _ := strconv.Atoi(string(e.Value()))
		if count >= n.o.MaxPerSenderPerDay {
			return false, nil
		}
		if _, err := n.kv.Update(ctx, key, []byte(strconv.Itoa(count+1)), e.Revision()); err == nil {
			return true, nil
		} else if !isConflict(err) {
			return false, fmt.Errorf("daily counter: %w", err)
		}
	}
	return false, errors.New("daily counter: too many concurrent updates")
}

func isConflict(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) ||
		(errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence)
}

// publish puts the notice into the outbox and waits for JetStream's ack.
func (n *Notifier) publish(ctx context.Context, nt *Notice) error {
	body, err := json.Marshal(nt)
	if err != nil {
		return fmt.Errorf("%w: encode notice: %v", retry.ErrPermanent, err)
	}
	out := nats.NewMsg(SubjectNotifyPrefix + nt.Channel)
	out.Data = body
	id := "notify:" + nt.RequestID + ":" + nt.Kind
	natsjs.SetCloudEvent(out.Header, id, "caud://notify", TypeNotice, nt.PlannedAt)
	out.Header.Set(jetstream.MsgIDHeader, id)
	if _, err := n.o.JS.PublishMsg(ctx, out); err != nil {
		return fmt.Errorf("publish notice: %w", err)
	}
	return nil
}

// backoff is the delay before the n-th redelivery: RetryMin doubled per delivery, up to RetryMax.
func (n *Notifier) backoff(delivered uint64) time.Duration {
	d := n.o.RetryMin
	for i := uint64(1); i < delivered && d < n.o.RetryMax; i++ {
		d *= 2
	}
	return min(d, n.o.RetryMax)
}

// deadLetter moves a message to cau.dlq.notify with the reason and terminates it; when even that
// fails the message is handed back for another try.
func (n *Notifier) deadLetter(ctx context.Context, m jetstream.Msg, cause error) {
	if err := deadletter.Publish(ctx, n.o.JS, deadletter.FromMsg(deadletter.StageNotify, m, cause)); err != nil {
		n.log.Error("dead-letter failed, leaving message for redelivery", "err", err, "cause", cause)
		_ = m.NakWithDelay(n.o.RetryMin)
		return
	}
	n.log.Error("notify dead-lettered a message", "subject", m.Subject(), "reason", cause)
	_ = m.Term()
}

// MessageID is the deterministic Message-ID (without angle brackets) of a notice, so a resend after
// a crash carries the same id and a reply to it can be linked to the request.
func MessageID(requestID, kind, from string) string {
	domain := "caud.invalid"
	if i := strings.LastIndexByte(from, '@'); i >= 0 && i < len(from)-1 {
		domain = strings.ToLower(from[i+1:])
	}
	return "caud." + requestID + "." + kind + "@" + domain
}

// ReplySubject is "Re: " and the subject without its reply and forward prefixes (Re:, RE:, RV:,
// Fwd:, FW:, Antw:, ...), so replying never piles them up.
func ReplySubject(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	for {
		i := strings.IndexByte(s, ':')
		if i <= 0 || i > 6 {
			break
		}
		switch strings.ToLower(strings.TrimSpace(s[:i])) {
		case "re", "fw", "fwd", "rv", "tr", "aw", "wg", "antw", "res", "enc", "r":
			s = strings.TrimSpace(s[i+1:])
			continue
		}
		break
	}
	if s == "" {
		return "Re:"
	}
	return "Re: " + s
}

func stripAngle(s string) string {
	s = strings.TrimSpace(s)
	return strings.TrimSuffix(strings.TrimPrefix(s, "<"), ">")
}

// dedupRefs drops repeated ids and keeps the first and the last 19, as RFC 5322 suggests trimming
// long References.
func dedupRefs(refs []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range refs {
		if !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	if len(out) > 20 {
		out = append(out[:1], out[len(out)-19:]...)
	}
	return out
}

func parseAddress(s string) (*mail.Address, error) {
	a, err := mail.ParseAddress(strings.TrimSpace(s))
	if err != nil {
		return nil, err
	}
	a.Address = strings.ToLower(a.Address)
	return a, nil
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if strings.TrimSpace(s) != "" {
			return strings.TrimSpace(s)
		}
	}
	return ""
}

// excerpt collapses whitespace and cuts s to at most max characters, on a word when it can.
func excerpt(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	r := []rune(s)[:max]
	cut := string(r)
	if i := strings.LastIndexByte(cut, ' '); i > max/2 {
		cut = cut[:i]
	}
	return cut + "…"
}

// truncate cuts s to at most max characters (runes), ending with an ellipsis when it cut.
func truncate(s string, max int) string {
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	return string([]rune(s)[:max-1]) + "…"
}
