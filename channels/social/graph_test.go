package social_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ipn-cgsi/caud/channels/social"
)

// graphServer speaks the Graph API User Profile endpoint as Meta documents it:
// GET /v21.0/<PSID>?fields=…&access_token=…[&appsecret_proof=…] answers 200 with the requested
// fields and the id, or 400 with {"error":{"message","type","code","fbtrace_id"}} (code 2018218
// "No profile available for this user.", 190 for a bad token).
type graphServer struct {
	*httptest.Server
	mu    sync.Mutex
	calls map[string]int
	names map[string][2]string // psid → first, last
	block chan struct{}        // when set, answers wait for it
}

const pageToken = "EAAB-page-token"

func newGraphServer(t *testing.T, secret string) *graphServer {
	g := &graphServer{calls: map[string]int{}, names: map[string][2]string{
		"7001": {"Patricia", "Ramírez López"},
		"7002": {"Luis", "Pérez"},
	}}
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		psid, ok := strings.CutPrefix(r.URL.Path, "/v21.0/")
		q := r.URL.Query()
		g.mu.Lock()
		g.calls[psid]++
		block := g.block
		first, known := g.names[psid]
		g.mu.Unlock()
		if block != nil {
			<-block
		}
		fail := func(status, code int, typ, msg string) {
			w.Header().Set("Content-Type", "application/json; charset=UTF-8")
			w.WriteHeader(status)
			fmt.Fprintf(w, `{"error":{"message":%q,"type":%q,"code":%d,"fbtrace_id":"AbCdEfGh123"}}`, msg, typ, code)
		}
		m := hmac.New(sha256.New, []byte(secret))
		m.Write([]byte(pageToken))
		switch {
		case r.Method != http.MethodGet || !ok || strings.Contains(psid, "/"):
			fail(http.StatusBadRequest, 100, "GraphMethodException", "Unsupported get request.")
		case q.Get("access_token") != pageToken:
			fail(http.StatusBadRequest, 190, "OAuthException", "Invalid OAuth access token - Cannot parse access token")
		case q.Get("appsecret_proof") != hex.EncodeToString(m.Sum(nil)):
			fail(http.StatusBadRequest, 100, "GraphMethodException", "Invalid appsecret_proof provided in the API argument")
		case !known:
			fail(http.StatusBadRequest, 2018218, "OAuthException", "No profile available for this user.")
		default:
			out := map[string]string{"id": psid}
			for _, f := range strings.Split(q.Get("fields"), ",") {
				switch f {
				case "first_name":
					out[f] = first[0]
				case "last_name":
					out[f] = first[1]
				case "name":
					out[f] = first[0] + " " + first[1]
				}
			}
			w.Header().Set("Content-Type", "application/json; charset=UTF-8")
			_ = json.NewEncoder(w).Encode(out)
		}
	}))
	t.Cleanup(g.Close)
	return g
}

func (g *graphServer) count(psid string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.calls[psid]
}

func messengerBody(page string, msgs ...[2]string) []byte {
	var items []string
	for i, m := range msgs {
		items = append(items, fmt.Sprintf(`{"sender":{"id":%q},"recipient":{"id":%q},"timestamp":%d,"message":{"mid":%q,"text":"no puedo entrar al SAES"}}`,
			m[0], page, 1760000000000+i, m[1]))
	}
	return []byte(`{"object":"page","entry":[{"id":"` + page + `","time":1760000000000,"messaging":[` + strings.Join(items, ",") + `]}]}`)
}

func TestMessengerSenderNameFromGraphAPIIsCached(t *testing.T) {
	g := newGraphServer(t, appSecret)
	reg := prometheus.NewRegistry()
	prof, err := social.NewProfiles(social.ProfileOptions{PageAccessToken: pageToken, AppSecret: appSecret, GraphBase: g.URL + "/v21.0", Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	r := newRig(t, rigOptions{profiles: prof})
	post := func(body []byte) {
		t.Helper()
		if rr := r.do(t, http.MethodPost, "/webhooks/facebook", body, map[string]string{social.FacebookSignatureHeader: signFB(appSecret, body)}); rr.Code != http.StatusOK {
			t.Fatalf("%d %s", rr.Code, rr.Body)
		}
	}
	post(messengerBody("111", [2]string{"7001", "m_a"}, [2]string{"7001", "m_b"}, [2]string{"7002", "m_c"}, [2]string{"7999", "m_d"}))
	post(messengerBody("111", [2]string{"7001", "m_e"}, [2]string{"7999", "m_f"}))
	got := map[string]string{}
	for _, p := range r.inbound(t) {
		got[p.Req.Source.PlatformID] = p.Req.Requester.Name
		if h := p.Req.Requester.Handle; p.Req.Requester.Name != "" && (h == nil || *h != p.Req.Requester.Name) {
			t.Errorf("%s: handle %v, name %q", p.Req.Source.PlatformID, h, p.Req.Requester.Name)
		}
	}
	want := map[string]string{"m_a": "Patricia Ramírez López", "m_b": "Patricia Ramírez López", "m_c": "Luis Pérez", "m_d": "", "m_e": "Patricia Ramírez López", "m_f": ""}
	for id, name := range want {
		if n, ok := got[id]; !ok || n != name {
			t.Errorf("%s: name %q (published %v), want %q", id, n, ok, name)
		}
	}
	// One call per sender: the second delivery and the repeated sender come from the cache, and
	// so does the sender without a profile (a miss is cached too).
	for _, psid := range []string{"7001", "7002", "7999"} {
		if n := g.count(psid); n != 1 {
			t.Errorf("%s: %d Graph API calls, want 1", psid, n)
		}
	}
	if n := lookups(t, reg, "no_profile"); n != 1 {
		t.Errorf("no_profile lookups %v, want 1", n)
	}
}

func lookups(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if mf.GetName() == "caud_social_profile_lookups_total" && m.GetLabel()[0].GetValue() == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// TestGraphAPIDownDoesNotHoldTheMessage: a Graph API that does not answer costs the delivery at
// most the lookup timeout; the message is published without a name.
func TestGraphAPIDownDoesNotHoldTheMessage(t *testing.T) {
	g := newGraphServer(t, appSecret)
	block := make(chan struct{})
	g.mu.Lock()
	g.block = block
	g.mu.Unlock()
	defer close(block)
	prof, err := social.NewProfiles(social.ProfileOptions{PageAccessToken: pageToken, AppSecret: appSecret, GraphBase: g.URL + "/v21.0", Timeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	r := newRig(t, rigOptions{profiles: prof})
	body := messengerBody("111", [2]string{"7001", "m_slow"})
	if rr := r.do(t, http.MethodPost, "/webhooks/facebook", body, map[string]string{social.FacebookSignatureHeader: signFB(appSecret, body)}); rr.Code != http.StatusOK {
		t.Fatalf("%d %s", rr.Code, rr.Body)
	}
	pubs := r.inbound(t)
	if len(pubs) != 1 || pubs[0].Req.Requester.Name != "" || pubs[0].Req.Source.Social.SenderID != "7001" {
		t.Fatalf("published %+v", pubs)
	}
}

func TestProfilesWrongTokenIsAFailureNotAName(t *testing.T) {
	g := newGraphServer(t, appSecret)
	prof, err := social.NewProfiles(social.ProfileOptions{PageAccessToken: "wrong", AppSecret: appSecret, GraphBase: g.URL + "/v21.0"})
	if err != nil {
		t.Fatal(err)
	}
	if n := prof.Name(context.Background(), "7001"); n != "" {
		t.Fatalf("name %q with a bad token", n)
	}
	if _, err := social.NewProfiles(social.ProfileOptions{}); err == nil {
		t.Fatal("profiles without a token")
	}
}
