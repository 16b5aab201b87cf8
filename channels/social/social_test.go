package social_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/channels/natsjs/natstest"
	"github.com/ipn-cgsi/caud/channels/social"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// Secrets of the fixtures (testdata/webhooks, see the fixtures README).
const (
	appSecret      = "fixture-app-secret"
	consumerSecret = "fixture-consumer-secret"
	verifyToken    = "fixture-verify-token"
)

type fixture struct {
	ID         string `json:"id"`
	File       string `json:"file"`
	Path       string `json:"path"`
	Header     string `json:"header"`
	Signature  string `json:"signature"`
	PlatformID string `json:"platform_id"`
	Body       []byte `json:"-"`
	// From requests.jsonl: what the request must say.
	Text   string
	Handle string
}

func fixtures(t testing.TB) []fixture {
	t.Helper()
	type labelled struct {
		ID     string  `json:"id"`
		Body   string  `json:"body"`
		Handle *string `json:"handle"`
	}
	want := map[string]labelled{}
	f, err := os.Open("testdata/requests.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l labelled
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		want[l.ID] = l
	}
	m, err := os.ReadFile("testdata/webhooks/manifest.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	var out []fixture
	for line := range bytes.Lines(m) {
		var fx fixture
		if err := json.Unmarshal(line, &fx); err != nil {
			t.Fatal(err)
		}
		if fx.Body, err = os.ReadFile(filepath.Join("testdata/webhooks", fx.File)); err != nil {
			t.Fatal(err)
		}
		l, ok := want[fx.ID]
		if !ok {
			t.Fatalf("%s: not in requests.jsonl", fx.ID)
		}
		fx.Text = l.Body
		if l.Handle != nil {
			fx.Handle = *l.Handle
		}
		out = append(out, fx)
	}
	if len(out) != 20 {
		t.Fatalf("%d fixtures, want 20", len(out))
	}
	return out
}

type rig struct {
	env *natstest.Env
	fb  *social.Facebook
	x   *social.X
	mux *http.ServeMux
	reg *prometheus.Registry
}

type rigOptions struct {
	topo natsjs.Topology
	// wrap, when set, stands between the webhooks and the sink (to lose an ack).
	wrap     func(channels.Sink) channels.Sink
	maxBody  int64
	timeout  time.Duration
	fbTokens string
	profiles *social.Profiles
}

func newRig(t testing.TB, o rigOptions) *rig {
	t.Helper()
	env := natstest.Start(t, o.topo)
	var sink channels.Sink = natsjs.NewSink(env.Handles, natsjs.SinkOptions{AttemptTimeout: time.Second, MaxBackoff: 100 * time.Millisecond})
	if o.wrap != nil {
		sink = o.wrap(sink)
	}
	reg := prometheus.NewRegistry()
	if o.fbTokens == "" {
		o.fbTokens = verifyToken
	}
	fb, err := social.NewFacebook(social.FacebookOptions{
		AppSecrets: []string{"another-app-secret", appSecret}, VerifyToken: o.fbTokens, Profiles: o.profiles,
		Webhook: social.WebhookOptions{MaxBodyBytes: o.maxBody, Sink: sink, Seen: env.Requests, Inbound: env.Inbound, Registerer: reg, PublishTimeout: o.timeout},
	})
	if err != nil {
		t.Fatal(err)
	}
	x, err := social.NewX(social.XOptions{
		ConsumerSecrets: []string{consumerSecret, "second-consumer-secret"},
		Webhook:         social.WebhookOptions{MaxBodyBytes: o.maxBody, Sink: sink, Seen: env.Requests, Inbound: env.Inbound, Registerer: reg, PublishTimeout: o.timeout},
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/webhooks/facebook", fb)
	mux.Handle("/webhooks/x", x)
	return &rig{env: env, fb: fb, x: x, mux: mux, reg: reg}
}

func (r *rig) do(t testing.TB, method, target string, body []byte, header map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, bytes.NewReader(body))
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rr := httptest.NewRecorder()
	r.mux.ServeHTTP(rr, req)
	return rr
}

func (r *rig) post(t testing.TB, fx fixture) *httptest.ResponseRecorder {
	return r.do(t, http.MethodPost, fx.Path, fx.Body, map[string]string{fx.Header: fx.Signature})
}

type published struct {
	MsgID string
	Req   channels.Request
}

func (r *rig) inbound(t testing.TB) []published {
	t.Helper()
	ctx := context.Background()
	s, err := r.env.JS.Stream(ctx, natsjs.StreamInbound)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []published
	if info.State.Msgs == 0 {
		return nil
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		var p published
		p.MsgID = m.Header.Get(jetstream.MsgIDHeader)
		if err := json.Unmarshal(m.Data, &p.Req); err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

func signFB(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

func signX(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

func TestFixtureSignaturesAreWhatTheManifestSays(t *testing.T) {
	for _, fx := range fixtures(t) {
		var ok bool
		if fx.Path == "/webhooks/facebook" {
			ok = social.VerifyFacebookSignature(fx.Signature, fx.Body, []string{appSecret}) && signFB(appSecret, fx.Body) == fx.Signature
		} else {
			ok = social.VerifyXSignature(fx.Signature, fx.Body, []string{consumerSecret}) && signX(consumerSecret, fx.Body) == fx.Signature
		}
		if !ok {
			t.Errorf("%s: manifest signature does not verify", fx.ID)
		}
	}
}

func TestEveryFixtureBecomesItsRequest(t *testing.T) {
	r := newRig(t, rigOptions{})
	fxs := fixtures(t)
	for _, fx := range fxs {
		rr := r.post(t, fx)
		if rr.Code != http.StatusOK {
			t.Fatalf("%s: %d %s", fx.ID, rr.Code, rr.Body)
		}
		if fx.Path == "/webhooks/facebook" && rr.Body.String() != "EVENT_RECEIVED" {
			t.Errorf("%s: body %q", fx.ID, rr.Body)
		}
	}
	got := map[string]published{}
	for _, p := range r.inbound(t) {
		got[p.Req.Source.PlatformID] = p
	}
	if len(got) != len(fxs) {
		t.Fatalf("%d requests published, want %d", len(got), len(fxs))
	}
	for _, fx := range fxs {
		p, ok := got[fx.PlatformID]
		if !ok {
			t.Errorf("%s: no request with platform id %s", fx.ID, fx.PlatformID)
			continue
		}
		req := p.Req
		if err := req.Validate(); err != nil {
			t.Errorf("%s: %v", fx.ID, err)
		}
		soc := req.Source.Social
		if soc == nil {
			t.Fatalf("%s: no source.social", fx.ID)
		}
		platform := "facebook"
		if fx.Path == "/webhooks/x" {
			platform = "x"
		}
		if req.Channel != platform || soc.Platform != platform || p.MsgID != platform+":"+fx.PlatformID {
			t.Errorf("%s: channel %q platform %q msg id %q", fx.ID, req.Channel, soc.Platform, p.MsgID)
		}
		if req.Text != fx.Text {
			t.Errorf("%s: text\n got %q\nwant %q", fx.ID, req.Text, fx.Text)
		}
		if req.ReceivedAt.Year() != 2025 {
			t.Errorf("%s: received_at %s is not the platform time", fx.ID, req.ReceivedAt)
		}
		sum := sha256.Sum256(fx.Body)
		if req.Original == nil || req.Original.SHA256 != hex.EncodeToString(sum[:]) || req.Original.Object != platform+"/"+hex.EncodeToString(sum[:]) {
			t.Errorf("%s: original %+v", fx.ID, req.Original)
		}
		handle := ""
		if req.Requester.Handle != nil {
			handle = *req.Requester.Handle
		}
		switch soc.Kind {
		case social.KindMessage:
			// Messenger payloads carry only the page-scoped id; the name needs the Graph API.
			if handle != "" || soc.SenderID == "" || soc.PageID != "104532198765432" || soc.MessageID != fx.PlatformID || soc.RecipientID != soc.PageID {
				t.Errorf("%s: message source %+v handle %q", fx.ID, soc, handle)
			}
		case social.KindComment:
			if handle != fx.Handle || req.Requester.Name != fx.Handle || soc.CommentID != fx.PlatformID || soc.PostID == "" || soc.PageID != "104532198765432" || soc.SenderID == "" {
				t.Errorf("%s: comment source %+v requester %+v", fx.ID, soc, req.Requester)
			}
		case social.KindDM, social.KindMention:
			if handle != fx.Handle || req.Requester.Name != strings.TrimPrefix(fx.Handle, "@") || soc.ForUserID != "1580000000000000001" || soc.SenderID == "" {
				t.Errorf("%s: x source %+v requester %+v", fx.ID, soc, req.Requester)
			}
			if soc.Kind == social.KindDM && (soc.MessageID != fx.PlatformID || soc.ConversationID != "2200000034-1580000000000000001" && fx.ID == "D035") {
				t.Errorf("%s: dm source %+v", fx.ID, soc)
			}
			if soc.Kind == social.KindMention && soc.TweetID != fx.PlatformID {
				t.Errorf("%s: mention source %+v", fx.ID, soc)
			}
		default:
			t.Errorf("%s: kind %q", fx.ID, soc.Kind)
		}
	}
	if got := testutil.CollectAndCount(r.reg, "caud_social_events_total"); got != 4 {
		t.Errorf("events_total has %d series, want 4 (message, comment, dm, mention)", got)
	}
}

// TestGoldenNormalization pins what the parsers make of each fixture.
func TestGoldenNormalization(t *testing.T) {
	for _, fx := range fixtures(t) {
		var events []social.Event
		var err error
		if fx.Path == "/webhooks/facebook" {
			events, _, err = social.ParseFacebook(fx.Body)
		} else {
			events, _, err = social.ParseX(fx.Body)
		}
		if err != nil || len(events) != 1 {
			t.Fatalf("%s: %d events, %v", fx.ID, len(events), err)
		}
		got, _ := json.MarshalIndent(events[0].Request(time.Time{}), "", "  ")
		got = append(got, '\n')
		path := filepath.Join("testdata/golden", fx.ID+".json")
		if *update {
			if err := os.MkdirAll("testdata/golden", 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test -run Golden -update)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: normalization changed:\n%s\nwant\n%s", fx.ID, got, want)
		}
	}
}

func TestTamperedOrUnsignedDeliveriesAre401AndPublishNothing(t *testing.T) {
	r := newRig(t, rigOptions{})
	for _, fx := range fixtures(t) {
		flipped := bytes.Clone(fx.Body)
		flipped[len(flipped)/2] ^= 0x01
		wrong := signFB("not-the-secret", fx.Body)
		if fx.Path == "/webhooks/x" {
			wrong = signX("not-the-secret", fx.Body)
		}
		cases := map[string]*httptest.ResponseRecorder{
			"one byte changed": r.do(t, http.MethodPost, fx.Path, flipped, map[string]string{fx.Header: fx.Signature}),
			"header missing":   r.do(t, http.MethodPost, fx.Path, fx.Body, nil),
			"wrong secret":     r.do(t, http.MethodPost, fx.Path, fx.Body, map[string]string{fx.Header: wrong}),
			"empty signature":  r.do(t, http.MethodPost, fx.Path, fx.Body, map[string]string{fx.Header: "sha256="}),
			"other platform's header": r.do(t, http.MethodPost, fx.Path, fx.Body, map[string]string{
				map[string]string{"/webhooks/x": social.FacebookSignatureHeader, "/webhooks/facebook": social.XSignatureHeader}[fx.Path]: fx.Signature,
			}),
		}
		for name, rr := range cases {
			if rr.Code != http.StatusUnauthorized {
				t.Errorf("%s %s: %d, want 401", fx.ID, name, rr.Code)
			}
		}
	}
	if n := len(r.inbound(t)); n != 0 {
		t.Fatalf("%d requests published from rejected deliveries", n)
	}
	if got := value(t, r, "caud_social_deliveries_total", "facebook", "result", "bad_signature"); got == 0 {
		t.Error("bad_signature not counted")
	}
}

// value reads the counter metric{platform, label=want} from the rig's registry; 0 when absent.
func value(t *testing.T, r *rig, metric, platform, label, want string) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != metric {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["platform"] == platform && labels[label] == want {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func TestDeliveredTwiceGivesOneRequestEach(t *testing.T) {
	// A 200 ms duplicate window: the second round arrives after it, so only the record in
	// cau_requests keeps it from being published again.
	r := newRig(t, rigOptions{topo: natsjs.Topology{DedupWindow: 200 * time.Millisecond}})
	fxs := fixtures(t)
	for round := range 3 {
		for _, fx := range fxs {
			if rr := r.post(t, fx); rr.Code != http.StatusOK {
				t.Fatalf("round %d %s: %d %s", round, fx.ID, rr.Code, rr.Body)
			}
		}
		if round == 1 {
			natstest.AwaitDuplicateWindow(t, r.env.JS, r.env.Inbound, natsjs.SubjectInboundPrefix+"canary")
		}
	}
	if n := len(r.inbound(t)); n != len(fxs) {
		t.Fatalf("%d requests after three rounds, want %d", n, len(fxs))
	}
	// The record is there and names the request.
	sum := sha256.Sum256([]byte(fxs[0].PlatformID))
	e, err := r.env.Requests.Get(context.Background(), "social.facebook."+hex.EncodeToString(sum[:16]))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(e.Value()), `"request":"`) {
		t.Errorf("seen record %s", e.Value())
	}
}

// lossySink loses the answer of the next publish: it publishes through the real sink (or not at
// all, with drop) and reports a failure, as when the ack never came back.
type lossySink struct {
	channels.Sink
	env *natstest.Env
	// lose the next publish's answer; drop it instead of publishing; forget also removes the
	// request index's "received" entry, as when caud went down before writing it.
	lose, drop, forget bool
}

func (s *lossySink) Publish(ctx context.Context, sub channels.Submission) (channels.Receipt, error) {
	if !s.lose {
		return s.Sink.Publish(ctx, sub)
	}
	s.lose = false
	if s.drop {
		return channels.Receipt{}, fmt.Errorf("%w: no ack", channels.ErrNotReady)
	}
	if _, err := s.Sink.Publish(ctx, sub); err != nil {
		return channels.Receipt{}, err
	}
	if s.forget {
		<-s.env.JS.PublishAsyncComplete()
		if err := s.env.Requests.Delete(ctx, natsjs.ReceivedKey(sub.Request.ID).String()); err != nil {
			return channels.Receipt{}, err
		}
	}
	return channels.Receipt{}, fmt.Errorf("%w: ack lost", channels.ErrNotReady)
}

// A delivery whose publish lost its ack is retried by the platform after JetStream's duplicate
// window: one request, found through the request index, or through CAU_INBOUND when the index
// never heard of it; and when the first publish never landed, the retry publishes the request the
// first delivery claimed.
func TestRetryAfterTheWindowOfALostAckGivesOneRequest(t *testing.T) {
	for name, lossy := range map[string]*lossySink{
		"index knows":       {lose: true},
		"only stream knows": {lose: true, forget: true},
		"never landed":      {lose: true, drop: true},
	} {
		t.Run(name, func(t *testing.T) {
			r := newRig(t, rigOptions{topo: natsjs.Topology{DedupWindow: 100 * time.Millisecond}, wrap: func(s channels.Sink) channels.Sink {
				lossy.Sink = s
				return lossy
			}})
			lossy.env = r.env
			fx := fixtures(t)[0]
			if rr := r.post(t, fx); rr.Code != http.StatusServiceUnavailable {
				t.Fatalf("delivery with a lost ack: %d %s", rr.Code, rr.Body)
			}
			claim, err := r.env.Requests.Get(context.Background(), natsjs.SocialKey("facebook", fx.PlatformID).String())
			if err != nil {
				t.Fatalf("no claim after the first delivery: %v", err)
			}
			natstest.AwaitDuplicateWindow(t, r.env.JS, r.env.Inbound, natsjs.SubjectInboundPrefix+"canary")
			if rr := r.post(t, fx); rr.Code != http.StatusOK {
				t.Fatalf("retry after the window: %d %s", rr.Code, rr.Body)
			}
			got := r.inbound(t)
			if len(got) != 1 || got[0].MsgID != "facebook:"+fx.PlatformID {
				t.Fatalf("%d requests for one message after a lost ack and a late retry: %+v", len(got), got)
			}
			if !strings.Contains(string(claim.Value()), `"request":"`+got[0].Req.ID+`"`) {
				t.Fatalf("the request %s is not the one claimed: %s", got[0].Req.ID, claim.Value())
			}
			e, err := r.env.Requests.Get(context.Background(), natsjs.SocialKey("facebook", fx.PlatformID).String())
			if err != nil || strings.Contains(string(e.Value()), "pending") {
				t.Fatalf("record after the retry: %s %v", e.Value(), err)
			}
			if rr := r.post(t, fx); rr.Code != http.StatusOK || len(r.inbound(t)) != 1 {
				t.Fatalf("a third delivery: %d, %d requests", rr.Code, len(r.inbound(t)))
			}
		})
	}
}

func TestConcurrentDuplicatesPublishOnce(t *testing.T) {
	r := newRig(t, rigOptions{})
	fxs := fixtures(t)
	done := make(chan int)
	for range 4 {
		go func() {
			for _, fx := range fxs {
				done <- r.post(t, fx).Code
			}
		}()
	}
	for range 4 * len(fxs) {
		if code := <-done; code != http.StatusOK {
			t.Errorf("code %d", code)
		}
	}
	if n := len(r.inbound(t)); n != len(fxs) {
		t.Fatalf("%d requests, want %d", n, len(fxs))
	}
}

func TestFacebookVerificationHandshake(t *testing.T) {
	r := newRig(t, rigOptions{})
	rr := r.do(t, http.MethodGet, "/webhooks/facebook?hub.mode=subscribe&hub.verify_token="+verifyToken+"&hub.challenge=1158201444", nil, nil)
	if rr.Code != http.StatusOK || rr.Body.String() != "1158201444" || !strings.HasPrefix(rr.Header().Get("Content-Type"), "text/plain") {
		t.Fatalf("handshake: %d %q %q", rr.Code, rr.Body, rr.Header().Get("Content-Type"))
	}
	for _, q := range []string{
		"hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1",
		"hub.mode=unsubscribe&hub.verify_token=" + verifyToken + "&hub.challenge=1",
		"hub.mode=subscribe&hub.verify_token=" + verifyToken,
		"hub.mode=subscribe&hub.challenge=1",
		"",
	} {
		if rr := r.do(t, http.MethodGet, "/webhooks/facebook?"+q, nil, nil); rr.Code != http.StatusForbidden {
			t.Errorf("%q: %d, want 403", q, rr.Code)
		}
	}
	if rr := r.do(t, http.MethodPut, "/webhooks/facebook", nil, nil); rr.Code != http.StatusMethodNotAllowed {
		t.Errorf("PUT: %d", rr.Code)
	}
}

func TestFacebookWithoutVerifyTokenRefusesHandshake(t *testing.T) {
	env := natstest.Start(t, natsjs.Topology{})
	fb, err := social.NewFacebook(social.FacebookOptions{AppSecrets: []string{appSecret}, Webhook: social.WebhookOptions{Sink: natsjs.NewSink(env.Handles, natsjs.SinkOptions{}), Seen: env.Requests}})
	if err != nil {
		t.Fatal(err)
	}
	rr := httptest.NewRecorder()
	fb.ServeHTTP(rr, httptest.NewRequest(http.MethodGet, "/webhooks/facebook?hub.mode=subscribe&hub.verify_token=&hub.challenge=1", nil))
	if rr.Code != http.StatusForbidden {
		t.Fatalf("%d, want 403", rr.Code)
	}
}

func TestXCRC(t *testing.T) {
	r := newRig(t, rigOptions{})
	rr := r.do(t, http.MethodGet, "/webhooks/x?crc_token=challenge-123", nil, nil)
	var out map[string]string
	if err := json.Unmarshal(rr.Body.Bytes(), &out); err != nil || rr.Code != http.StatusOK {
		t.Fatalf("%d %q %v", rr.Code, rr.Body, err)
	}
	m := hmac.New(sha256.New, []byte(consumerSecret))
	m.Write([]byte("challenge-123"))
	want := "sha256=" + base64.StdEncoding.EncodeToString(m.Sum(nil))
	if out["response_token"] != want || social.XCRCResponse(consumerSecret, "challenge-123") != want {
		t.Fatalf("response_token %q, want %q", out["response_token"], want)
	}
	rr = r.do(t, http.MethodGet, "/webhooks/x?crc_token=challenge-123&app=1", nil, nil)
	_ = json.Unmarshal(rr.Body.Bytes(), &out)
	if rr.Code != http.StatusOK || out["response_token"] != social.XCRCResponse("second-consumer-secret", "challenge-123") {
		t.Errorf("app=1: %d %v", rr.Code, out)
	}
	if rr := r.do(t, http.MethodGet, "/webhooks/x", nil, nil); rr.Code != http.StatusBadRequest {
		t.Errorf("no crc_token: %d, want 400", rr.Code)
	}
	if rr := r.do(t, http.MethodGet, "/webhooks/x?crc_token=a&app=7", nil, nil); rr.Code != http.StatusForbidden {
		t.Errorf("unknown app: %d, want 403", rr.Code)
	}
}

func TestTooLargeIs413(t *testing.T) {
	r := newRig(t, rigOptions{maxBody: 1024})
	big := []byte(`{"object":"page","entry":[],"pad":"` + strings.Repeat("a", 2000) + `"}`)
	if rr := r.do(t, http.MethodPost, "/webhooks/facebook", big, map[string]string{social.FacebookSignatureHeader: signFB(appSecret, big)}); rr.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("facebook: %d, want 413", rr.Code)
	}
	bigX := []byte(`{"for_user_id":"1","pad":"` + strings.Repeat("a", 2000) + `"}`)
	if rr := r.do(t, http.MethodPost, "/webhooks/x", bigX, map[string]string{social.XSignatureHeader: signX(consumerSecret, bigX)}); rr.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("x: %d, want 413", rr.Code)
	}
}

func TestMalformedIs400AndPublishesNothing(t *testing.T) {
	r := newRig(t, rigOptions{})
	for _, body := range []string{`{"object":"page","entry":[{"id":"1","messaging":[{"message":{"mid":"m_1","text":"hola"}}]}]`, `not json`, `{"entry":[]}`, `null`, `[]`, ``} {
		b := []byte(body)
		if rr := r.do(t, http.MethodPost, "/webhooks/facebook", b, map[string]string{social.FacebookSignatureHeader: signFB(appSecret, b)}); rr.Code != http.StatusBadRequest {
			t.Errorf("facebook %q: %d, want 400", body, rr.Code)
		}
	}
	for _, body := range []string{`{"for_user_id":"1","direct_message_events":[{"type":"message_create","id":"9"`, `[]`, `null`, `"x"`} {
		b := []byte(body)
		if rr := r.do(t, http.MethodPost, "/webhooks/x", b, map[string]string{social.XSignatureHeader: signX(consumerSecret, b)}); rr.Code != http.StatusBadRequest {
			t.Errorf("x %q: %d, want 400", body, rr.Code)
		}
	}
	if n := len(r.inbound(t)); n != 0 {
		t.Fatalf("%d published", n)
	}
}

// TestOddShapesAre200AndCounted: a signed delivery whose parts are shaped otherwise than
// documented is acknowledged (a 400 would make the platform retry and then drop it) and what
// could not be read is counted as invalid; nothing is published from it.
func TestOddShapesAre200AndCounted(t *testing.T) {
	r := newRig(t, rigOptions{})
	for _, body := range []string{`{"object":"page","entry":"x"}`, `{"object":"page","entry":[{"id":"1","changes":[{"field":"feed","value":"nope"}]}]}`,
		`{"object":"page","entry":[{"id":"1","messaging":[7,{"message":"text"}]}]}`} {
		b := []byte(body)
		if rr := r.do(t, http.MethodPost, "/webhooks/facebook", b, map[string]string{social.FacebookSignatureHeader: signFB(appSecret, b)}); rr.Code != http.StatusOK {
			t.Errorf("facebook %q: %d, want 200", body, rr.Code)
		}
	}
	for _, body := range []string{`{}`, `{"for_user_id":"1","direct_message_events":{}}`, `{"for_user_id":{"a":1}}`, `{"for_user_id":"1","direct_message_events":[3]}`} {
		b := []byte(body)
		if rr := r.do(t, http.MethodPost, "/webhooks/x", b, map[string]string{social.XSignatureHeader: signX(consumerSecret, b)}); rr.Code != http.StatusOK {
			t.Errorf("x %q: %d, want 200", body, rr.Code)
		}
	}
	if n := len(r.inbound(t)); n != 0 {
		t.Fatalf("%d published", n)
	}
	if got := value(t, r, "caud_social_ignored_total", "facebook", "reason", "invalid"); got != 4 {
		t.Errorf("facebook invalid = %v, want 4", got)
	}
	if got := value(t, r, "caud_social_ignored_total", "x", "reason", "invalid"); got != 2 {
		t.Errorf("x invalid = %v, want 2", got)
	}
}

func TestMixedFacebookDelivery(t *testing.T) {
	r := newRig(t, rigOptions{})
	body := []byte(`{"object":"page","entry":[
{"id":"111","time":1760000000000,"messaging":[
 {"sender":{"id":"7001"},"recipient":{"id":"111"},"timestamp":1760000000001,"message":{"mid":"m_one","text":"no tengo internet"}},
 {"sender":{"id":"111"},"recipient":{"id":"7001"},"timestamp":1760000000002,"message":{"mid":"m_echo","text":"hola","is_echo":true,"app_id":1}},
 {"sender":{"id":"7001"},"recipient":{"id":"111"},"timestamp":1760000000003,"delivery":{"mids":["m_x"],"watermark":1}},
 {"sender":{"id":"7001"},"recipient":{"id":"111"},"timestamp":1760000000004,"read":{"watermark":1}},
 {"sender":{"id":"7001"},"recipient":{"id":"111"},"timestamp":1760000000005,"message_edit":{"mid":"m_one","text":"x","num_edit":1}},
 {"sender":{"id":"7001"},"recipient":{"id":"111"},"timestamp":1760000000006,"optin":{"ref":"x"}},
 {"sender":{"id":"7002"},"recipient":{"id":"111"},"timestamp":1760000000007,"message":{"mid":"m_pic","attachments":[{"type":"image","payload":{"url":"https://cdn.example/p.jpg"}}]}},
 {"sender":{"id":"7003"},"recipient":{"id":"111"},"timestamp":1760000000008,"message":{"mid":"m_like","attachments":[{"type":"image","payload":{"url":"https://cdn.example/l.png","sticker_id":369239263222822}}]}}
]},
{"id":"222","time":1760000100,"changes":[
 {"field":"feed","value":{"item":"comment","verb":"add","comment_id":"c_1","post_id":"222_9","from":{"id":"8001","name":"Ana"},"message":"el SAES no carga","created_time":1760000100}},
 {"field":"feed","value":{"item":"comment","verb":"add","comment_id":"c_own","post_id":"222_9","from":{"id":"222","name":"CAU"},"message":"Gracias, lo revisamos","created_time":1760000101}},
 {"field":"feed","value":{"item":"comment","verb":"edited","comment_id":"c_1","post_id":"222_9","from":{"id":"8001","name":"Ana"},"message":"el SAES no carga!!"}},
 {"field":"feed","value":{"item":"reaction","verb":"add","post_id":"222_9","from":{"id":"8001"},"reaction_type":"like"}},
 {"field":"ratings","value":{}}
]}]}`)
	rr := r.do(t, http.MethodPost, "/webhooks/facebook", body, map[string]string{social.FacebookSignatureHeader: signFB("another-app-secret", body)})
	if rr.Code != http.StatusOK {
		t.Fatalf("%d %s", rr.Code, rr.Body)
	}
	got := map[string]channels.Request{}
	for _, p := range r.inbound(t) {
		got[p.Req.Source.PlatformID] = p.Req
	}
	if len(got) != 4 {
		t.Fatalf("%d requests, want m_one, m_pic, m_like, c_1: %v", len(got), got)
	}
	if got["m_like"].Text != "👍" || len(got["m_pic"].Source.Social.Media) != 1 || got["m_pic"].Source.Social.Media[0] != "https://cdn.example/p.jpg" {
		t.Errorf("m_like %q, m_pic media %v", got["m_like"].Text, got["m_pic"].Source.Social.Media)
	}
	if got["m_pic"].Text != "[image] https://cdn.example/p.jpg" || got["m_one"].Source.Social.PageID != "111" || got["c_1"].Source.Social.PageID != "222" {
		t.Errorf("requests: %+v", got)
	}
	if got["m_one"].Original.Object != got["c_1"].Original.Object {
		t.Error("one delivery should be archived once")
	}
	for reason, want := range map[string]float64{"echo": 1, "delivery": 1, "read": 1, "message_edit": 1, "optin": 1, "own_comment": 1, "comment_edited": 1, "feed_other": 1, "change_ratings": 1} {
		if got := value(t, r, "caud_social_ignored_total", "facebook", "reason", reason); got != want {
			t.Errorf("ignored %s = %v, want %v", reason, got, want)
		}
	}
}

func TestMixedXDelivery(t *testing.T) {
	r := newRig(t, rigOptions{})
	body := []byte(`{"for_user_id":"100","user_has_blocked":false,
"direct_message_events":[
 {"type":"message_create","id":"d1","created_timestamp":"1760000000000","message_create":{"target":{"recipient_id":"100"},"sender_id":"200","message_data":{"text":"mi correo no abre &amp; no s&eacute; por qu&#233; &lt;ayuda&gt;"}}},
 {"type":"message_create","id":"d2","created_timestamp":"1760000000001","message_create":{"target":{"recipient_id":"200"},"sender_id":"100","message_data":{"text":"Hola, ¿en qué escuela?"}}}
],
"tweet_create_events":[
 {"id_str":"t1","created_at":"Thu Oct 09 08:53:57 +0000 2025","text":"@cau_ipn @IPN_MX @CAU_IPN sin wifi en ESCOM","user":{"id_str":"300","name":"Luis P","screen_name":"luisp"},"entities":{"user_mentions":[{"screen_name":"CAU_IPN","id_str":"100"}]}},
 {"id_str":"t2","created_at":"Thu Oct 09 08:53:58 +0000 2025","text":"Ya quedó el servicio","user":{"id_str":"100","name":"CAU IPN","screen_name":"CAU_IPN"}},
 {"id_str":"t3","text":"RT @CAU_IPN: aviso","user":{"id_str":"301","screen_name":"otro"},"retweeted_status":{"id_str":"t0"}},
 {"id_str":"t4","text":"@CAU_IPN","truncated":true,"extended_tweet":{"full_text":"@CAU_IPN la plataforma de cursos no deja subir tareas desde hace dos días, ¿la revisan?"},"user":{"id_str":"302","screen_name":"maru"},"entities":{"user_mentions":[{"screen_name":"CAU_IPN","id_str":"100"}]}}
],
"favorite_events":[{"id":"f1"},{"id":"f2"}],
"follow_events":[{"type":"follow"}],
"brand_new_events":[{}],
"users":{"200":{"id":"200","name":"Paty R","screen_name":"paty_r"},"100":{"id":"100","name":"CAU IPN","screen_name":"CAU_IPN"}}}`)
	rr := r.do(t, http.MethodPost, "/webhooks/x", body, map[string]string{social.XSignatureHeader: signX("second-consumer-secret", body)})
	if rr.Code != http.StatusOK {
		t.Fatalf("%d %s", rr.Code, rr.Body)
	}
	got := map[string]channels.Request{}
	for _, p := range r.inbound(t) {
		got[p.Req.Source.PlatformID] = p.Req
	}
	if len(got) != 3 {
		t.Fatalf("%d requests, want d1, t1, t4", len(got))
	}
	if d1 := got["d1"]; d1.Text != "mi correo no abre & no sé por qué <ayuda>" || d1.Requester.Name != "Paty R" || *d1.Requester.Handle != "@paty_r" || d1.Source.Social.ConversationID != "100-200" {
		t.Errorf("d1: %+v %+v", d1, d1.Source.Social)
	}
	if t1 := got["t1"]; t1.Text != "@IPN_MX sin wifi en ESCOM" || *t1.Requester.Handle != "@luisp" || t1.Source.Social.TweetID != "t1" || t1.ReceivedAt.Format(time.RFC3339) != "2025-10-09T08:53:57Z" {
		t.Errorf("t1: %q %+v", t1.Text, t1)
	}
	if t4 := got["t4"]; !strings.HasPrefix(t4.Text, "la plataforma de cursos") {
		t.Errorf("t4: %q", t4.Text)
	}
	for reason, want := range map[string]float64{"own_dm": 1, "own_tweet": 1, "retweet": 1, "favorite_events": 2, "follow_events": 1, "unknown": 1} {
		if got := value(t, r, "caud_social_ignored_total", "x", "reason", reason); got != want {
			t.Errorf("ignored %s = %v, want %v", reason, got, want)
		}
	}
}

func TestJetStreamDownIsRetriedAndPublishedOnce(t *testing.T) {
	r := newRig(t, rigOptions{timeout: 400 * time.Millisecond})
	fxs := fixtures(t)
	ctx := context.Background()
	if err := r.env.JS.DeleteStream(ctx, natsjs.StreamInbound); err != nil {
		t.Fatal(err)
	}
	for _, fx := range fxs[:2] {
		rr := r.post(t, fx)
		if rr.Code != http.StatusServiceUnavailable {
			t.Fatalf("%s with the stream gone: %d, want 503", fx.ID, rr.Code)
		}
	}
	if h := r.fb.Health(context.Background()); h[0].OK {
		t.Error("health should report the failure")
	}
	if _, err := natsjs.EnsureTopology(ctx, r.env.JS, natsjs.Topology{}); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the platform's retry, and one more
		for _, fx := range fxs[:2] {
			if rr := r.post(t, fx); rr.Code != http.StatusOK {
				t.Fatalf("%s after recovery: %d %s", fx.ID, rr.Code, rr.Body)
			}
		}
	}
	ps := r.inbound(t)
	if len(ps) != 2 || ps[0].Req.Source.PlatformID != fxs[0].PlatformID || ps[1].Req.Source.PlatformID != fxs[1].PlatformID {
		t.Fatalf("published %+v, want each once", ps)
	}
	if h := r.fb.Health(context.Background()); !h[0].OK {
		t.Errorf("health after recovery: %+v", h)
	}
}

// TestSeenStoreDownIs503ThenRetryPublishesOnce: without cau_requests nothing is answered 200.
func TestSeenStoreDownIs503ThenRetryPublishesOnce(t *testing.T) {
	r := newRig(t, rigOptions{timeout: 300 * time.Millisecond})
	fx := fixtures(t)[0]
	ctx := context.Background()
	// Losing the cau_requests bucket makes the seen check fail.
	if err := r.env.JS.DeleteKeyValue(ctx, natsjs.KVRequests); err != nil {
		t.Fatal(err)
	}
	if rr := r.post(t, fx); rr.Code != http.StatusServiceUnavailable {
		t.Fatalf("seen store gone: %d, want 503", rr.Code)
	}
	if _, err := natsjs.EnsureTopology(ctx, r.env.JS, natsjs.Topology{}); err != nil {
		t.Fatal(err)
	}
	if rr := r.post(t, fx); rr.Code != http.StatusOK {
		t.Fatalf("after recovery: %d %s", rr.Code, rr.Body)
	}
	if n := len(r.inbound(t)); n != 1 {
		t.Fatalf("%d published, want 1", n)
	}
}

func TestOptionsAndSharedRegisterer(t *testing.T) {
	env := natstest.Start(t, natsjs.Topology{})
	sink := natsjs.NewSink(env.Handles, natsjs.SinkOptions{})
	if _, err := social.NewFacebook(social.FacebookOptions{AppSecrets: []string{""}, Webhook: social.WebhookOptions{Sink: sink, Seen: env.Requests}}); err == nil {
		t.Error("facebook without secret accepted")
	}
	if _, err := social.NewX(social.XOptions{ConsumerSecrets: []string{"s"}, Webhook: social.WebhookOptions{Seen: env.Requests}}); err == nil {
		t.Error("x without sink accepted")
	}
	if _, err := social.NewX(social.XOptions{ConsumerSecrets: []string{"s"}, Webhook: social.WebhookOptions{Sink: sink}}); err == nil {
		t.Error("x without seen store accepted")
	}
	reg := prometheus.NewRegistry()
	for range 2 { // two of each on one registerer, as in tests of cmd/caud
		if _, err := social.NewFacebook(social.FacebookOptions{AppSecrets: []string{"s"}, Webhook: social.WebhookOptions{Sink: sink, Seen: env.Requests, Registerer: reg}}); err != nil {
			t.Fatal(err)
		}
		if _, err := social.NewX(social.XOptions{ConsumerSecrets: []string{"s"}, Webhook: social.WebhookOptions{Sink: sink, Seen: env.Requests, Registerer: reg}}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSignatureChecksWithSeveralSecrets(t *testing.T) {
	body := []byte(`{"object":"page"}`)
	for _, tc := range []struct {
		header  string
		secrets []string
		want    bool
	}{
		{signFB("b", body), []string{"a", "b"}, true},
		{signFB("b", body), []string{"a"}, false},
		{signFB("", body), []string{""}, false},
		{strings.ToUpper(signFB("a", body)[7:]), []string{"a"}, false},
		{"sha256=" + strings.ToUpper(signFB("a", body)[7:]), []string{"a"}, true},
		{"sha1=" + signFB("a", body)[7:], []string{"a"}, false},
		{signFB("a", body) + "00", []string{"a"}, false},
	} {
		if got := social.VerifyFacebookSignature(tc.header, body, tc.secrets); got != tc.want {
			t.Errorf("facebook %q %v: %v", tc.header, tc.secrets, got)
		}
	}
	if !social.VerifyXSignature(signX("b", body), body, []string{"a", "b"}) || social.VerifyXSignature(signX("", body), body, []string{""}) ||
		social.VerifyXSignature(strings.TrimSuffix(signX("b", body), "="), body, []string{"b"}) {
		t.Error("x signature with several secrets")
	}
}

func ExampleXCRCResponse() {
	fmt.Println(social.XCRCResponse("fixture-consumer-secret", "abc"))
	// Output: sha256=tFy+8tL9PA783QL12ocO6DVQ5lOhalit5LaSJ6hhlbk=
}

// failingPut is a seen store whose first Put fails: the request is published but not recorded.
type failingPut struct {
	jetstream.KeyValue
	failed atomic.Bool
}

func (f *failingPut) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	if f.failed.CompareAndSwap(false, true) {
		return 0, errors.New("injected: kv put lost")
	}
	return f.KeyValue.Put(ctx, key, value)
}

// TestRecordLostAfterPublishIsRetriedWithoutDoubling covers a failure between the publish and the
// record: 503, and the platform's retry neither doubles the request nor skips the record.
func TestRecordLostAfterPublishIsRetriedWithoutDoubling(t *testing.T) {
	env := natstest.Start(t, natsjs.Topology{})
	seen := &failingPut{KeyValue: env.Requests}
	x, err := social.NewX(social.XOptions{ConsumerSecrets: []string{consumerSecret}, Webhook: social.WebhookOptions{Sink: natsjs.NewSink(env.Handles, natsjs.SinkOptions{}), Seen: seen}})
	if err != nil {
		t.Fatal(err)
	}
	var fx fixture
	for _, f := range fixtures(t) {
		if f.Path == "/webhooks/x" {
			fx = f
			break
		}
	}
	send := func() int {
		rr := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, fx.Path, bytes.NewReader(fx.Body))
		req.Header.Set(fx.Header, fx.Signature)
		x.ServeHTTP(rr, req)
		return rr.Code
	}
	if code := send(); code != http.StatusServiceUnavailable {
		t.Fatalf("record lost: %d, want 503", code)
	}
	if code := send(); code != http.StatusOK {
		t.Fatalf("retry: %d, want 200", code)
	}
	info, err := env.Inbound.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Fatalf("%d messages, want 1", info.State.Msgs)
	}
	sum := sha256.Sum256([]byte(fx.PlatformID))
	if _, err := env.Requests.Get(context.Background(), "social.x."+hex.EncodeToString(sum[:16])); err != nil {
		t.Fatalf("seen record after the retry: %v", err)
	}
}
