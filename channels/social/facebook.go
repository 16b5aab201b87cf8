package social

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ipn-cgsi/caud/channels"
)

// FacebookSignatureHeader carries sha256=<hex HMAC-SHA256(app secret, raw body)>.
const FacebookSignatureHeader = "X-Hub-Signature-256"

// FacebookOptions configures the Facebook webhook. Zero values are documented defaults.
type FacebookOptions struct {
	// AppSecrets are the Meta app secrets; a delivery signed with any of them is authentic (several
	// apps, or a secret being rotated). Empty strings are skipped. At least one is required.
	AppSecrets []string
	// VerifyToken is the token typed in the app's webhook settings, checked by the GET handshake;
	// "" refuses every handshake (deliveries are still accepted).
	VerifyToken string
	// MaxBodyBytes bounds a delivery; 0 means 4 MiB. Larger bodies get 413.
	MaxBodyBytes int64
	// Sink publishes the requests (required).
	Sink channels.Sink
	// Seen records every published platform id beyond the JetStream duplicate window: KV
	// cau_requests, keys social.facebook.<hash> (required).
	Seen jetstream.KeyValue
	// PublishTimeout bounds the whole delivery before answering 503; 0 means 5 s (Meta waits 20 s).
	PublishTimeout time.Duration
	Logger         *slog.Logger
	// Registerer receives the caud_social_* metrics; nil registers nothing. It may be shared with X.
	Registerer prometheus.Registerer
	// Now is the clock for events without a timestamp; nil means time.Now.
	Now func() time.Time
}

// Facebook is the handler of /webhooks/facebook. Safe for concurrent use.
type Facebook struct {
	*common
	secrets []string
	token   string
}

// NewFacebook returns the Facebook webhook handler.
func NewFacebook(o FacebookOptions) (*Facebook, error) {
	secrets := nonEmpty(o.AppSecrets)
	if len(secrets) == 0 {
		return nil, fmt.Errorf("social facebook: %w", ErrNoSecret)
	}
	c, err := newCommon(PlatformFacebook, o.Sink, o.Seen, o.MaxBodyBytes, o.PublishTimeout, o.Logger, o.Registerer, o.Now)
	if err != nil {
		return nil, err
	}
	return &Facebook{common: c, secrets: secrets, token: o.VerifyToken}, nil
}

func nonEmpty(ss []string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// ServeHTTP answers GET (the subscription handshake: 200 text/plain hub.challenge, or 403) and POST
// (a signed delivery: 200 "EVENT_RECEIVED" once every request is durably published; 401 unsigned
// or badly signed, 413 too large, 400 malformed, 503 or 500 when not published).
func (f *Facebook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.serve(w, r, f.verify, f.post)
}

func (f *Facebook) verify(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	challenge := q.Get("hub.challenge")
	if f.token == "" || q.Get("hub.mode") != "subscribe" || challenge == "" || len(challenge) > 1024 ||
		subtle.ConstantTimeCompare([]byte(q.Get("hub.verify_token")), []byte(f.token)) != 1 {
		f.m.deliveries.WithLabelValues(f.platform, "verify_failed").Inc()
		f.log.Warn("webhook verification refused", "remote", r.RemoteAddr, "mode", q.Get("hub.mode"))
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	f.m.deliveries.WithLabelValues(f.platform, "verify_ok").Inc()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write([]byte(challenge))
}

func (f *Facebook) post(w http.ResponseWriter, r *http.Request) {
	body, ok := f.readSigned(w, r, FacebookSignatureHeader, func(sig string, body []byte) bool {
		return VerifyFacebookSignature(sig, body, f.secrets)
	})
	if !ok {
		return
	}
	events, ignored, err := ParseFacebook(body)
	if err != nil {
		f.malformed(w, err)
		return
	}
	f.countIgnored(ignored)
	f.deliver(w, r, body, events, func(e Event) string { return "facebook://page/" + e.Social.PageID }, func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("EVENT_RECEIVED"))
	})
}

// VerifyFacebookSignature reports whether header is "sha256=<hex HMAC-SHA256(secret, body)>" for
// one of secrets, compared in constant time. Empty secrets never verify anything.
func VerifyFacebookSignature(header string, body []byte, secrets []string) bool {
	hexSig, ok := strings.CutPrefix(strings.TrimSpace(header), "sha256=")
	if !ok || len(hexSig) != 2*sha256.Size {
		return false
	}
	want, err := hex.DecodeString(hexSig)
	if err != nil {
		return false
	}
	return anyMAC(want, body, secrets)
}

// anyMAC reports whether want is the HMAC-SHA256 of msg under one of secrets. Every secret is
// tried, so the time taken does not tell which one matched.
func anyMAC(want, msg []byte, secrets []string) bool {
	match := 0
	for _, s := range secrets {
		if s == "" {
			continue
		}
		m := hmac.New(sha256.New, []byte(s))
		m.Write(msg)
		match |= subtle.ConstantTimeCompare(m.Sum(nil), want)
	}
	return match == 1
}

// fbDelivery is the Meta webhook body for the page object.
type fbDelivery struct {
	Object string    `json:"object"`
	Entry  []fbEntry `json:"entry"`
}

type fbEntry struct {
	ID        flexID            `json:"id"`
	Time      flexTime          `json:"time"`
	Messaging []fbMessaging     `json:"messaging"`
	Standby   []json.RawMessage `json:"standby"`
	Changes   []fbChange        `json:"changes"`
}

type fbMessaging struct {
	Sender    fbRef    `json:"sender"`
	Recipient fbRef    `json:"recipient"`
	Timestamp flexTime `json:"timestamp"`
	Message   *struct {
		Mid         string `json:"mid"`
		Text        string `json:"text"`
		IsEcho      bool   `json:"is_echo"`
		Attachments []struct {
			Type    string `json:"type"`
			Payload struct {
				URL       string `json:"url"`
				StickerID flexID `json:"sticker_id"`
			} `json:"payload"`
		} `json:"attachments"`
	} `json:"message"`
	Delivery    json.RawMessage `json:"delivery"`
	Read        json.RawMessage `json:"read"`
	MessageEdit json.RawMessage `json:"message_edit"`
	Reaction    json.RawMessage `json:"reaction"`
	Postback    json.RawMessage `json:"postback"`
}

type fbRef struct {
	ID   flexID `json:"id"`
	Name string `json:"name"`
}

type fbChange struct {
	Field string          `json:"field"`
	Value json.RawMessage `json:"value"`
}

type fbFeedValue struct {
	Item        string   `json:"item"`
	Verb        string   `json:"verb"`
	CommentID   flexID   `json:"comment_id"`
	PostID      flexID   `json:"post_id"`
	ParentID    flexID   `json:"parent_id"`
	From        fbRef    `json:"from"`
	Message     string   `json:"message"`
	Photo       string   `json:"photo"`
	Video       string   `json:"video"`
	CreatedTime flexTime `json:"created_time"`
}

// ParseFacebook reads a Meta webhook delivery for the page object. Each Messenger message received
// (entry[].messaging[] with a message that is not an echo) and each comment added by someone other
// than the Page (entry[].changes[] with field feed, item comment, verb add) is an Event; echoes,
// delivery and read receipts, edits, reactions, postbacks, standby, other feed changes and the
// Page's own comments are counted in Ignored. The error wraps ErrMalformed.
func ParseFacebook(body []byte) ([]Event, Ignored, error) {
	var d fbDelivery
	if err := json.Unmarshal(body, &d); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if d.Object == "" {
		return nil, nil, fmt.Errorf("%w: no object", ErrMalformed)
	}
	ig := Ignored{}
	if d.Object != "page" {
		ig.add("other_object", 1)
		return nil, ig, nil
	}
	var events []Event
	for _, en := range d.Entry {
		page := string(en.ID)
		ig.add("standby", len(en.Standby))
		for _, m := range en.Messaging {
			switch {
			case m.Message != nil && m.Message.IsEcho:
				ig.add("echo", 1)
			case m.Message != nil:
				e, reason := fbMessage(page, en, m)
				if reason != "" {
					ig.add(reason, 1)
					continue
				}
				events = append(events, e)
			case m.Delivery != nil:
				ig.add("delivery", 1)
			case m.Read != nil:
				ig.add("read", 1)
			case m.MessageEdit != nil:
				ig.add("edit", 1)
			case m.Reaction != nil:
				ig.add("reaction", 1)
			case m.Postback != nil:
				ig.add("postback", 1)
			default:
				ig.add("unknown", 1)
			}
		}
		for _, ch := range en.Changes {
			if ch.Field != "feed" {
				ig.add("unknown", 1)
				continue
			}
			var v fbFeedValue
			if err := json.Unmarshal(ch.Value, &v); err != nil {
				return nil, nil, fmt.Errorf("%w: feed change: %v", ErrMalformed, err)
			}
			e, reason := fbComment(page, en, v)
			if reason != "" {
				ig.add(reason, 1)
				continue
			}
			events = append(events, e)
		}
	}
	return events, ig, nil
}

func fbMessage(page string, en fbEntry, m fbMessaging) (Event, string) {
	msg := m.Message
	if msg.Mid == "" || m.Sender.ID == "" {
		return Event{}, "invalid"
	}
	if page != "" && string(m.Sender.ID) == page {
		// Sent by the Page without the echo flag (other apps' messages): not a request.
		return Event{}, "echo"
	}
	text := msg.Text
	if strings.TrimSpace(text) == "" {
		var parts []string
		for _, a := range msg.Attachments {
			if a.Payload.StickerID != "" {
				continue // a sticker or the like button says nothing to triage
			}
			parts = append(parts, strings.TrimSpace("["+a.Type+"] "+a.Payload.URL))
		}
		text = strings.Join(parts, "\n")
	}
	text = cleanText(text)
	if text == "" {
		return Event{}, "empty"
	}
	t := m.Timestamp.Time
	if t.IsZero() {
		t = en.Time.Time
	}
	if page == "" {
		page = string(m.Recipient.ID)
	}
	return Event{
		Social: channels.Social{
			Platform: PlatformFacebook, Kind: KindMessage, PageID: page,
			SenderID: string(m.Sender.ID), RecipientID: string(m.Recipient.ID), MessageID: msg.Mid,
		},
		ID:     msg.Mid,
		Time:   t,
		Name:   m.Sender.Name, // absent in Messenger payloads: the name needs the Graph API
		Handle: m.Sender.Name,
		Text:   text,
	}, ""
}

func fbComment(page string, en fbEntry, v fbFeedValue) (Event, string) {
	switch {
	case v.Item != "comment":
		return Event{}, "feed_other"
	case v.Verb != "add":
		return Event{}, "comment_" + bounded(v.Verb, "edited", "remove", "hide", "unhide")
	case v.CommentID == "":
		return Event{}, "invalid"
	case page != "" && string(v.From.ID) == page:
		return Event{}, "own_comment"
	}
	text := v.Message
	if strings.TrimSpace(text) == "" {
		switch {
		case v.Photo != "":
			text = "[photo] " + v.Photo
		case v.Video != "":
			text = "[video] " + v.Video
		}
	}
	text = cleanText(text)
	if text == "" {
		return Event{}, "empty"
	}
	t := v.CreatedTime.Time
	if t.IsZero() {
		t = en.Time.Time
	}
	return Event{
		Social: channels.Social{
			Platform: PlatformFacebook, Kind: KindComment, PageID: page,
			SenderID: string(v.From.ID), CommentID: string(v.CommentID), PostID: string(v.PostID),
		},
		ID:     string(v.CommentID),
		Time:   t,
		Name:   v.From.Name,
		Handle: v.From.Name,
		Text:   text,
	}, ""
}

// bounded returns s when it is one of known and "other" otherwise, keeping metric labels bounded.
func bounded(s string, known ...string) string {
	for _, k := range known {
		if s == k {
			return s
		}
	}
	return "other"
}
