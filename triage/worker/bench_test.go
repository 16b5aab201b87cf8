package worker_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/channels/natsjs/natstest"
	"github.com/ipn-cgsi/caud/triage"
	"github.com/ipn-cgsi/caud/triage/worker"
)

// BenchmarkTriageThroughput measures the triage stage through a real embedded JetStream (file store):
// b.N requests wait in CAU_INBOUND, then the worker consumes, decides, publishes the triaged items
// and index entries, and acknowledges; the clock runs until the last item is stored.
func BenchmarkTriageThroughput(b *testing.B) {
	env := natstest.Start(b, natsjs.Topology{})
	ctx := context.Background()
	texts := []string{
		"Docente de ESCOM, ext. 52034: no puedo entrar a mi correo institucional",
		"Solicito el alta de una extensión telefónica para la oficina de la subdirección",
		"¿Cuándo sale la convocatoria de becas institucionales?",
		"ayuda por favor",
		"No hay internet en el laboratorio de cómputo 3 desde ayer, ya reiniciamos el switch y sigue igual",
	}
	ids := channels.NewIDs()
	for i := range b.N {
		now := time.Now().UTC()
		r := channels.Request{ID: ids.New(now), Channel: channels.MediumPhone, ReceivedAt: now, Text: texts[i%len(texts)],
			Requester: channels.Requester{Unit: "ESCOM", Role: "docente", Extension: "52034"}}
		body, _ := json.Marshal(r)
		m := nats.NewMsg("cau.inbound.desk")
		m.Data = body
		m.Header.Set(jetstream.MsgIDHeader, "desk:"+r.ID)
		if _, err := env.JS.PublishMsgAsync(m); err != nil {
			b.Fatal(err)
		}
	}
	<-env.JS.PublishAsyncComplete()
	eng := triage.NewEngine(triage.DefaultCatalog())
	w, err := worker.New(ctx, env.Handles, worker.Options{Decide: eng.Decide})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = w.Run(rctx); close(done) }()
	for {
		info, err := env.Triaged.Info(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if info.State.Msgs >= uint64(b.N) {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	cancel()
	<-done
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "triaged/s")
}
