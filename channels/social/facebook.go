package social

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"

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
	// Webhook holds the settings both webhooks share (sink, seen store, limits); Meta waits 20 s
	// for an answer.
	Webhook WebhookOptions
	// Profiles, when set (a Page access token is configured), names the sender of every Messenger
	// message before it is published; nil publishes messages with the page-scoped id only.
	Profiles *Profiles
}

// Facebook is the handler of /webhooks/facebook. Safe for concurrent use.
type Facebook struct {
	*common
	secrets  []string
	token    string
	profiles *Profiles
}

// NewFacebook returns the Facebook webhook handler.
func NewFacebook(o FacebookOptions) (*Facebook, error) {
	secrets := nonEmpty(o.AppSecrets)
	if len(secrets) == 0 {
		return nil, fmt.Errorf("social facebook: %w", ErrNoSecret)
	}
	c, err := newCommon(PlatformFacebook, o.Webhook)
	if err != nil {
		return nil, err
	}
	return &Facebook{common: c, secrets: secrets, token: o.VerifyToken, profiles: o.Profiles}, nil
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
	body, events, ok := f.readEvents(w, r, FacebookSignatureHeader, func(sig string, body []byte) bool {
		return VerifyFacebookSignature(sig, body, f.secrets)
	}, ParseFacebook)
	if !ok {
		return
	}
	f.name(r.Context(), events)
	f.deliver(w, r, body, events, func(e Event) string { return "facebook://page/" + e.Social.PageID }, func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("EVENT_RECEIVED"))
	})
}

// name fills in the names of Messenger senders from the Graph API, one lookup per sender,
// concurrently; a sender the lookup cannot name keeps the page-scoped id only.
func (f *Facebook) name(ctx context.Context, events []Event) {
	if f.profiles == nil {
		return
	}
	names := map[string]string{}
	for _, e := range events {
		if e.Social.Kind == KindMessage && e.Name == "" {
			names[e.Social.SenderID] = ""
		}
	}
	if len(names) == 0 {
		return
	}
	ids := slices.Collect(maps.Keys(names))
	got := make([]string, len(ids))
	_ = each(len(ids), func(i int) error {
		got[i] = f.profiles.Name(ctx, ids[i])
		return nil
	})
	for i, id := range ids {
		names[id] = got[i]
	}
	for i := range events {
		if n := names[events[i].Social.SenderID]; n != "" && events[i].Social.Kind == KindMessage && events[i].Name == "" {
			events[i].Name, events[i].Handle = n, n
		}
	}
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
	Object flexString        `json:"object"`
	Entry  flexList[fbEntry] `json:"entry"`
}

type fbEntry struct {
	ID        flexID                    `json:"id"`
	Time      flexTime                  `json:"time"`
	Messaging flexList[json.RawMessage] `json:"messaging"`
	Standby   flexList[json.RawMessage] `json:"standby"`
	Changes   flexList[json.RawMessage] `json:"changes"`
}

type fbMessaging struct {
	Sender    fbRef      `json:"sender"`
	Recipient fbRef      `json:"recipient"`
	Timestamp flexTime   `json:"timestamp"`
	Message   *fbMessage `json:"message"`
}

type fbMessage struct {
	Mid         flexID                 `json:"mid"`
	Text        flexString             `json:"text"`
	IsEcho      flexBool               `json:"is_echo"`
	Attachments flexList[fbAttachment] `json:"attachments"`
}

type fbAttachment struct {
	Type    flexString `json:"type"`
	Payload struct {
		URL         flexString `json:"url"`
		Title       flexString `json:"title"`
		StickerID   flexID     `json:"sticker_id"`
		Coordinates *struct {
			Lat  flexString `json:"lat"`
			Long flexString `json:"long"`
		} `json:"coordinates"`
	} `json:"payload"`
	Title flexString `json:"title"`
	URL   flexString `json:"url"`
}

type fbRef struct {
	ID   flexID     `json:"id"`
	Name flexString `json:"name"`
}

type fbChange struct {
	Field flexString      `json:"field"`
	Value json.RawMessage `json:"value"`
}

type fbFeedValue struct {
	Item        flexString `json:"item"`
	Verb        flexString `json:"verb"`
	CommentID   flexID     `json:"comment_id"`
	PostID      flexID     `json:"post_id"`
	ParentID    flexID     `json:"parent_id"`
	From        fbRef      `json:"from"`
	Message     flexString `json:"message"`
	Photo       flexString `json:"photo"`
	Video       flexString `json:"video"`
	CreatedTime flexTime   `json:"created_time"`
}

// fbEventKinds are the Messenger webhook events (the key beside sender/recipient/timestamp) that
// never carry a message a person wrote. Any other key is counted as "unknown".
var fbEventKinds = []string{
	"delivery", "read", "message_edit", "reaction", "postback", "optin", "referral",
	"account_linking", "payment", "checkout_update", "pre_checkout", "policy_enforcement",
	"pass_thread_control", "take_thread_control", "request_thread_control", "app_roles",
	"game_play", "message_request", "messaging_feedback", "messaging_handovers",
	"response_feedback", "standby",
}

// likeStickers are the sticker ids of Messenger's like button (small, medium, large thumbs-up).
var likeStickers = map[flexID]bool{"369239263222822": true, "369239343222814": true, "369239383222810": true}

// ParseFacebook reads a Meta webhook delivery for the page object. Each Messenger message received
// (entry[].messaging[] with a message that is not an echo) and each comment added by someone other
// than the Page (entry[].changes[] with field feed, item comment, verb add) is an Event, once per
// platform id even when the delivery repeats it. A message without text is described by its
// attachments ("[image] https://…", "[location] geo:19.5,-99.1", the like sticker as 👍), whose
// URLs also go to Social.Media. Echoes, delivery and read receipts, edits, reactions, postbacks,
// opt-ins, referrals and the other Messenger events, standby, other feed changes and the Page's
// own comments are counted in Ignored by kind ("unknown" for a kind this parser does not know,
// "invalid" for an element it cannot read). Fields in shapes other than documented (numbers for
// strings, one object for a list) are read as they come; a field that cannot be read counts as
// absent. The error wraps ErrMalformed and is returned only when the body is not a JSON object
// with an object field.
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
	ig.add("invalid", d.Entry.Skipped)
	set := eventSet{ig: ig, ids: map[string]bool{}}
	for _, en := range d.Entry.Items {
		page := string(en.ID)
		ig.add("standby", len(en.Standby.Items))
		ig.add("invalid", en.Messaging.Skipped+en.Changes.Skipped+en.Standby.Skipped)
		for _, raw := range en.Messaging.Items {
			set.keep(fbMessaging1(page, en, raw))
		}
		for _, raw := range en.Changes.Items {
			set.keep(fbChange1(page, en, raw))
		}
	}
	return set.events, ig, nil
}

// fbMessaging1 reads one element of entry[].messaging[]: an Event, or the reason it is none.
func fbMessaging1(page string, en fbEntry, raw json.RawMessage) (Event, string) {
	var keys map[string]json.RawMessage
	var m fbMessaging
	if json.Unmarshal(raw, &keys) != nil || json.Unmarshal(raw, &m) != nil {
		return Event{}, "invalid"
	}
	if _, ok := keys["message"]; ok {
		if m.Message == nil {
			return Event{}, "invalid"
		}
		if m.Message.IsEcho {
			return Event{}, "echo"
		}
		return fbMessageEvent(page, en, m)
	}
	for _, k := range fbEventKinds {
		if _, ok := keys[k]; ok {
			return Event{}, k
		}
	}
	return Event{}, "unknown"
}

func fbChange1(page string, en fbEntry, raw json.RawMessage) (Event, string) {
	var ch fbChange
	if json.Unmarshal(raw, &ch) != nil {
		return Event{}, "invalid"
	}
	if ch.Field != "feed" {
		return Event{}, "change_" + bounded(string(ch.Field), "leadgen", "mention", "ratings", "conversations", "messages")
	}
	var v fbFeedValue
	if err := json.Unmarshal(ch.Value, &v); err != nil {
		return Event{}, "invalid"
	}
	return fbComment(page, en, v)
}

// describe is the text of a message without text, made of its attachments, and their URLs.
func (msg *fbMessage) describe() (text string, media []string) {
	var parts []string
	for _, a := range msg.Attachments.Items {
		p := a.Payload
		url := strings.TrimSpace(string(p.URL))
		if url == "" {
			url = strings.TrimSpace(string(a.URL))
		}
		switch {
		case likeStickers[p.StickerID]:
			parts = append(parts, "👍")
			continue
		case p.StickerID != "":
			parts = append(parts, "[sticker]")
			continue
		case p.Coordinates != nil && p.Coordinates.Lat != "" && p.Coordinates.Long != "":
			url = "geo:" + string(p.Coordinates.Lat) + "," + string(p.Coordinates.Long)
		}
		if url != "" {
			media = append(media, url)
		}
		title := strings.TrimSpace(string(p.Title))
		if title == "" {
			title = strings.TrimSpace(string(a.Title))
		}
		typ := strings.TrimSpace(string(a.Type))
		if typ == "" {
			typ = "adjunto"
		}
		parts = append(parts, strings.Join(nonEmpty([]string{"[" + typ + "]", title, url}), " "))
	}
	return strings.Join(parts, "\n"), media
}

func fbMessageEvent(page string, en fbEntry, m fbMessaging) (Event, string) {
	msg := m.Message
	if msg.Mid == "" || m.Sender.ID == "" {
		return Event{}, "invalid"
	}
	if page != "" && string(m.Sender.ID) == page {
		// Sent by the Page without the echo flag (other apps' messages): not a request.
		return Event{}, "echo"
	}
	described, media := msg.describe()
	text := string(msg.Text)
	if strings.TrimSpace(text) == "" {
		text = described
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
			SenderID: string(m.Sender.ID), RecipientID: string(m.Recipient.ID), MessageID: string(msg.Mid),
			Media: media,
		},
		ID:     string(msg.Mid),
		Time:   t,
		Name:   string(m.Sender.Name), // absent in Messenger payloads: the name needs the Graph API
		Handle: string(m.Sender.Name),
		Text:   text,
	}, ""
}

func fbComment(page string, en fbEntry, v fbFeedValue) (Event, string) {
	switch {
	case v.Item != "comment":
		return Event{}, "feed_other"
	case v.Verb != "add":
		return Event{}, "comment_" + bounded(string(v.Verb), "edited", "remove", "hide", "unhide")
	case v.CommentID == "":
		return Event{}, "invalid"
	case page != "" && string(v.From.ID) == page:
		return Event{}, "own_comment"
	}
	text := string(v.Message)
	if strings.TrimSpace(text) == "" {
		switch {
		case v.Photo != "":
			text = "[photo] " + string(v.Photo)
		case v.Video != "":
			text = "[video] " + string(v.Video)
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
		Name:   string(v.From.Name),
		Handle: string(v.From.Name),
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
