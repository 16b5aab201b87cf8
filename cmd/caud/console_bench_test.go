package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// BenchmarkConsoleSSEFanout connects 200 signed-in agents to the board's event stream and measures,
// for each change of a queue's depth, the time from the change being accepted (the desk request's
// 201) until every agent has received the new figures. Reported: the median and the worst of the
// per-change "last agent" latencies, in ms. The board is polled once a second (one read for all
// agents), so the figures include up to one poll interval.
func BenchmarkConsoleSSEFanout(b *testing.B) {
	const agents = 200
	_, base := consoleApp(b)
	a := newAgentClient(b, base)
	if resp, _ := a.signIn("ana", "contrasena-ana"); resp.StatusCode != http.StatusSeeOther {
		b.Fatalf("sign-in: %d", resp.StatusCode)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type seen struct {
		pending string
		at      time.Time
	}
	var mu sync.Mutex
	cond := sync.NewCond(&mu)
	latest := make([]seen, agents)
	var wg sync.WaitGroup
	tr := &http.Transport{MaxConnsPerHost: 0, MaxIdleConnsPerHost: agents}
	client := &http.Client{Transport: tr, Jar: a.c.Jar}
	for i := 0; i < agents; i++ {
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/tablero/eventos", nil)
		req.Header.Set("Accept", "text/event-stream")
		resp, err := client.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("agent %d: %v %v", i, err, resp)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer resp.Body.Close()
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				line, ok := strings.CutPrefix(sc.Text(), "data: ")
				if !ok {
					continue
				}
				// The sai queue's pending count is the first "pending" of the event.
				_, rest, _ := strings.Cut(line, `"pending":`)
				n, _, _ := strings.Cut(rest, ",")
				now := time.Now()
				mu.Lock()
				latest[i] = seen{n, now}
				cond.Broadcast()
				mu.Unlock()
			}
		}()
	}
	waitAll := func(pending string) time.Time {
		mu.Lock()
		defer mu.Unlock()
		for {
			last, all := time.Time{}, true
			for _, s := range latest {
				if s.pending != pending {
					all = false
					break
				}
				if s.at.After(last) {
					last = s.at
				}
			}
			if all {
				return last
			}
			cond.Wait()
		}
	}
	waitAll("0")
	var lat []float64
	b.ResetTimer()
	for n := 1; n <= b.N; n++ {
		t0 := time.Now()
		deskRequest(b, base, "No puedo entrar a mi correo institucional, me marca contraseña incorrecta")
		last := waitAll(fmt.Sprint(n))
		lat = append(lat, float64(last.Sub(t0).Microseconds())/1000)
	}
	b.StopTimer()
	sort.Float64s(lat)
	b.ReportMetric(lat[len(lat)/2], "ms-median-all-200")
	b.ReportMetric(lat[len(lat)-1], "ms-worst-all-200")
	cancel()
	wg.Wait()
}

// BenchmarkConsoleFirstPaint loads the board and the item view in headless Chromium on loopback and
// reports the browser's first-contentful-paint for each (performance.getEntriesByName), in ms.
func BenchmarkConsoleFirstPaint(b *testing.B) {
	app, base := consoleApp(b)
	_ = app
	br := newBrowser(b, base)
	signIn(br, "ana", "contrasena-ana", "Ana López")
	for i := 0; i < 3; i++ {
		deskRequest(b, base, "No puedo entrar a mi correo institucional, me marca contraseña incorrecta")
	}
	code, body := call(b, "POST", base+"/api/v1/queues/sai/claim", `{"agent":"ana"}`)
	for code == http.StatusNoContent {
		time.Sleep(20 * time.Millisecond)
		code, body = call(b, "POST", base+"/api/v1/queues/sai/claim", `{"agent":"ana"}`)
	}
	lease, _, _ := strings.Cut(strings.TrimPrefix(string(body), `{"lease":"`), `"`)
	fcp := `new Promise(function(ok){function f(){var e=performance.getEntriesByName("first-contentful-paint")[0];if(e){ok(e.startTime)}else{setTimeout(f,5)}}f()})`
	for _, pg := range []struct{ name, path string }{{"tablero", "/tablero"}, {"atencion", "/atencion/" + lease}} {
		b.Run(pg.name, func(b *testing.B) {
			var paints []float64
			for i := 0; i < b.N; i++ {
				var ms float64
				ctx, cancel := context.WithTimeout(br.ctx, 30*time.Second)
				err := chromedp.Do(ctx, chromedp.Navigate(base+pg.path), eval(fcp, &ms))
				cancel()
				if err != nil {
					b.Fatal(err)
				}
				paints = append(paints, ms)
			}
			sort.Float64s(paints)
			b.ReportMetric(paints[len(paints)/2], "ms-fcp-median")
			b.ReportMetric(paints[len(paints)*95/100], "ms-fcp-p95")
		})
	}
}
