package deadletter_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/deadletter"
	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/channels/natsjs/natstest"
	"github.com/ipn-cgsi/caud/triage"
	"github.com/ipn-cgsi/caud/triage/worker"
)

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

// An operator sees what failed and why, fixes the cause, and replays it: it is then triaged once.
func TestListAndReplayAfterTheCauseIsFixed(t *testing.T) {
	env := natstest.Start(t, natsjs.Topology{})
	ctx := context.Background()
	eng := triage.NewEngine(triage.DefaultCatalog())
	var broken atomic.Bool
	broken.Store(true)
	w, err := worker.New(ctx, env.Handles, worker.Options{MaxDeliver: 1, Registerer: prometheus.NewRegistry(), Decide: func(in triage.Input) triage.Triage {
		if broken.Load() {
			panic("catálogo dañado")
		}
		return eng.Decide(in)
	}})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = w.Run(rctx) }()

	sink := natsjs.NewSink(env.Handles, natsjs.SinkOptions{})
	now := time.Now().UTC()
	req := &channels.Request{ID: channels.NewIDs().New(now), Channel: "phone", ReceivedAt: now, Text: "no hay internet en la biblioteca"}
	if _, err := sink.Publish(ctx, channels.Submission{Request: req, Subject: "desk", MsgID: "desk:" + req.ID, Source: "desk://phone"}); err != nil {
		t.Fatal(err)
	}
	l := deadletter.New(env.Handles, nil)
	var letters []deadletter.Letter
	waitFor(t, "dead letter", func() bool {
		letters, err = l.List(ctx, 0, 10)
		return err == nil && len(letters) == 1
	})
	if d := letters[0]; d.Stage != "triage" || d.RequestID != req.ID || d.OriginalSubject != "cau.inbound.desk" || d.Reason == "" {
		t.Fatalf("letter %+v", d)
	}

	mux := http.NewServeMux()
	l.Register(mux, func(h http.Handler) http.Handler { return h })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/api/v1/deadletters")
	if err != nil {
		t.Fatal(err)
	}
	var body struct{ Deadletters []deadletter.Letter }
	_ = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if len(body.Deadletters) != 1 || body.Deadletters[0].Seq != letters[0].Seq {
		t.Fatalf("API list %+v", body)
	}

	broken.Store(false)
	resp, err = http.Post(srv.URL+"/api/v1/deadletters/"+itoa(letters[0].Seq)+"/replay", "application/json", nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("replay: %v %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	waitFor(t, "replayed request triaged", func() bool {
		st, _, err := natsjs.GetState(ctx, env.Requests, req.ID)
		return err == nil && st.State == natsjs.StateQueued
	})
	if left, _ := l.List(ctx, 0, 10); len(left) != 0 {
		t.Fatalf("dead letter still listed: %+v", left)
	}
	if _, err := l.Replay(ctx, letters[0].Seq); !errors.Is(err, deadletter.ErrNotFound) {
		t.Fatalf("second replay: %v", err)
	}
	// A letter that did not come from CAU_INBOUND is refused.
	m := nats.NewMsg("cau.dlq.imap")
	m.Data = []byte("raw mail")
	m.Header.Set(deadletter.HeaderOrigSubject, "imap://cau@ipn.mx/INBOX")
	ack, err := env.JS.PublishMsg(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Replay(ctx, ack.Sequence); !errors.Is(err, deadletter.ErrNotReplayable) {
		t.Fatalf("imap letter replay: %v", err)
	}
}

func itoa(n uint64) string { b, _ := json.Marshal(n); return string(b) }
