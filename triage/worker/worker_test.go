package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/deadletter"
	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/channels/natsjs/natstest"
	"github.com/ipn-cgsi/caud/triage"
	"github.com/ipn-cgsi/caud/triage/worker"
)

func startWorker(t *testing.T, env *natstest.Env, o worker.Options) {
	t.Helper()
	if o.Decide == nil {
		eng := triage.NewEngine(triage.DefaultCatalog())
		o.Decide = eng.Decide
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	w, err := worker.New(context.Background(), env.Handles, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = w.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func publish(t *testing.T, env *natstest.Env, sink *natsjs.Sink, ids *channels.IDs, text string) string {
	t.Helper()
	now := time.Now().UTC()
	r := &channels.Request{ID: ids.New(now), Channel: channels.MediumPhone, ReceivedAt: now, Text: text}
	if _, err := sink.Publish(context.Background(), channels.Submission{Request: r, Subject: "desk", MsgID: "desk:" + r.ID, Source: "desk://phone"}); err != nil {
		t.Fatal(err)
	}
	return r.ID
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func subjectCount(t *testing.T, s jetstream.Stream, subject string) uint64 {
	t.Helper()
	info, err := s.Info(context.Background(), jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return n
}

func TestWorkerTriagesIntoOutcomeQueuesExactlyOnce(t *testing.T) {
	env := natstest.Start(t, natsjs.Topology{})
	sink := natsjs.NewSink(env.Handles, natsjs.SinkOptions{})
	ids := channels.NewIDs()
	texts := map[string]string{
		"Docente de ESCOM, ext. 52034: no puedo entrar a mi correo institucional": triage.OutcomeSAI,
		"ayuda por favor": triage.OutcomeAclaracion,
	}
	var want = map[string]string{}
	for text, outcome := range texts {
		for range 50 {
			want[publish(t, env, sink, ids, text)] = outcome
		}
	}
	startWorker(t, env, worker.Options{Batch: 16})
	waitFor(t, "100 triaged items", func() bool { return subjectCount(t, env.Triaged, "cau.triaged.>") >= 100 })
	ctx := context.Background()
	// Every request is indexed as queued in the queue of its outcome, with its triaged message.
	for id, outcome := range want {
		var st natsjs.RequestState
		waitFor(t, "index of "+id, func() bool {
			s, _, err := natsjs.GetState(ctx, env.Requests, id)
			st = s
			return err == nil && s.State == natsjs.StateQueued
		})
		if st.Queue != outcome {
			t.Fatalf("%s queued in %s, want %s", id, st.Queue, outcome)
		}
		m, err := env.Triaged.GetMsg(ctx, st.TriagedSeq)
		if err != nil {
			t.Fatal(err)
		}
		var item triage.Item
		if err := json.Unmarshal(m.Data, &item); err != nil {
			t.Fatal(err)
		}
		if item.Request.ID != id || item.Triage.Outcome != outcome || m.Subject != "cau.triaged."+outcome {
			t.Fatalf("item %s on %s: %+v", id, m.Subject, item.Triage)
		}
		if m.Header.Get("ce-type") != natsjs.TypeTriaged || m.Header.Get(jetstream.MsgIDHeader) != "triaged:"+id || m.Header.Get("ce-source") != "desk://phone" {
			t.Fatalf("headers %v", m.Header)
		}
	}
	if n := subjectCount(t, env.Triaged, "cau.triaged.>"); n != 100 {
		t.Fatalf("%d triaged items, want 100", n)
	}
	cons, _ := env.Inbound.Consumer(ctx, natsjs.ConsumerTriage)
	waitFor(t, "inputs acknowledged", func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.NumAckPending == 0 && info.NumPending == 0
	})
}

func TestWorkerDeadLettersUndecodableInputAtOnce(t *testing.T) {
	env := natstest.Start(t, natsjs.Topology{})
	startWorker(t, env, worker.Options{MaxDeliver: 3})
	m := nats.NewMsg("cau.inbound.desk")
	m.Data = []byte(`{"id":`)
	m.Header.Set(jetstream.MsgIDHeader, "broken-1")
	if _, err := env.JS.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "dead letter", func() bool { return subjectCount(t, env.DLQ, "cau.dlq.triage") == 1 })
	dl, err := env.DLQ.GetMsg(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if string(dl.Data) != `{"id":` || !strings.Contains(dl.Header.Get(deadletter.HeaderReason), "decode request") ||
		dl.Header.Get(deadletter.HeaderOrigSubject) != "cau.inbound.desk" || dl.Header.Get(deadletter.HeaderDeliveries) != "1" {
		t.Fatalf("dead letter %q headers %v", dl.Data, dl.Header)
	}
	if n := subjectCount(t, env.Triaged, "cau.triaged.>"); n != 0 {
		t.Fatalf("%d triaged from broken input", n)
	}
}

func TestWorkerRetriesThenDeadLettersWithReason(t *testing.T) {
	env := natstest.Start(t, natsjs.Topology{})
	sink := natsjs.NewSink(env.Handles, natsjs.SinkOptions{})
	ids := channels.NewIDs()
	id := publish(t, env, sink, ids, "esto hace fallar al motor")
	var calls atomic.Int32
	startWorker(t, env, worker.Options{MaxDeliver: 3, Decide: func(in triage.Input) triage.Triage {
		calls.Add(1)
		panic("catalog bug")
	}})
	waitFor(t, "dead letter", func() bool { return subjectCount(t, env.DLQ, "cau.dlq.triage") == 1 })
	if c := calls.Load(); c != 3 {
		t.Fatalf("engine called %d times, want MaxDeliver=3", c)
	}
	dl, _ := env.DLQ.GetMsg(context.Background(), 1)
	if !strings.Contains(dl.Header.Get(deadletter.HeaderReason), "catalog bug") {
		t.Fatalf("reason %q", dl.Header.Get(deadletter.HeaderReason))
	}
	waitFor(t, "dead state", func() bool {
		st, _, err := natsjs.GetState(context.Background(), env.Requests, id)
		return err == nil && st.State == natsjs.StateDead && strings.Contains(st.Reason, "catalog bug")
	})
}

func TestWorkerRecoversAfterTransientEngineFailure(t *testing.T) {
	env := natstest.Start(t, natsjs.Topology{})
	sink := natsjs.NewSink(env.Handles, natsjs.SinkOptions{})
	ids := channels.NewIDs()
	publish(t, env, sink, ids, "no hay internet en el laboratorio")
	eng := triage.NewEngine(triage.DefaultCatalog())
	var calls atomic.Int32
	startWorker(t, env, worker.Options{MaxDeliver: 5, Decide: func(in triage.Input) triage.Triage {
		if calls.Add(1) == 1 {
			panic(fmt.Sprintf("transient %d", calls.Load()))
		}
		return eng.Decide(in)
	}})
	waitFor(t, "triaged after retry", func() bool { return subjectCount(t, env.Triaged, "cau.triaged.>") == 1 })
	if n := subjectCount(t, env.DLQ, "cau.dlq.>"); n != 0 {
		t.Fatalf("%d dead letters", n)
	}
}

func TestFollowupGoesToTheQueueOfTheRequestItFollows(t *testing.T) {
	env := natstest.Start(t, natsjs.Topology{})
	sink := natsjs.NewSink(env.Handles, natsjs.SinkOptions{})
	ids := channels.NewIDs()
	ctx := context.Background()
	first := publish(t, env, sink, ids, "No puedo entrar a mi correo institucional, marca contraseña incorrecta")
	startWorker(t, env, worker.Options{})
	var firstState natsjs.RequestState
	waitFor(t, "first triaged", func() bool {
		st, _, err := natsjs.GetState(ctx, env.Requests, first)
		firstState = st
		return err == nil && st.State == natsjs.StateQueued
	})
	// "Sigue igual" alone would be aclaracion; as a reply it keeps the first request's triage.
	now := time.Now().UTC()
	r := &channels.Request{ID: ids.New(now), Channel: channels.MediumEmail, ReceivedAt: now, Text: "Sigue igual, favor de atender.",
		Thread: &channels.Thread{InReplyTo: "<a@ipn.mx>", FollowupOf: first}}
	if _, err := sink.Publish(ctx, channels.Submission{Request: r, Subject: "email.cau", MsgID: "email:" + r.ID}); err != nil {
		t.Fatal(err)
	}
	var st natsjs.RequestState
	waitFor(t, "follow-up triaged", func() bool {
		s, _, err := natsjs.GetState(ctx, env.Requests, r.ID)
		st = s
		return err == nil && s.State == natsjs.StateQueued
	})
	if st.Queue != firstState.Queue || st.Queue != triage.OutcomeSAI {
		t.Fatalf("follow-up in %s, first in %s", st.Queue, firstState.Queue)
	}
	m, _ := env.Triaged.GetMsg(ctx, st.TriagedSeq)
	var item triage.Item
	_ = json.Unmarshal(m.Data, &item)
	if item.Triage.By != "followup" || item.Triage.Service == nil || item.Triage.Service.Area != "CORREO" || !strings.Contains(item.Triage.Explanation, first) {
		t.Fatalf("follow-up triage %+v", item.Triage)
	}
}
