package social_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/social"
)

// TestShapesOtherThanDocumented posts deliveries (testdata/shapes) whose optional fields are
// missing or shaped otherwise than the platforms document, and checks that every message a person
// sent becomes exactly one request with its text, and that nothing else does.
func TestShapesOtherThanDocumented(t *testing.T) {
	type want struct {
		text, forUser string
		media         int
	}
	cases := []struct {
		file    string
		want    map[string]want // platform id → request
		ignored map[string]float64
	}{
		{"x-dm-no-for-user-id.json", map[string]want{"1850000000000000001": {text: "no me llega el correo de recuperación de contraseña", forUser: "1580000000000000001"}}, map[string]float64{"no_for_user_id": 1}},
		{"x-dm-both-directions-no-for-user-id.json", map[string]want{
			"1850000000000000002": {text: "¿ya revisaron lo del correo?", forUser: "1580000000000000001"},
			"1850000000000000004": {text: "sin red en la biblioteca de ESIME", forUser: "1580000000000000001"},
		}, map[string]float64{"own_dm": 1}},
		{"x-dm-media-array.json", map[string]want{"1850000000000000005": {text: "[photo] https://pbs.twimg.com/media/captura-error.jpg\n[media] http://pbs.twimg.com/media/segunda.jpg", forUser: "1580000000000000001", media: 2}}, nil},
		{"x-tweet-numeric-ids.json", map[string]want{"1850000000000000009": {text: "el SIGUE no abre desde la mañana", forUser: "1580000000000000001"}}, nil},
		{"fb-odd-types.json", map[string]want{"m_odd_1": {text: "12345", media: 1}}, nil},
		{"fb-attachments-only.json", map[string]want{
			"m_loc":  {text: "[location] geo:19.5,-99.14", media: 1},
			"m_like": {text: "👍"},
			"m_file": {text: "[file] https://cdn.example/oficio.pdf\n[fallback] Aviso https://ipn.mx/aviso", media: 2},
		}, nil},
		{"fb-repeated-and-unknown.json", map[string]want{"m_twice": {text: "no puedo imprimir"}}, map[string]float64{"unknown": 1, "echo": 1, "optin": 1, "postback": 1}},
	}
	// (m_twice is also counted as a duplicate: once per post inside the delivery, and once more when
	// the retry finds it published.)
	for _, c := range cases {
		t.Run(strings.TrimSuffix(c.file, ".json"), func(t *testing.T) {
			body, err := os.ReadFile(filepath.Join("testdata/shapes", c.file))
			if err != nil {
				t.Fatal(err)
			}
			r := newRig(t, rigOptions{})
			path, header, sig := "/webhooks/facebook", social.FacebookSignatureHeader, signFB(appSecret, body)
			platform := "facebook"
			if strings.HasPrefix(c.file, "x-") {
				path, header, sig, platform = "/webhooks/x", social.XSignatureHeader, signX(consumerSecret, body), "x"
			}
			for range 2 { // a retried delivery adds nothing
				if rr := r.do(t, http.MethodPost, path, body, map[string]string{header: sig}); rr.Code != http.StatusOK {
					t.Fatalf("%d %s", rr.Code, rr.Body)
				}
			}
			got := map[string]channels.Request{}
			for _, p := range r.inbound(t) {
				if _, dup := got[p.Req.Source.PlatformID]; dup {
					t.Errorf("%s published twice", p.Req.Source.PlatformID)
				}
				got[p.Req.Source.PlatformID] = p.Req
			}
			if len(got) != len(c.want) {
				t.Errorf("%d requests, want %d: %v", len(got), len(c.want), got)
			}
			for id, w := range c.want {
				req, ok := got[id]
				if !ok {
					t.Errorf("%s: not published", id)
					continue
				}
				soc := req.Source.Social
				if req.Text != w.text || soc.ForUserID != w.forUser || len(soc.Media) != w.media {
					t.Errorf("%s: text %q for_user %q media %v; want %q %q %d", id, req.Text, soc.ForUserID, soc.Media, w.text, w.forUser, w.media)
				}
				if err := req.Validate(); err != nil {
					t.Errorf("%s: %v", id, err)
				}
			}
			for reason, n := range c.ignored {
				// Both posts count: the parser sees the delivery twice.
				if got := value(t, r, "caud_social_ignored_total", platform, "reason", reason); got != 2*n {
					t.Errorf("ignored %s = %v, want %v", reason, got, 2*n)
				}
			}
		})
	}
}
