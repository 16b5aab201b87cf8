package console

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// BenchmarkSSEFanout measures the board's fan-out alone: 200 agents hold the event stream open over
// loopback HTTP; each iteration publishes a new board and waits until all 200 have read it. Reported:
// median and worst time to the last agent, in ms. (End to end, a queue change also waits for the
// next poll of the depths, Options.PollInterval, default 1 s: see cmd/caud BenchmarkConsoleSSEFanout.)
func BenchmarkSSEFanout(b *testing.B) {
	const agents = 200
	h := newHub(func(context.Context) ([]byte, error) { return nil, nil }, time.Hour, slog.New(slog.DiscardHandler))
	c := &Console{hub: h}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { c.boardEvents(w, r, nil) }))
	defer srv.Close()
	h.publish([]byte(`{"n":0}`))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	cond := sync.NewCond(&mu)
	got := make([]string, agents)
	var wg sync.WaitGroup
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: agents}}
	for i := range agents {
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer resp.Body.Close()
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
					mu.Lock()
					got[i] = d
					cond.Broadcast()
					mu.Unlock()
				}
			}
		}()
	}
	wait := func(want string) {
		mu.Lock()
		defer mu.Unlock()
		for {
			all := true
			for _, g := range got {
				if g != want {
					all = false
					break
				}
			}
			if all {
				return
			}
			cond.Wait()
		}
	}
	wait(`{"n":0}`)
	var lat []float64
	b.ResetTimer()
	for n := 1; n <= b.N; n++ {
		want := fmt.Sprintf(`{"n":%d}`, n)
		t0 := time.Now()
		h.publish([]byte(want))
		wait(want)
		lat = append(lat, float64(time.Since(t0).Microseconds())/1000)
	}
	b.StopTimer()
	sort.Float64s(lat)
	b.ReportMetric(lat[len(lat)/2], "ms-median-all-200")
	b.ReportMetric(lat[len(lat)-1], "ms-worst-all-200")
	cancel()
	srv.CloseClientConnections()
	wg.Wait()
}
