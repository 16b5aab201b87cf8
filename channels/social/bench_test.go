package social_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ipn-cgsi/caud/channels/social"
)

// BenchmarkFacebookDelivery is one signed single-message delivery, verified, parsed, archived and
// durably published, handler only (no HTTP transport); cmd/socialload measures over loopback.
func BenchmarkFacebookDelivery(b *testing.B) {
	r := newRig(b, rigOptions{})
	var n atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			body := []byte(fmt.Sprintf(`{"object":"page","entry":[{"id":"104532198765432","time":1760000183000,"messaging":[{"sender":{"id":"7000000000000003"},"recipient":{"id":"104532198765432"},"timestamp":1760000183000,"message":{"mid":"m_bench_%d","text":"no puedo entrar a mi correo institucional"}}]}]}`, i))
			req := httptest.NewRequest(http.MethodPost, "/webhooks/facebook", strings.NewReader(string(body)))
			req.Header.Set(social.FacebookSignatureHeader, signFB(appSecret, body))
			rr := httptest.NewRecorder()
			r.fb.ServeHTTP(rr, req)
			if rr.Code != http.StatusOK {
				b.Fatalf("%d %s", rr.Code, rr.Body)
			}
		}
	})
}

// BenchmarkParseX is the X parser alone on a fixture DM delivery.
func BenchmarkParseX(b *testing.B) {
	var body []byte
	for _, fx := range fixtures(b) {
		if fx.ID == "D035" {
			body = fx.Body
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := social.ParseX(body); err != nil {
			b.Fatal(err)
		}
	}
}
