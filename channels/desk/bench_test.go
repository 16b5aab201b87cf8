package desk_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// BenchmarkDeskIntake measures POST /api/v1/requests in-process through the real sink and JetStream,
// with an idempotency key per request (the path an agent's form takes).
func BenchmarkDeskIntake(b *testing.B) {
	d, _ := newDesk(b)
	var n atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			body := fmt.Sprintf(`{"channel":"phone","unit":"ESCOM","role":"docente","extension":"52034","description":"No puedo entrar a mi correo institucional","idempotency_key":"bench-%d"}`, i)
			rr := httptest.NewRecorder()
			d.ServeHTTP(rr, httptest.NewRequest(http.MethodPost, "/api/v1/requests", strings.NewReader(body)))
			if rr.Code != http.StatusCreated {
				b.Errorf("code %d: %s", rr.Code, rr.Body)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}
