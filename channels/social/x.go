package social

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"

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
	// Webhook holds the settings both webhooks share (sink, seen store, limits); X waits 10 s for
	// an answer.
	Webhook WebhookOptions
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
	c, err := newCommon(PlatformX, o.Webhook)
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
	body, events, ok := x.readEvents(w, r, XSignatureHeader, func(sig string, body []byte) bool {
		return VerifyXSignature(sig, body, x.secrets)
	}, ParseX)
	if !ok {
		return
	}
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
	ID         flexID     `json:"id_str"`
	IDAlt      flexID     `json:"id"`
	Name       flexString `json:"name"`
	ScreenName flexString `json:"screen_name"`
}

func (u xUser) id() string {
	if u.ID != "" {
		return string(u.ID)
	}
	return string(u.IDAlt)
}

type xMedia struct {
	URLHTTPS flexString `json:"media_url_https"`
	URL      flexString `json:"media_url"`
	Type     flexString `json:"type"`
}

func (m xMedia) url() string {
	if m.URLHTTPS != "" {
		return strings.TrimSpace(string(m.URLHTTPS))
	}
	return strings.TrimSpace(string(m.URL))
}

type xDM struct {
	Type             flexString `json:"type"`
	ID               flexID     `json:"id"`
	CreatedTimestamp flexTime   `json:"created_timestamp"`
	MessageCreate    struct {
		Target struct {
			RecipientID flexID `json:"recipient_id"`
		} `json:"target"`
		SenderID    flexID `json:"sender_id"`
		MessageData struct {
			Text       flexString `json:"text"`
			Attachment *struct {
				Type flexString `json:"type"`
				// Media is one object in the v1.1 documentation and an array in some deliveries.
				Media flexList[xMedia] `json:"media"`
			} `json:"attachment"`
		} `json:"message_data"`
	} `json:"message_create"`
}

type xTweet struct {
	IDStr         flexID     `json:"id_str"`
	IDAlt         flexID     `json:"id"`
	CreatedAt     flexTime   `json:"created_at"`
	TimestampMS   flexTime   `json:"timestamp_ms"`
	Text          flexString `json:"text"`
	FullText      flexString `json:"full_text"`
	ExtendedTweet *struct {
		FullText flexString `json:"full_text"`
	} `json:"extended_tweet"`
	User            xUser           `json:"user"`
	RetweetedStatus json.RawMessage `json:"retweeted_status"`
	InReplyToUserID flexID          `json:"in_reply_to_user_id_str"`
	InReplyToUser   flexID          `json:"in_reply_to_user_id"`
	InReplyToName   flexString      `json:"in_reply_to_screen_name"`
	Entities        struct {
		UserMentions flexList[struct {
			ScreenName flexString `json:"screen_name"`
			ID         flexID     `json:"id_str"`
		}] `json:"user_mentions"`
	} `json:"entities"`
	ExtendedEntities struct {
		Media flexList[xMedia] `json:"media"`
	} `json:"extended_entities"`
}

func (tw xTweet) id() string {
	if tw.IDStr != "" {
		return string(tw.IDStr)
	}
	return string(tw.IDAlt)
}

func (tw xTweet) inReplyTo() string {
	if tw.InReplyToUserID != "" {
		return string(tw.InReplyToUserID)
	}
	return string(tw.InReplyToUser)
}

// xIgnoredKinds are Account Activity event arrays that never become a request.
var xIgnoredKinds = map[string]bool{
	"favorite_events": true, "follow_events": true, "unfollow_events": true, "block_events": true,
	"unblock_events": true, "mute_events": true, "unmute_events": true, "user_event": true,
	"direct_message_indicate_typing_events": true, "direct_message_mark_read_events": true,
	"tweet_delete_events": true,
}

// ParseX reads an X Account Activity delivery. Each direct message event not sent by the account
// and each tweet_create_events post that is neither the account's own post nor a retweet is an
// Event (once per id), with the author's name and @handle from the users map (or the post's
// user), the text HTML-unescaped, media URLs in Social.Media and, for a post, the leading
// @mentions of the account removed. The account is for_user_id; a delivery without it (or with
// one that cannot be read) still gives its events, the account then being inferred: the user
// that every direct message of the delivery involves (the recipient when a single message leaves
// it open), else the user the posts reply to. Other event kinds are counted in Ignored by kind
// ("unknown" for kinds this parser does not know, "invalid" for an element it cannot read).
// The error wraps ErrMalformed and is returned only when the body is not a JSON object.
func ParseX(body []byte) ([]Event, Ignored, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if top == nil {
		return nil, nil, fmt.Errorf("%w: not an object", ErrMalformed)
	}
	ig := Ignored{}
	var forUser flexID
	if raw, ok := top["for_user_id"]; ok && json.Unmarshal(raw, &forUser) != nil {
		forUser = ""
	}
	var users map[string]xUser
	if raw, ok := top["users"]; ok && json.Unmarshal(raw, &users) != nil {
		users = nil // names are a nicety; the messages do not depend on them
		ig.add("invalid_users", 1)
	}
	var dms flexList[xDM]
	if raw, ok := top["direct_message_events"]; ok {
		_ = json.Unmarshal(raw, &dms) // a non-array reads as empty, counted as skipped
		ig.add("invalid", dms.Skipped)
	}
	var tws flexList[xTweet]
	if raw, ok := top["tweet_create_events"]; ok {
		_ = json.Unmarshal(raw, &tws)
		ig.add("invalid", tws.Skipped)
	}
	account := string(forUser)
	if account == "" {
		account = inferAccount(dms.Items, tws.Items)
		ig.add("no_for_user_id", 1)
	}
	set := eventSet{ig: ig, ids: map[string]bool{}}
	for _, dm := range dms.Items {
		set.keep(xDirectMessage(account, users, dm))
	}
	for _, tw := range tws.Items {
		set.keep(xMention(account, users, tw))
	}
	for _, key := range slices.Sorted(maps.Keys(top)) {
		switch key {
		case "for_user_id", "users", "user_has_blocked", "apps", "source", "direct_message_events", "tweet_create_events":
			continue
		}
		kind := "unknown"
		if xIgnoredKinds[key] {
			kind = key
		}
		var arr []json.RawMessage
		if json.Unmarshal(top[key], &arr) == nil {
			ig.add(kind, len(arr))
		} else {
			ig.add(kind, 1)
		}
	}
	return set.events, ig, nil
}

// inferAccount guesses the subscribed account of a delivery without for_user_id: the one user in
// every direct message (sender or recipient); with several candidates, the recipient of the first
// message; without direct messages, the user the first reply is addressed to. "" when none.
func inferAccount(dms []xDM, tws []xTweet) string {
	var common map[string]bool
	first := ""
	for _, dm := range dms {
		s, r := string(dm.MessageCreate.SenderID), string(dm.MessageCreate.Target.RecipientID)
		if s == "" || r == "" {
			continue
		}
		if first == "" {
			first = r
		}
		pair := map[string]bool{s: true, r: true}
		if common == nil {
			common = pair
			continue
		}
		for id := range common {
			if !pair[id] {
				delete(common, id)
			}
		}
	}
	if len(common) == 1 {
		for id := range common {
			return id
		}
	}
	if first != "" {
		return first
	}
	for _, tw := range tws {
		if to := tw.inReplyTo(); to != "" {
			return to
		}
	}
	return ""
}

func xDirectMessage(forUser string, users map[string]xUser, dm xDM) (Event, string) {
	mc := dm.MessageCreate
	switch {
	case dm.Type != "message_create" && dm.Type != "":
		return Event{}, "dm_other"
	case dm.ID == "" || mc.SenderID == "":
		return Event{}, "invalid"
	case forUser != "" && string(mc.SenderID) == forUser:
		return Event{}, "own_dm"
	}
	text := html.UnescapeString(string(mc.MessageData.Text))
	var media []string
	if a := mc.MessageData.Attachment; a != nil {
		var parts []string
		for _, m := range a.Media.Items {
			if u := m.url(); u != "" {
				media = append(media, u)
				typ := string(m.Type)
				if typ == "" {
					typ = string(a.Type)
				}
				parts = append(parts, strings.TrimSpace("["+typ+"] "+u))
			}
		}
		if strings.TrimSpace(text) == "" {
			text = strings.Join(parts, "\n")
		}
	}
	text = cleanText(text)
	if text == "" {
		return Event{}, "empty"
	}
	sender := string(mc.SenderID)
	recipient := string(mc.Target.RecipientID)
	account := forUser
	if account == "" {
		account = recipient
	}
	e := Event{
		Social: channels.Social{
			Platform: PlatformX, Kind: KindDM, SenderID: sender, RecipientID: recipient,
			MessageID: string(dm.ID), ConversationID: dmConversation(sender, recipient), ForUserID: account,
			Media: media,
		},
		ID:   string(dm.ID),
		Time: dm.CreatedTimestamp.Time,
		Text: text,
	}
	if u, ok := users[sender]; ok {
		e.Name = string(u.Name)
		if h := handle(u.ScreenName); h != "" {
			e.Handle = h
		}
	}
	return e, ""
}

// handle is "@screen_name", or "" when the screen name is empty.
func handle(screenName flexString) string {
	s := strings.TrimPrefix(strings.TrimSpace(string(screenName)), "@")
	if s == "" {
		return ""
	}
	return "@" + s
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
	id := tw.id()
	switch {
	case id == "" || author == "":
		return Event{}, "invalid"
	case forUser != "" && author == forUser:
		return Event{}, "own_tweet"
	case tw.RetweetedStatus != nil && string(tw.RetweetedStatus) != "null":
		return Event{}, "retweet"
	}
	text := string(tw.Text)
	switch {
	case tw.ExtendedTweet != nil && tw.ExtendedTweet.FullText != "":
		text = string(tw.ExtendedTweet.FullText)
	case tw.FullText != "":
		text = string(tw.FullText)
	}
	ours := map[string]bool{}
	for _, m := range tw.Entities.UserMentions.Items {
		if forUser != "" && string(m.ID) == forUser && m.ScreenName != "" {
			ours[strings.ToLower(string(m.ScreenName))] = true
		}
	}
	if u, ok := users[forUser]; ok && u.ScreenName != "" {
		ours[strings.ToLower(string(u.ScreenName))] = true
	}
	if forUser != "" && tw.inReplyTo() == forUser && tw.InReplyToName != "" {
		ours[strings.ToLower(string(tw.InReplyToName))] = true
	}
	text = cleanText(stripLeadingMentions(html.UnescapeString(text), ours))
	var media []string
	for _, m := range tw.ExtendedEntities.Media.Items {
		if u := m.url(); u != "" {
			media = append(media, u)
		}
	}
	if text == "" && len(media) > 0 {
		text = "[photo] " + strings.Join(media, "\n[photo] ")
	}
	if text == "" {
		return Event{}, "empty"
	}
	t := tw.CreatedAt.Time
	if t.IsZero() {
		t = tw.TimestampMS.Time
	}
	e := Event{
		Social: channels.Social{
			Platform: PlatformX, Kind: KindMention, SenderID: author, TweetID: id,
			ForUserID: forUser, Media: media,
		},
		ID:     id,
		Time:   t,
		Name:   string(tw.User.Name),
		Handle: handle(tw.User.ScreenName),
		Text:   text,
	}
	if e.Handle == "" {
		e.Handle = handle(users[author].ScreenName)
	}
	if e.Name == "" {
		e.Name = string(users[author].Name)
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
