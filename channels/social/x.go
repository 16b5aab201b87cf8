package social

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/httpjson"
)

// XSignatureHeader carries sha256=<base64 HMAC-SHA256(consumer secret, raw body)>.
const XSignatureHeader = "X-Twitter-Webhooks-Signature"

// XOptions configures the X webhook. Zero values are documented defaults.
type XOptions struct {
	// ConsumerSecrets are the X apps' consumer secrets (API secret keys); a delivery signed with
	// any of them is authentic. The CRC check is answered with the first, or with the one chosen
	// by an "app" query parameter (0-based index) when several apps register the same URL as
	// /webhooks/x?app=1. Empty strings are skipped. At least one is required.
	ConsumerSecrets []string
	// MaxBodyBytes bounds a delivery; 0 means 4 MiB. Larger bodies get 413.
	MaxBodyBytes int64
	// Sink publishes the requests (required).
	Sink channels.Sink
	// Seen records every published platform id beyond the JetStream duplicate window: KV
	// cau_requests, keys social.x.<hash> (required).
	Seen jetstream.KeyValue
	// PublishTimeout bounds the whole delivery before answering 503; 0 means 5 s (X waits 10 s).
	PublishTimeout time.Duration
	Logger         *slog.Logger
	// Registerer receives the caud_social_* metrics; nil registers nothing. It may be shared with
	// Facebook.
	Registerer prometheus.Registerer
	// Now is the clock for events without a timestamp; nil means time.Now.
	Now func() time.Time
}

// X is the handler of /webhooks/x. Safe for concurrent use.
type X struct {
	*common
	secrets []string
}

// NewX returns the X webhook handler.
func NewX(o XOptions) (*X, error) {
	secrets := nonEmpty(o.ConsumerSecrets)
	if len(secrets) == 0 {
		return nil, fmt.Errorf("social x: %w", ErrNoSecret)
	}
	c, err := newCommon(PlatformX, o.Sink, o.Seen, o.MaxBodyBytes, o.PublishTimeout, o.Logger, o.Registerer, o.Now)
	if err != nil {
		return nil, err
	}
	return &X{common: c, secrets: secrets}, nil
}

// ServeHTTP answers GET (the CRC check: 200 {"response_token":"sha256=…"}, 400 without crc_token,
// 403 for an unknown app) and POST (a signed delivery: 200 once every request is durably
// published; 401 unsigned or badly signed, 413 too large, 400 malformed, 503 or 500 when not
// published).
func (x *X) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	x.serve(w, r, x.crc, x.post)
}

func (x *X) crc(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	token := q.Get("crc_token")
	if token == "" || len(token) > 1024 {
		x.m.deliveries.WithLabelValues(x.platform, "verify_failed").Inc()
		httpjson.Fail(w, http.StatusBadRequest, "missing crc_token")
		return
	}
	secret := x.secrets[0]
	if app := q.Get("app"); app != "" {
		i, err := strconv.Atoi(app)
		if err != nil || i < 0 || i >= len(x.secrets) {
			x.m.deliveries.WithLabelValues(x.platform, "verify_failed").Inc()
			httpjson.Fail(w, http.StatusForbidden, "unknown app")
			return
		}
		secret = x.secrets[i]
	}
	x.m.deliveries.WithLabelValues(x.platform, "verify_ok").Inc()
	httpjson.Write(w, http.StatusOK, map[string]string{"response_token": XCRCResponse(secret, token)})
}

func (x *X) post(w http.ResponseWriter, r *http.Request) {
	body, ok := x.readSigned(w, r, XSignatureHeader, func(sig string, body []byte) bool {
		return VerifyXSignature(sig, body, x.secrets)
	})
	if !ok {
		return
	}
	events, ignored, err := ParseX(body)
	if err != nil {
		x.malformed(w, err)
		return
	}
	x.countIgnored(ignored)
	x.deliver(w, r, body, events, func(e Event) string { return "x://user/" + e.Social.ForUserID }, func(w http.ResponseWriter) {
		w.WriteHeader(http.StatusOK)
	})
}

// XCRCResponse is the response_token of the CRC check: "sha256=" + base64(HMAC-SHA256(secret,
// token)).
func XCRCResponse(secret, token string) string {
	return "sha256=" + base64.StdEncoding.EncodeToString(mac(secret, []byte(token)))
}

func mac(secret string, msg []byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(msg)
	return m.Sum(nil)
}

// VerifyXSignature reports whether header is "sha256=<base64 HMAC-SHA256(secret, body)>" for one
// of secrets, compared in constant time. Empty secrets never verify anything.
func VerifyXSignature(header string, body []byte, secrets []string) bool {
	b64, ok := strings.CutPrefix(strings.TrimSpace(header), "sha256=")
	if !ok || len(b64) != base64.StdEncoding.EncodedLen(sha256.Size) {
		return false
	}
	want, err := base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil || len(want) != sha256.Size {
		return false
	}
	return anyMAC(want, body, secrets)
}

type xUser struct {
	ID         flexID `json:"id_str"`
	IDAlt      flexID `json:"id"`
	Name       string `json:"name"`
	ScreenName string `json:"screen_name"`
}

func (u xUser) id() string {
	if u.ID != "" {
		return string(u.ID)
	}
	return string(u.IDAlt)
}

type xDM struct {
	Type             string   `json:"type"`
	ID               flexID   `json:"id"`
	CreatedTimestamp flexTime `json:"created_timestamp"`
	MessageCreate    struct {
		Target struct {
			RecipientID flexID `json:"recipient_id"`
		} `json:"target"`
		SenderID    flexID `json:"sender_id"`
		MessageData struct {
			Text       string `json:"text"`
			Attachment *struct {
				Type  string `json:"type"`
				Media struct {
					URL string `json:"media_url_https"`
				} `json:"media"`
			} `json:"attachment"`
		} `json:"message_data"`
	} `json:"message_create"`
}

type xTweet struct {
	IDStr         flexID   `json:"id_str"`
	CreatedAt     flexTime `json:"created_at"`
	TimestampMS   flexTime `json:"timestamp_ms"`
	Text          string   `json:"text"`
	FullText      string   `json:"full_text"`
	Truncated     bool     `json:"truncated"`
	ExtendedTweet *struct {
		FullText string `json:"full_text"`
	} `json:"extended_tweet"`
	User            xUser           `json:"user"`
	RetweetedStatus json.RawMessage `json:"retweeted_status"`
	Entities        struct {
		UserMentions []struct {
			ScreenName string `json:"screen_name"`
			ID         flexID `json:"id_str"`
		} `json:"user_mentions"`
	} `json:"entities"`
}

// xIgnoredKinds are Account Activity event arrays that never become a request.
var xIgnoredKinds = map[string]bool{
	"favorite_events": true, "follow_events": true, "unfollow_events": true, "block_events": true,
	"unblock_events": true, "mute_events": true, "unmute_events": true, "user_event": true,
	"direct_message_indicate_typing_events": true, "direct_message_mark_read_events": true,
	"tweet_delete_events": true,
}

// ParseX reads an X Account Activity delivery. Each direct message event not sent by for_user_id
// and each tweet_create_events post that is neither the account's own post nor a retweet is an
// Event, with the author's name and @handle from the users map (or the post's user), the text
// HTML-unescaped, and, for a post, the leading @mentions of the account removed. Other event kinds
// are counted in Ignored by kind ("unknown" for kinds this parser does not know). The error wraps
// ErrMalformed.
func ParseX(body []byte) ([]Event, Ignored, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if top == nil {
		return nil, nil, fmt.Errorf("%w: not an object", ErrMalformed)
	}
	var forUser flexID
	if raw, ok := top["for_user_id"]; ok {
		if err := json.Unmarshal(raw, &forUser); err != nil {
			return nil, nil, fmt.Errorf("%w: for_user_id: %v", ErrMalformed, err)
		}
	}
	if forUser == "" {
		return nil, nil, fmt.Errorf("%w: no for_user_id", ErrMalformed)
	}
	var users map[string]xUser
	if raw, ok := top["users"]; ok {
		if err := json.Unmarshal(raw, &users); err != nil {
			return nil, nil, fmt.Errorf("%w: users: %v", ErrMalformed, err)
		}
	}
	ig := Ignored{}
	var events []Event
	for _, key := range slices.Sorted(maps.Keys(top)) { // a stable order of events
		raw := top[key]
		switch key {
		case "for_user_id", "users", "user_has_blocked", "apps", "source":
		case "direct_message_events":
			var dms []xDM
			if err := json.Unmarshal(raw, &dms); err != nil {
				return nil, nil, fmt.Errorf("%w: direct_message_events: %v", ErrMalformed, err)
			}
			for _, dm := range dms {
				e, reason := xDirectMessage(string(forUser), users, dm)
				if reason != "" {
					ig.add(reason, 1)
					continue
				}
				events = append(events, e)
			}
		case "tweet_create_events":
			var tws []xTweet
			if err := json.Unmarshal(raw, &tws); err != nil {
				return nil, nil, fmt.Errorf("%w: tweet_create_events: %v", ErrMalformed, err)
			}
			for _, tw := range tws {
				e, reason := xMention(string(forUser), users, tw)
				if reason != "" {
					ig.add(reason, 1)
					continue
				}
				events = append(events, e)
			}
		default:
			kind := "unknown"
			if xIgnoredKinds[key] {
				kind = key
			}
			var arr []json.RawMessage
			if json.Unmarshal(raw, &arr) == nil {
				ig.add(kind, len(arr))
			} else {
				ig.add(kind, 1)
			}
		}
	}
	return events, ig, nil
}

func xDirectMessage(forUser string, users map[string]xUser, dm xDM) (Event, string) {
	mc := dm.MessageCreate
	switch {
	case dm.Type != "message_create":
		return Event{}, "dm_other"
	case dm.ID == "" || mc.SenderID == "":
		return Event{}, "invalid"
	case string(mc.SenderID) == forUser:
		return Event{}, "own_dm"
	}
	text := html.UnescapeString(mc.MessageData.Text)
	if strings.TrimSpace(text) == "" && mc.MessageData.Attachment != nil {
		a := mc.MessageData.Attachment
		text = strings.TrimSpace("[" + a.Type + "] " + a.Media.URL)
	}
	text = cleanText(text)
	if text == "" {
		return Event{}, "empty"
	}
	sender := string(mc.SenderID)
	recipient := string(mc.Target.RecipientID)
	e := Event{
		Social: channels.Social{
			Platform: PlatformX, Kind: KindDM, SenderID: sender, RecipientID: recipient,
			MessageID: string(dm.ID), ConversationID: dmConversation(sender, recipient), ForUserID: forUser,
		},
		ID:   string(dm.ID),
		Time: dm.CreatedTimestamp.Time,
		Text: text,
	}
	if u, ok := users[sender]; ok {
		e.Name = u.Name
		if u.ScreenName != "" {
			e.Handle = "@" + u.ScreenName
		}
	}
	return e, ""
}

// dmConversation is X's id of the one-to-one conversation: the two user ids, lower first.
func dmConversation(a, b string) string {
	if a == "" || b == "" {
		return ""
	}
	if len(a) > len(b) || (len(a) == len(b) && a > b) {
		a, b = b, a
	}
	return a + "-" + b
}

func xMention(forUser string, users map[string]xUser, tw xTweet) (Event, string) {
	author := tw.User.id()
	switch {
	case tw.IDStr == "" || author == "":
		return Event{}, "invalid"
	case author == forUser:
		return Event{}, "own_tweet"
	case tw.RetweetedStatus != nil && string(tw.RetweetedStatus) != "null":
		return Event{}, "retweet"
	}
	text := tw.Text
	switch {
	case tw.ExtendedTweet != nil && tw.ExtendedTweet.FullText != "":
		text = tw.ExtendedTweet.FullText
	case tw.FullText != "":
		text = tw.FullText
	}
	ours := map[string]bool{}
	for _, m := range tw.Entities.UserMentions {
		if string(m.ID) == forUser && m.ScreenName != "" {
			ours[strings.ToLower(m.ScreenName)] = true
		}
	}
	if u, ok := users[forUser]; ok && u.ScreenName != "" {
		ours[strings.ToLower(u.ScreenName)] = true
	}
	text = cleanText(stripLeadingMentions(html.UnescapeString(text), ours))
	if text == "" {
		return Event{}, "empty"
	}
	t := tw.CreatedAt.Time
	if t.IsZero() {
		t = tw.TimestampMS.Time
	}
	e := Event{
		Social: channels.Social{
			Platform: PlatformX, Kind: KindMention, SenderID: author, TweetID: string(tw.IDStr),
			ForUserID: forUser,
		},
		ID:   string(tw.IDStr),
		Time: t,
		Name: tw.User.Name,
		Text: text,
	}
	if tw.User.ScreenName != "" {
		e.Handle = "@" + tw.User.ScreenName
	} else if u, ok := users[author]; ok && u.ScreenName != "" {
		e.Handle = "@" + u.ScreenName
	}
	if e.Name == "" {
		e.Name = users[author].Name
	}
	return e, ""
}

// stripLeadingMentions removes the account's own @mentions from the run of @mentions that opens a
// post ("@CAU_IPN @CGSI_IPN no hay red" → "@CGSI_IPN no hay red"); other mentions and the rest of
// the text stay. A post that is nothing but our mentions is kept whole.
func stripLeadingMentions(text string, ours map[string]bool) string {
	if len(ours) == 0 {
		return text
	}
	rest := strings.TrimLeft(text, " \t\n")
	var kept []string
	for strings.HasPrefix(rest, "@") {
		end := 1
		for end < len(rest) && isHandleByte(rest[end]) {
			end++
		}
		if end == 1 || (end < len(rest) && !isSpace(rest[end])) {
			break // not a clean "@handle " token
		}
		if !ours[strings.ToLower(rest[1:end])] {
			kept = append(kept, rest[:end])
		}
		rest = strings.TrimLeft(rest[end:], " \t\n")
	}
	if strings.TrimSpace(rest) == "" && len(kept) == 0 {
		return text
	}
	if len(kept) > 0 {
		return strings.Join(kept, " ") + " " + rest
	}
	return rest
}

func isHandleByte(b byte) bool {
	return b == '_' || ('0' <= b && b <= '9') || ('a' <= b && b <= 'z') || ('A' <= b && b <= 'Z')
}

func isSpace(b byte) bool { return b == ' ' || b == '\t' || b == '\n' }
