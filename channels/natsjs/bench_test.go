package natsjs_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/channels/natsjs/natstest"
)

// The JetStream ceiling on this machine, for comparison with the stages built on it: 2 KB messages
// into the file-stored CAU_INBOUND with a Nats-Msg-Id each.
func BenchmarkJetStreamPublishSync2KB(b *testing.B) {
	env := natstest.Start(b, natsjs.Topology{})
	data := make([]byte, 2048)
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		if _, err := env.JS.Publish(ctx, "cau.inbound.desk", data, jetstream.WithMsgID(strconv.Itoa(i))); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
}

func BenchmarkJetStreamPublishAsync2KB(b *testing.B) {
	env := natstest.Start(b, natsjs.Topology{})
	data := make([]byte, 2048)
	b.ResetTimer()
	for i := range b.N {
		m := nats.NewMsg("cau.inbound.desk")
		m.Data = data
		m.Header.Set(jetstream.MsgIDHeader, strconv.Itoa(i))
		if _, err := env.JS.PublishMsgAsync(m); err != nil {
			b.Fatal(err)
		}
	}
	<-env.JS.PublishAsyncComplete()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
}

// BenchmarkSinkPublish is what every adapter pays per request: validation, the original archived in
// the object store, the publish acknowledged, the index entry.
func BenchmarkSinkPublish(b *testing.B) {
	env := natstest.Start(b, natsjs.Topology{})
	sink := natsjs.NewSink(env.Handles, natsjs.SinkOptions{})
	ids := channels.NewIDs()
	ctx := context.Background()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r := newRequest(ids, "no puedo entrar a mi correo institucional desde ayer")
			raw := []byte(`{"channel":"phone","description":"` + r.ID + `"}`)
			if _, err := sink.Publish(ctx, channels.Submission{Request: r, Subject: "desk", MsgID: "desk:" + r.ID, Original: raw}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}
