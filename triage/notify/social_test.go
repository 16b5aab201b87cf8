package notify

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/triage"
)

type call struct {
	Method, Path, Query, Auth, CType string
	Body                             []byte
}

// fakeAPI records every request and answers as the platform does on success.
type fakeAPI struct {
	mu     sync.Mutex
	calls  []call
	status int // 0: 200
	answer string
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.calls = append(f.calls, call{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("Authorization"), r.Header.Get("Content-Type"), b})
	status, answer := f.status, f.answer
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if status == 0 {
		status = 200
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, answer)
}

func (f *fakeAPI) got() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...)
}

func socialItem(platform, kind string, outcome string) triage.Item {
	it := item(outcome)
	req := &it.Request
	req.Channel = platform
	req.Source = channels.Source{PlatformID: "m-1", Social: &channels.Social{Platform: platform, Kind: kind}}
	req.Requester = channels.Requester{Name: "Luis Gómez"}
	req.Thread, req.Subject = nil, ""
	s := req.Source.Social
	switch {
	case platform == channels.MediumFacebook && kind == "message":
		s.PageID, s.SenderID, s.RecipientID, s.MessageID = "page-1", "psid-42", "page-1", "mid.1"
	case platform == channels.MediumFacebook && kind == "comment":
		s.PageID, s.SenderID, s.CommentID, s.PostID = "page-1", "user-7", "post-1_comment-9", "post-1"
	case kind == "dm":
		s.SenderID, s.RecipientID, s.MessageID, s.ForUserID = "x-user-5", "cau-account", "dm-1", "cau-account"
	case kind == "mention":
		s.SenderID, s.TweetID, s.ForUserID = "x-user-6", "tw-1", "cau-account"
	}
	return it
}

func TestSocialNotices(t *testing.T) {
	fb := &fakeAPI{answer: `{"recipient_id":"psid-42","message_id":"m_1"}`}
	x := &fakeAPI{answer: `{"data":{"dm_conversation_id":"1-2","dm_event_id":"3"}}`}
	fbs, xs := httptest.NewServer(fb), httptest.NewServer(x)
	defer fbs.Close()
	defer xs.Close()
	h := start(t, nil, func(o *Options) {
		o.FacebookAPIBase, o.FacebookPageToken = fbs.URL+"/v21.0", "PAGE-TOKEN"
		o.XAPIBase, o.XBearerToken = xs.URL+"/2", "X-TOKEN"
	})
	h.run(t)
	msg := socialItem(channels.MediumFacebook, "message", triage.OutcomeAclaracion)
	long := strings.Repeat("¿Pregunta muy larga sobre el equipo? ", 100)
	msg.Triage.Questions = append(msg.Triage.Questions, long)
	com := socialItem(channels.MediumFacebook, "comment", triage.OutcomeNoCompetente)
	dm := socialItem(channels.MediumX, "dm", triage.OutcomeSAI)
	men := socialItem(channels.MediumX, "mention", triage.OutcomeInformativo)
	for _, it := range []triage.Item{msg, com, dm, men} {
		publishItem(t, h, it, "")
	}
	eventually(t, "social notices", 10*time.Second, func() bool { return len(fb.got()) == 2 && len(x.got()) == 2 })
	for _, c := range fb.got() {
		if c.Method != http.MethodPost {
			t.Errorf("facebook method %s", c.Method)
		}
		switch c.Path {
		case "/v21.0/me/messages":
			q, _ := url.ParseQuery(c.Query)
			if q.Get("access_token") != "PAGE-TOKEN" || !strings.HasPrefix(c.CType, "application/json") {
				t.Errorf("messenger query %q content type %q", c.Query, c.CType)
			}
			var body struct {
				Recipient     struct{ ID string }   `json:"recipient"`
				MessagingType string                `json:"messaging_type"`
				Message       struct{ Text string } `json:"message"`
				Extra         map[string]any        `json:"-"`
			}
			if err := json.Unmarshal(c.Body, &body); err != nil {
				t.Fatal(err)
			}
			if body.Recipient.ID != "psid-42" || body.MessagingType != "RESPONSE" {
				t.Errorf("messenger body %s", c.Body)
			}
			if !strings.Contains(body.Message.Text, msg.Request.ID) || !strings.Contains(body.Message.Text, "¿Desde qué equipo intenta entrar?") {
				t.Errorf("messenger text %q", body.Message.Text)
			}
			if n := utf8.RuneCountInString(body.Message.Text); n > 2000 {
				t.Errorf("messenger text %d characters, over 2000", n)
			}
		case "/v21.0/post-1_comment-9/comments":
			form, err := url.ParseQuery(string(c.Body))
			if err != nil || c.CType != "application/x-www-form-urlencoded" {
				t.Fatalf("comment body %q (%s): %v", c.Body, c.CType, err)
			}
			text := form.Get("message")
			if form.Get("access_token") != "PAGE-TOKEN" || !strings.Contains(text, com.Request.ID) ||
				!strings.Contains(text, "Dirección de Servicios Estudiantiles (becas)") || !strings.Contains(text, "disculpa") {
				t.Errorf("comment form %v", form)
			}
			if strings.Contains(c.Query, "access_token") {
				t.Errorf("token in the comment URL")
			}
		default:
			t.Errorf("facebook path %s", c.Path)
		}
	}
	paths := map[string]string{}
	for _, c := range x.got() {
		if c.Method != http.MethodPost || c.Auth != "Bearer X-TOKEN" || !strings.HasPrefix(c.CType, "application/json") {
			t.Errorf("x call %s auth %q type %q", c.Method, c.Auth, c.CType)
		}
		var body map[string]any
		if err := json.Unmarshal(c.Body, &body); err != nil || len(body) != 1 {
			t.Fatalf("x body %s: %v", c.Body, err)
		}
		paths[c.Path] = body["text"].(string)
	}
	if text := paths["/2/dm_conversations/with/x-user-5/messages"]; !strings.Contains(text, dm.Request.ID) || !strings.Contains(text, "Recibimos su solicitud") {
		t.Errorf("x dm text %q (paths %v)", text, paths)
	}
	// A mention is answered by DM, never in public.
	if text := paths["/2/dm_conversations/with/x-user-6/messages"]; !strings.Contains(text, "CAU_INFORMATIVO_04A") {
		t.Errorf("x mention DM text %q (paths %v)", text, paths)
	}
	for _, k := range []struct{ ch, kind string }{{DeliverFacebook, KindAclaracion}, {DeliverFacebook, KindNoCompetente}, {DeliverX, KindAcuse}, {DeliverX, KindInformativo}} {
		if v := testutil.ToFloat64(h.n.m.sent.WithLabelValues(k.ch, k.kind)); v != 1 {
			t.Errorf("sent{%s,%s} = %v", k.ch, k.kind, v)
		}
	}
}

func TestSocialFailures(t *testing.T) {
	fb := &fakeAPI{status: 503, answer: `{"error":{"message":"Service temporarily unavailable","code":2}}`}
	fbs := httptest.NewServer(fb)
	defer fbs.Close()
	h := start(t, nil, func(o *Options) { o.FacebookAPIBase, o.FacebookPageToken = fbs.URL, "PAGE-TOKEN" })
	h.run(t)
	publishItem(t, h, socialItem(channels.MediumFacebook, "message", triage.OutcomeSAI), "")
	eventually(t, "retries", 10*time.Second, func() bool { return len(fb.got()) >= 3 })
	fb.mu.Lock()
	fb.status, fb.answer = 400, `{"error":{"message":"(#10) This message is sent outside of allowed window.","code":10,"error_subcode":2018278}}`
	fb.mu.Unlock()
	eventually(t, "dead letter", 10*time.Second, func() bool {
		return testutil.ToFloat64(h.n.m.failed.WithLabelValues(DeliverFacebook, "permanent")) == 1
	})
	// X without a token: suppressed, not failed.
	publishItem(t, h, socialItem(channels.MediumX, "dm", triage.OutcomeSAI), "")
	eventually(t, "not configured", 10*time.Second, func() bool { return h.suppressed(ReasonNotConfigured) == 1 })
}
