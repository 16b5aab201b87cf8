package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/channels/natsjs/natstest"
	"github.com/ipn-cgsi/caud/triage"
	"github.com/ipn-cgsi/caud/triage/worker"
)

// syncBuffer is a log destination safe for the server's and the worker's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type running struct {
	w      *worker.Worker
	cancel context.CancelFunc
	done   chan struct{}
}

func run(t *testing.T, env *natstest.Env, o worker.Options) *running {
	t.Helper()
	eng := triage.NewEngine(triage.DefaultCatalog())
	o.Decide, o.Registerer = eng.Decide, prometheus.NewRegistry()
	w, err := worker.New(context.Background(), env.Handles, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{w: w, cancel: cancel, done: make(chan struct{})}
	go func() { _ = w.Run(ctx); close(r.done) }()
	t.Cleanup(func() { cancel(); <-r.done })
	return r
}

// TestFullStoreLosesAndDoublesNothing fills the embedded server's store (max_store) while requests
// wait in CAU_INBOUND: the worker must pause with the store's reason, keep every message across
// ack waits, a stop and a restart, and triage each exactly once by itself when space returns.
func TestFullStoreLosesAndDoublesNothing(t *testing.T) {
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	env := natstest.StartWith(t, natsjs.EmbeddedOptions{MaxStore: 8 << 20}, log, natsjs.Topology{})
	ctx := context.Background()
	sink := natsjs.NewSink(env.Handles, natsjs.SinkOptions{})
	ids := channels.NewIDs()
	const n = 300
	want := map[string]bool{}
	for i := range n {
		text := "No puedo entrar a mi correo institucional"
		if i%3 == 0 {
			text = "ayuda por favor"
		}
		want[publish(t, env, sink, ids, text)] = true
	}
	// Fill the store with another stream until JetStream refuses writes.
	if _, err := env.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "FILLER", Subjects: []string{"filler"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte("x"), 256<<10)
	var refusal error
	for range 100 {
		if _, refusal = env.JS.Publish(ctx, "filler", chunk); refusal != nil {
			break
		}
	}
	var apiErr *jetstream.APIError
	if !errors.As(refusal, &apiErr) || apiErr.ErrorCode != 10023 {
		t.Fatalf("store did not fill up: %v", refusal)
	}
	const ackWait = 2 * time.Second
	o := worker.Options{Workers: 2, Batch: 32, MaxDeliver: 2, AckWait: ackWait}
	first := run(t, env, o)
	var paused time.Time
	waitFor(t, "the worker to pause with the store's reason", func() bool {
		h := first.w.Health(context.Background())[0]
		paused = h.Since
		return !h.OK && strings.Contains(h.Detail, "insufficient resources")
	})
	// Held across two ack waits: nothing redelivered, nothing triaged, nothing dead-lettered, and
	// MaxDeliver (2) is long past if refusals counted as attempts.
	for time.Since(paused) < 2*ackWait {
		time.Sleep(100 * time.Millisecond)
	}
	if n := subjectCount(t, env.Triaged, "cau.triaged.>"); n != 0 {
		t.Fatalf("%d items triaged into a full store", n)
	}
	if info, err := env.DLQ.Info(ctx); err != nil || info.State.Msgs != 0 {
		t.Fatalf("dead letters while the store is full: %v %v", info.State.Msgs, err)
	}
	// The server's own complaint reaches caud's log.
	if !strings.Contains(logs.String(), "resource limits exceeded") {
		t.Errorf("server error not in the log:\n%s", logs.String())
	}
	// Stopping in this state is prompt, and hands the messages back.
	stopAt := time.Now()
	first.cancel()
	select {
	case <-first.done:
	case <-time.After(20 * time.Second):
		t.Fatal("stop with a full store did not return")
	}
	stopTook := time.Since(stopAt)
	// A restarted worker meets the full store too and pauses again.
	second := run(t, env, o)
	waitFor(t, "the restarted worker to pause", func() bool { return !second.w.Health(context.Background())[0].OK })
	// Space returns: the worker resumes by itself.
	freed := time.Now()
	if err := env.JS.DeleteStream(ctx, "FILLER"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the worker to resume", func() bool { return second.w.Health(context.Background())[0].OK })
	resumed := time.Since(freed)
	waitFor(t, "every request triaged", func() bool { return subjectCount(t, env.Triaged, "cau.triaged.>") >= n })
	allDone := time.Since(freed)
	// Exactly once each, and the index is truthful.
	seen := map[string]int{}
	info, err := env.Triaged.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := env.Triaged.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		var item triage.Item
		if err := json.Unmarshal(m.Data, &item); err != nil {
			t.Fatal(err)
		}
		seen[item.Request.ID]++
	}
	lost, doubled := 0, 0
	for id := range want {
		switch seen[id] {
		case 0:
			lost++
		case 1:
		default:
			doubled++
		}
	}
	if lost != 0 || doubled != 0 || len(seen) != n {
		t.Fatalf("%d lost, %d doubled, %d distinct of %d", lost, doubled, len(seen), n)
	}
	for id := range want {
		waitFor(t, "index of "+id, func() bool {
			st, _, err := natsjs.GetState(ctx, env.Requests, id)
			return err == nil && st.State == natsjs.StateQueued && st.TriagedSeq > 0
		})
	}
	t.Logf("full store: %d requests, 0 lost, 0 doubled; stop while paused %s; resumed %s and all triaged %s after space returned",
		n, stopTook.Round(time.Millisecond), resumed.Round(time.Millisecond), allDone.Round(time.Millisecond))
}
