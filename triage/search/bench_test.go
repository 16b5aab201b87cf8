package search_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/channels/natsjs/natstest"
	"github.com/ipn-cgsi/caud/triage/search"
)

// benchRequests is the corpus size of BenchmarkSearch: CAU_SEARCH_BENCH_N, default 50,000.
func benchRequests() int {
	if n, err := strconv.Atoi(os.Getenv("CAU_SEARCH_BENCH_N")); err == nil && n > 0 {
		return n
	}
	return 50000
}

var (
	firstNames = []string{"José", "Ana", "María", "Luis", "Juan", "Guadalupe", "Carlos", "Fernanda", "Jorge", "Sofía", "Miguel", "Lucía"}
	lastNames  = []string{"López", "Hernández", "García", "Martínez", "Núñez", "Pérez", "Rodríguez", "Sánchez", "Ramírez", "Cruz", "Flores", "Gómez"}
	units      = []string{"ESCOM", "ESIME Zacatenco", "UPIITA", "CIC", "ESIA Zacatenco", "ENCB", "ESCA Tepepan", "CECyT 9", "DCyC", "UPIICSA"}
	mediums    = []string{"email", "email", "email", "memo", "facebook", "x", "phone", "in_person"}
	queues     = []string{"sai", "sai", "sai", "informativo", "aclaracion", "no_competente"}
)

// fill publishes n requests of realistic size (about 1 KiB of text each) over 90 days, with the
// states the pipeline would leave: most queued, a quarter done with a folio, some claimed.
func fill(b *testing.B, env *natstest.Env, n int) (sample []string) {
	b.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	gen := channels.NewIDs()
	start := time.Now().Add(-90 * 24 * time.Hour)
	step := 90 * 24 * time.Hour / time.Duration(n)
	text := strings.Repeat("El equipo de cómputo del laboratorio no enciende desde ayer y necesitamos apoyo. ", 13)
	var futs []jetstream.PubAckFuture
	flush := func() {
		for _, f := range futs {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				b.Fatal(err)
			}
		}
		futs = futs[:0]
	}
	for i := range n {
		at := start.Add(time.Duration(i) * step)
		name := firstNames[rng.IntN(len(firstNames))] + " " + lastNames[rng.IntN(len(lastNames))] + " " + lastNames[rng.IntN(len(lastNames))]
		r := channels.Request{ID: gen.New(at), Channel: mediums[rng.IntN(len(mediums))], ReceivedAt: at, Subject: "Solicitud " + strconv.Itoa(i), Text: text,
			Requester: channels.Requester{Name: name, Email: fmt.Sprintf("user%d@ipn.mx", rng.IntN(n/3+1)), Unit: units[rng.IntN(len(units))]}}
		if r.Channel == "x" || r.Channel == "facebook" {
			h := fmt.Sprintf("handle%d", rng.IntN(n/3+1))
			r.Requester.Handle = &h
		}
		body, _ := json.Marshal(r)
		m := nats.NewMsg(natsjs.SubjectInboundPrefix + "desk")
		m.Data = body
		m.Header.Set(jetstream.MsgIDHeader, r.ID)
		f, err := env.JS.PublishMsgAsync(m)
		if err != nil {
			b.Fatal(err)
		}
		st := natsjs.RequestState{State: natsjs.StateQueued, Queue: queues[rng.IntN(len(queues))], InboundSeq: uint64(i + 1)}
		switch p := rng.IntN(100); {
		case p < 25:
			st.State, st.Folio, st.Agent = natsjs.StateDone, fmt.Sprintf("SAI-%06d", i), "agente"
		case p < 30:
			st.State, st.Agent = natsjs.StateClaimed, "agente"
		}
		g, err := env.JS.PublishMsgAsync(natsjs.StateMsg(r.ID, st))
		if err != nil {
			b.Fatal(err)
		}
		futs = append(futs, f, g)
		if len(futs) >= 2000 {
			flush()
		}
		if i%(n/10+1) == 0 {
			sample = append(sample, r.ID)
		}
	}
	flush()
	return sample
}

// BenchmarkSearch measures, over CAU_SEARCH_BENCH_N requests in JetStream (default 50,000): the
// time and heap of building one replica's index from scratch (what a start or a new replica pays),
// then the latency of typical searches. Run:
//
//	go test -run XXX -bench BenchmarkSearch -benchtime 20x ./triage/search
func BenchmarkSearch(b *testing.B) {
	env := natstest.Start(b, natsjs.Topology{})
	n := benchRequests()
	sample := fill(b, env, n)

	var x *search.Index
	b.Run(fmt.Sprintf("build/%d", n), func(b *testing.B) {
		for range b.N {
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			idx := search.New(env.Handles, search.Options{})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); _ = idx.Run(ctx) }()
			<-idx.Ready()
			b.StopTimer()
			runtime.GC()
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(n), "heapB/request")
			if x == nil {
				x = idx
				b.Cleanup(func() { cancel(); <-done })
			} else {
				cancel()
				<-done
			}
			b.StartTimer()
		}
	})
	if x == nil {
		b.Skip("build not run")
	}
	queries := []struct{ name, q string }{
		{"newest-page", ""},
		{"state=queued&queue=sai", "state=queued&queue=sai"},
		{"id", "id=" + sample[len(sample)/2]},
		{"folio", "folio=SAI-" + fmt.Sprintf("%06d", n/2)},
		{"email", "email=user17@ipn.mx"},
		{"name=ana lop", "name=ana lop"},
		{"unit+range(7d)", "unit=ESCOM&from=" + time.Now().Add(-30*24*time.Hour).Format(time.RFC3339) + "&to=" + time.Now().Add(-23*24*time.Hour).Format(time.RFC3339)},
		{"q=impresora(no match: full scan)", "q=impresora"},
		{"q=zzzz(no match, one trigram)", "q=zzzz"},
		{"page5(state=done)", "state=done"},
	}
	for _, qq := range queries {
		b.Run("query/"+qq.name, func(b *testing.B) {
			v, _ := urlValues(qq.q)
			q, err := search.ParseQuery(v)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			if qq.name == "page5(state=done)" {
				for range 4 {
					r, _ := x.Search(ctx, q)
					q.Cursor = r.Next
				}
			}
			var hits int
			for range b.N {
				r, err := x.Search(ctx, q)
				if err != nil {
					b.Fatal(err)
				}
				hits = len(r.Requests)
			}
			b.ReportMetric(float64(hits), "hits")
		})
	}
}

func urlValues(q string) (map[string][]string, error) { return url.ParseQuery(q) }
