package natsjs_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/channels/natsjs/natstest"
)

// The embedded server's disk really fills up (a small tmpfs and a ballast file) while requests
// arrive, twice: JetStream stops writing, the guard reports it with the kernel's reason, and once the
// ballast is gone it restarts JetStream in-process. Every request a source kept retrying is in
// CAU_INBOUND exactly once, a durable consumer resumes by itself and sees each one, and the buckets
// still hold what they held.
func TestEmbeddedStoreSurvivesAFullDisk(t *testing.T) {
	disk, ok := natstest.SmallDisk(t, 48<<20)
	if !ok {
		return
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	resumed := make(chan time.Duration, 4)
	guard := natsjs.NewStoreGuard(natsjs.StoreGuardOptions{
		ResumeFree: 4 << 20, Interval: 50 * time.Millisecond, Logger: log,
		OnResume: func(d time.Duration) { resumed <- d },
	})
	env := natstest.StartWith(t, natsjs.EmbeddedOptions{StoreDir: filepath.Join(disk, "store"), Guard: guard}, log, natsjs.Topology{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	go func() { _ = guard.Run(ctx) }()
	sink := natsjs.NewSink(env.Handles, natsjs.SinkOptions{Logger: log, MaxBackoff: 250 * time.Millisecond})

	// A durable reader, as the triage worker has one, that counts what it is given.
	cons, err := env.Inbound.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "reader", AckPolicy: jetstream.AckExplicitPolicy, AckWait: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string]int{}
	go func() {
		for ctx.Err() == nil {
			msgs, _ := natsjs.Fetch(cons, 50, 200*time.Millisecond)
			for _, m := range msgs {
				mu.Lock()
				seen[m.Headers().Get(jetstream.MsgIDHeader)]++
				mu.Unlock()
				_ = m.Ack()
			}
		}
	}()
	if _, err := env.Requests.Put(ctx, "probe.before", []byte("kept")); err != nil {
		t.Fatal(err)
	}

	ids := channels.NewIDs()
	publish := func(key string) error {
		req := newRequest(ids, "no puedo entrar a mi correo institucional "+key)
		_, err := sink.Publish(ctx, channels.Submission{Request: req, Subject: "desk", MsgID: "desk:" + key, Source: "desk://phone",
			Original: []byte(`{"description":"` + key + `"}`), OriginalType: "application/json"})
		return err
	}
	const perRound, rounds = 15, 2
	for i := range perRound {
		if err := publish(fmt.Sprintf("r0-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for round := 1; round <= rounds; round++ {
		ballast := natstest.FillDisk(t, disk)
		// Requests keep arriving on the full disk; each source retries until JetStream acks.
		var wg sync.WaitGroup
		errs := make([]error, perRound)
		for i := range perRound {
			wg.Go(func() { errs[i] = publish(fmt.Sprintf("r%d-%d", round, i)) })
		}
		natstest.WaitFor(t, 30*time.Second, "the guard reports the full disk", func() bool {
			h := guard.Health(ctx)[0]
			return !h.OK && strings.Contains(h.Detail, "no space left on device")
		})
		t.Logf("round %d, full disk: %s", round, guard.Health(ctx)[0].Detail)
		if err := os.Remove(ballast); err != nil {
			t.Fatal(err)
		}
		freed := time.Now()
		select {
		case d := <-resumed:
			t.Logf("round %d: JetStream writes again %s after space returned (%s after the guard saw it)", round, time.Since(freed).Round(time.Millisecond), d.Round(time.Millisecond))
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: JetStream not restarted after space returned: %+v", round, guard.Health(ctx))
		}
		wg.Wait()
		t.Logf("round %d: every waiting request acknowledged %s after space returned (an attempt in flight when the disk filled waits out its timeout)", round, time.Since(freed).Round(time.Millisecond))
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d: request %d: %v", round, i, err)
			}
		}
		if h := guard.Health(ctx)[0]; !h.OK {
			t.Fatalf("round %d: guard still reports %s", round, h.Detail)
		}
	}

	total := perRound * (rounds + 1)
	info, err := env.Inbound.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	distinct := map[string]bool{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := env.Inbound.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("message %d: %v", seq, err)
		}
		distinct[m.Header.Get(jetstream.MsgIDHeader)] = true
	}
	if info.State.Msgs != uint64(total) || len(distinct) != total {
		t.Fatalf("CAU_INBOUND holds %d messages with %d distinct ids for %d requests", info.State.Msgs, len(distinct), total)
	}
	natstest.WaitFor(t, 30*time.Second, "the reader sees every request", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == total
	})
	for id := range seen {
		if !distinct[id] {
			t.Fatalf("the reader got %q, which is not in the stream", id)
		}
	}
	if e, err := env.Requests.Get(ctx, "probe.before"); err != nil || string(e.Value()) != "kept" {
		t.Fatalf("bucket entry written before the full disk: %v", err)
	}
	if _, err := env.Requests.Put(ctx, "probe.after", []byte("written")); err != nil {
		t.Fatalf("bucket write after recovery: %v", err)
	}
}

// An external server (here one caud does not guard) whose disk fills: it never writes to a stream
// again by itself, so the write probe reports what the operator must do; once the server is
// restarted on its store, the same connection writes again and the probe says so.
func TestWriteProbeTellsTheOperatorToRestartAFullServer(t *testing.T) {
	disk, ok := natstest.SmallDisk(t, 32<<20)
	if !ok {
		return
	}
	eo := natsjs.EmbeddedOptions{Listen: "127.0.0.1:0", StoreDir: filepath.Join(disk, "store")}
	ns, err := natsjs.StartEmbedded(eo, nil)
	if err != nil {
		t.Fatal(err)
	}
	eo.Listen = ns.Addr().String() // the restarted server comes back where clients look for it
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nc, err := natsjs.Connect(ctx, natsjs.ConnectOptions{URLs: []string{ns.ClientURL()}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	h, err := natsjs.EnsureTopology(ctx, js, natsjs.Topology{})
	if err != nil {
		t.Fatal(err)
	}
	probe := natsjs.NewWriteProbe(natsjs.WriteProbeOptions{KV: h.State, Key: natsjs.ProbeKey("test"), Interval: 50 * time.Millisecond, Timeout: 500 * time.Millisecond})
	go func() { _ = probe.Run(ctx) }()
	natstest.WaitFor(t, 30*time.Second, "the probe writes", func() bool { return probe.Health(ctx)[0].OK })

	ballast := natstest.FillDisk(t, disk)
	natstest.WaitFor(t, 30*time.Second, "the probe reports the full disk", func() bool {
		h := probe.Health(ctx)[0]
		return !h.OK && strings.Contains(h.Detail, "restart that nats-server")
	})
	t.Logf("full disk: %s", probe.Health(ctx)[0].Detail)
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	// What the operator does: restart nats-server on the same store.
	ns.Shutdown()
	ns.WaitForShutdown()
	if ns, err = natsjs.StartEmbedded(eo, nil); err != nil {
		t.Fatal(err)
	}
	natstest.WaitFor(t, 30*time.Second, "the probe writes after the restart", func() bool { return probe.Health(ctx)[0].OK })
	if _, err := h.Requests.Put(ctx, "after.restart", []byte("x")); err != nil {
		t.Fatalf("write after the restart: %v", err)
	}
}
