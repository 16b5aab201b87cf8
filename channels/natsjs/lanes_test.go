package natsjs_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/channels/natsjs/natstest"
)

// inboundIDs waits until CAU_INBOUND holds want messages (it sources the spare lane in the
// background) and returns the request ids it holds, in order.
func inboundIDs(t *testing.T, h *natsjs.Handles, want uint64) []string {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for {
		info, err := h.Inbound.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs >= want || time.Now().After(deadline) {
			var ids []string
			for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
				m, err := h.Inbound.GetMsg(ctx, seq)
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, m.Header.Get("ce-id"))
			}
			return ids
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A request CAU_INBOUND does not acknowledge goes to the spare lane, reaches CAU_INBOUND through
// the source with its subject and Nats-Msg-Id, and a later publish of it is a duplicate. A copy
// that landed in both lanes (the first ack lost, then the spare) is kept once.
func TestSinkFailsOverToTheSpareLane(t *testing.T) {
	env := natstest.Start(t, natsjs.Topology{Spare: natsjs.SpareOn})
	if env.Spare == nil {
		t.Fatal("no spare lane with Spare: SpareOn")
	}
	sink := natsjs.NewSink(env.Handles, natsjs.SinkOptions{FailoverAfter: 100 * time.Millisecond})
	ctx := context.Background()
	ids := channels.NewIDs()

	restore := natstest.Leaderless(t, env.JS, natsjs.StreamInbound)
	req := newRequest(ids, "no hay red en el laboratorio 2")
	rec, err := sink.Publish(ctx, channels.Submission{Request: req, Subject: "desk", MsgID: "desk:lane-1", Source: "desk://phone"})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Stream != natsjs.StreamInboundSpare || rec.Duplicate {
		t.Fatalf("receipt %+v, want the spare lane", rec)
	}
	restore()
	if got := inboundIDs(t, env.Handles, 1); !slices.Equal(got, []string{req.ID}) {
		t.Fatalf("CAU_INBOUND holds %v, want [%s]", got, req.ID)
	}
	m, err := env.Inbound.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != natsjs.SubjectInboundPrefix+"desk" || m.Header.Get(jetstream.MsgIDHeader) != "desk:lane-1" || !natsjs.FromSpare(m.Header) {
		t.Fatalf("sourced message: subject %q, headers %v", m.Subject, m.Header)
	}
	again, err := sink.Publish(ctx, channels.Submission{Request: req, Subject: "desk", MsgID: "desk:lane-1", Source: "desk://phone"})
	if err != nil || !again.Duplicate || again.Stream != natsjs.StreamInbound {
		t.Fatalf("republish: %+v, %v; want a duplicate on CAU_INBOUND", again, err)
	}
	kept, err := sink.Recall(ctx, again)
	if err != nil || kept.ID != req.ID {
		t.Fatalf("recall: %+v, %v", kept, err)
	}

	// Both lanes, the primary first: the spare's copy is dropped when sourced.
	both := newRequest(ids, "la impresora no imprime")
	for _, subject := range []string{natsjs.SubjectInboundPrefix + "desk", natsjs.SubjectSparePrefix + "desk"} {
		msg := nats.NewMsg(subject)
		msg.Data = []byte(`{"id":"` + both.ID + `"}`)
		msg.Header.Set("ce-id", both.ID)
		msg.Header.Set(jetstream.MsgIDHeader, "desk:lane-2")
		if _, err := env.JS.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	// A third request through the spare only, published last, proves the source has passed the
	// duplicate when CAU_INBOUND holds it.
	restore = natstest.Leaderless(t, env.JS, natsjs.StreamInbound)
	last := newRequest(ids, "no abre el sistema de nómina")
	if rec, err := sink.Publish(ctx, channels.Submission{Request: last, Subject: "desk", MsgID: "desk:lane-3", Source: "desk://phone"}); err != nil || rec.Stream != natsjs.StreamInboundSpare {
		t.Fatalf("third: %+v, %v", rec, err)
	}
	restore()
	want := []string{req.ID, both.ID, last.ID}
	if got := inboundIDs(t, env.Handles, 3); !slices.Equal(got, want) {
		t.Fatalf("CAU_INBOUND holds %v, want %v (each once)", got, want)
	}
}

// A store that refuses for lack of resources is not a lost leader: nothing goes to the spare.
func TestSinkKeepsAFullStoreOffTheSpare(t *testing.T) {
	env := natstest.Start(t, natsjs.Topology{Spare: natsjs.SpareOn})
	ctx := context.Background()
	s, err := env.JS.Stream(ctx, natsjs.StreamInbound)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.MaxMsgs, cfg.Discard = 1, jetstream.DiscardNew
	if _, err := env.JS.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	sink := natsjs.NewSink(env.Handles, natsjs.SinkOptions{FailoverAfter: 50 * time.Millisecond})
	ids := channels.NewIDs()
	if _, err := sink.Publish(ctx, channels.Submission{Request: newRequest(ids, "uno"), Subject: "desk", MsgID: "desk:full-1", Source: "desk://phone"}); err != nil {
		t.Fatal(err)
	}
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if rec, err := sink.Publish(pctx, channels.Submission{Request: newRequest(ids, "dos"), Subject: "desk", MsgID: "desk:full-2", Source: "desk://phone"}); err == nil {
		t.Fatalf("a full CAU_INBOUND accepted: %+v", rec)
	}
	info, err := env.Spare.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 0 {
		t.Fatalf("the spare lane holds %d messages of a full store", info.State.Msgs)
	}
}

// A single server has no spare lane unless asked, and an existing CAU_INBOUND gains the spare's
// source when the topology turns it on.
func TestSpareLaneOnlyOnAClusterOrWhenAsked(t *testing.T) {
	env := natstest.Start(t, natsjs.Topology{})
	if env.Spare != nil {
		t.Fatal("a single server got a spare lane")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	h, err := natsjs.EnsureTopology(ctx, env.JS, natsjs.Topology{Spare: natsjs.SpareOn})
	if err != nil {
		t.Fatal(err)
	}
	info, err := h.Inbound.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if h.Spare == nil || len(info.Config.Sources) != 1 || info.Config.Sources[0].Name != natsjs.StreamInboundSpare {
		t.Fatalf("spare %v, CAU_INBOUND sources %+v", h.Spare, info.Config.Sources)
	}
}
