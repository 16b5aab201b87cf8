package natsjs_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/channels/natsjs/natstest"
)

func newRequest(ids *channels.IDs, text string) *channels.Request {
	now := time.Now().UTC()
	return &channels.Request{ID: ids.New(now), Channel: channels.MediumPhone, ReceivedAt: now, Text: text}
}

func TestSinkPublishesWithHeadersOriginalAndIndex(t *testing.T) {
	env := natstest.Start(t, natsjs.Topology{})
	reg := prometheus.NewRegistry()
	sink := natsjs.NewSink(env.Handles, natsjs.SinkOptions{Registerer: reg})
	ctx := context.Background()
	ids := channels.NewIDs()
	req := newRequest(ids, "no puedo entrar a mi correo institucional")
	raw := []byte(`{"description":"no puedo entrar a mi correo institucional"}`)
	rec, err := sink.Publish(ctx, channels.Submission{Request: req, Subject: "desk", MsgID: "desk:k1", Source: "desk://phone", Original: raw, OriginalType: "application/json"})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Duplicate || rec.Stream != natsjs.StreamInbound || rec.Sequence != 1 {
		t.Fatalf("receipt = %+v", rec)
	}
	m, err := env.Inbound.GetMsg(ctx, rec.Sequence)
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != "cau.inbound.desk" {
		t.Errorf("subject = %q", m.Subject)
	}
	for k, want := range map[string]string{
		"ce-specversion": "1.0", "ce-id": req.ID, "ce-source": "desk://phone", "ce-type": natsjs.TypeRequest,
		"content-type": "application/json", jetstream.MsgIDHeader: "desk:k1",
	} {
		if got := m.Header.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	if _, err := time.Parse(time.RFC3339Nano, m.Header.Get("ce-time")); err != nil {
		t.Errorf("ce-time: %v", err)
	}
	var got channels.Request
	if err := json.Unmarshal(m.Data, &got); err != nil {
		t.Fatal(err)
	}
	if got.Original == nil || got.Original.Size != int64(len(raw)) || !strings.HasPrefix(got.Original.Object, "desk/") {
		t.Fatalf("original = %+v", got.Original)
	}
	stored, err := env.Originals.GetBytes(ctx, got.Original.Object)
	if err != nil || string(stored) != string(raw) {
		t.Fatalf("archived original = %q, %v", stored, err)
	}
	// The index says "received" until triage.
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, _, err := natsjs.GetState(ctx, env.Requests, req.ID)
		if err == nil {
			if st.State != natsjs.StateReceived || st.InboundSeq != 1 {
				t.Fatalf("state = %+v", st)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no index entry: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if v := testutil.ToFloat64(sink.Metrics().Published.WithLabelValues("desk")); v != 1 {
		t.Errorf("published metric = %v", v)
	}
}

func TestSinkSameMsgIDIsOneMessage(t *testing.T) {
	env := natstest.Start(t, natsjs.Topology{})
	sink := natsjs.NewSink(env.Handles, natsjs.SinkOptions{})
	ctx := context.Background()
	ids := channels.NewIDs()
	first, err := sink.Publish(ctx, channels.Submission{Request: newRequest(ids, "a"), Subject: "desk", MsgID: "same"})
	if err != nil {
		t.Fatal(err)
	}
	second, err := sink.Publish(ctx, channels.Submission{Request: newRequest(ids, "a"), Subject: "desk", MsgID: "same"})
	if err != nil {
		t.Fatal(err)
	}
	if !second.Duplicate || second.Sequence != first.Sequence {
		t.Fatalf("second = %+v, first = %+v", second, first)
	}
	info, err := env.Inbound.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Fatalf("stream holds %d messages, want 1", info.State.Msgs)
	}
}

func TestSinkRejectsInvalidAtOnce(t *testing.T) {
	env := natstest.Start(t, natsjs.Topology{})
	sink := natsjs.NewSink(env.Handles, natsjs.SinkOptions{})
	ids := channels.NewIDs()
	cases := map[string]channels.Submission{
		"no msg id":   {Request: newRequest(ids, "x"), Subject: "desk"},
		"bad subject": {Request: newRequest(ids, "x"), Subject: "desk.>", MsgID: "m"},
		"empty text":  {Request: newRequest(ids, " "), Subject: "desk", MsgID: "m2"},
		"nil request": {Subject: "desk", MsgID: "m3"},
	}
	for name, sub := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := sink.Publish(context.Background(), sub)
			if !errors.Is(err, channels.ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
		})
	}
}

// retries is a log handler that counts the sink's failed publish attempts.
type retries struct{ n atomic.Int64 }

func (r *retries) Enabled(context.Context, slog.Level) bool { return true }
func (r *retries) Handle(_ context.Context, rec slog.Record) error {
	if strings.HasPrefix(rec.Message, "publish attempt failed") {
		r.n.Add(1)
	}
	return nil
}
func (r *retries) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *retries) WithGroup(string) slog.Handler      { return r }

func TestSinkWaitsForJetStreamThenGivesUpWithContext(t *testing.T) {
	env := natstest.Start(t, natsjs.Topology{})
	failed := &retries{}
	sink := natsjs.NewSink(env.Handles, natsjs.SinkOptions{AttemptTimeout: 200 * time.Millisecond, Logger: slog.New(failed)})
	ctx := context.Background()
	// Take the stream away: publishes now have no responder; the sink retries until its deadline
	// and reports it, never success.
	if err := env.JS.DeleteStream(ctx, natsjs.StreamInbound); err != nil {
		t.Fatal(err)
	}
	ids := channels.NewIDs()
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, err := sink.Publish(pctx, channels.Submission{Request: newRequest(ids, "x"), Subject: "desk", MsgID: "m"})
	if !errors.Is(err, channels.ErrNotReady) {
		t.Fatalf("err = %v, want ErrNotReady", err)
	}
	// The stream comes back while a publish is retrying (it has failed an attempt): it succeeds.
	done := make(chan error, 1)
	before := failed.n.Load()
	go func() {
		_, err := sink.Publish(ctx, channels.Submission{Request: newRequest(ids, "y"), Subject: "desk", MsgID: "m2"})
		done <- err
	}()
	natstest.WaitFor(t, 20*time.Second, "the publish fails an attempt and retries", func() bool { return failed.n.Load() > before })
	if _, err := natsjs.EnsureTopology(ctx, env.JS, natsjs.Topology{}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("publish after recovery: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("publish did not recover")
	}
}

func TestEnsureTopologyIsIdempotent(t *testing.T) {
	env := natstest.Start(t, natsjs.Topology{})
	ctx := context.Background()
	for range 2 {
		if _, err := natsjs.EnsureTopology(ctx, env.JS, natsjs.Topology{Retention: 48 * time.Hour}); err != nil {
			t.Fatal(err)
		}
	}
	info, err := env.Inbound.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.MaxAge != 48*time.Hour || info.Config.Duplicates != 10*time.Minute || info.Config.Storage != jetstream.FileStorage {
		t.Fatalf("config = %+v", info.Config)
	}
}

// Originals of every size read back through the object-store library, digest verified, with their
// content type; archiving the same bytes again changes nothing.
func TestArchiveReadsBackThroughTheLibrary(t *testing.T) {
	env := natstest.Start(t, natsjs.Topology{})
	sink := natsjs.NewSink(env.Handles, natsjs.SinkOptions{})
	ctx := context.Background()
	for _, size := range []int{0, 1, 2048, 1 << 20, 3<<20 + 17} {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(i*7 + size)
		}
		ref, err := sink.Archive(ctx, "test", "application/pdf", strings.NewReader(string(data)))
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		got, err := env.Originals.GetBytes(ctx, ref.Object)
		if err != nil || string(got) != string(data) {
			t.Fatalf("size %d: read back %d bytes, %v", size, len(got), err)
		}
		info, err := env.Originals.GetInfo(ctx, ref.Object)
		if err != nil || info.Size != uint64(size) || info.Headers.Get("Content-Type") != "application/pdf" {
			t.Fatalf("size %d: info %+v %v", size, info, err)
		}
		again, err := sink.Archive(ctx, "test", "application/pdf", strings.NewReader(string(data)))
		if err != nil || *again != *ref {
			t.Fatalf("size %d: second archive %+v %v", size, again, err)
		}
	}
	st, err := env.JS.Stream(ctx, "OBJ_"+natsjs.ObjectOriginals)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := st.Info(ctx)
	// 5 objects: 5 meta messages, 0+1+1+1+4 chunks; the second archive of each wrote nothing.
	if info.State.Msgs != 5+7 {
		t.Fatalf("object store holds %d messages, want 12", info.State.Msgs)
	}
}

// A store dir that cannot be created, or a client port another process holds, fails the start at
// once with the operating system's error, not after a wait with a guess about the port.
func TestStartEmbeddedReportsTheRealError(t *testing.T) {
	file := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := natsjs.StartEmbedded(natsjs.EmbeddedOptions{StoreDir: filepath.Join(file, "jetstream")}, nil)
	if !errors.Is(err, syscall.ENOTDIR) || !strings.Contains(err.Error(), "store dir") {
		t.Fatalf("store dir under a file: %v", err)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	_, err = natsjs.StartEmbedded(natsjs.EmbeddedOptions{StoreDir: t.TempDir(), Listen: busy.Addr().String()}, nil)
	if !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), busy.Addr().String()) {
		t.Fatalf("port in use: %v", err)
	}
}
