package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The daemon with a small embedded store (nats.embedded.max_store) that fills up: desk clients get
// 503 and keep their idempotency keys, /readyz says 503 with JetStream's reason, and once space
// returns caud is ready again by itself and every request is taken in and queued exactly once.
func TestFullStoreAtTheDaemon(t *testing.T) {
	t.Setenv("CAU_NATS_EMBEDDED_MAX_STORE", "8388608")
	app, base := startApp(t)
	ctx := context.Background()
	body := func(i int) string {
		return fmt.Sprintf(`{"channel":"phone","description":"No puedo entrar a mi correo institucional (%d)","idempotency_key":"full-%d"}`, i, i)
	}
	const before, during = 10, 6
	ids := map[int]string{}
	for i := range before {
		code, id := submit(t, base, body(i))
		if code != 201 {
			t.Fatalf("submit %d: %d", i, code)
		}
		ids[i] = id
	}
	if _, err := app.h.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "FILLER", Subjects: []string{"filler"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte("x"), 256<<10)
	var refusal error
	for range 100 {
		if _, refusal = app.h.JS.Publish(ctx, "filler", chunk); refusal != nil {
			break
		}
	}
	var apiErr *jetstream.APIError
	if !errors.As(refusal, &apiErr) || apiErr.ErrorCode != 10023 {
		t.Fatalf("store did not fill up: %v", refusal)
	}
	// Desk clients meet the full store: 503, the request is not taken.
	var wg sync.WaitGroup
	codes := make([]int, during)
	for i := range during {
		wg.Go(func() { codes[i], _ = submit(t, base, body(before+i)) })
	}
	wg.Wait()
	for i, code := range codes {
		if code != 503 {
			t.Fatalf("submit into a full store %d: %d", i, code)
		}
	}
	if code, b := call(t, "GET", base+"/readyz", ""); code != 503 || !bytes.Contains(b, []byte("insufficient resources")) {
		t.Fatalf("readyz with a full store: %d %s", code, b)
	}
	// Space returns: ready again by itself, and the clients' retries with their keys go through.
	freed := time.Now()
	if err := app.h.JS.DeleteStream(ctx, "FILLER"); err != nil {
		t.Fatal(err)
	}
	for {
		if code, _ := call(t, "GET", base+"/readyz", ""); code == 200 {
			break
		}
		if time.Since(freed) > 30*time.Second {
			t.Fatal("not ready after space returned")
		}
		time.Sleep(50 * time.Millisecond)
	}
	ready := time.Since(freed)
	for i := range during {
		code, id := submit(t, base, body(before+i))
		if code != 201 && code != 200 {
			t.Fatalf("retry %d after space returned: %d", i, code)
		}
		ids[before+i] = id
	}
	for _, id := range ids {
		waitQueued(t, base, id)
	}
	in, err := app.h.Inbound.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := app.h.Triaged.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if in.State.Msgs != before+during || tr.State.Msgs != before+during {
		t.Fatalf("%d requests and %d triaged items for %d keys", in.State.Msgs, tr.State.Msgs, before+during)
	}
	t.Logf("daemon, full store: %d requests, 0 lost, 0 doubled; ready %s after space returned", before+during, ready.Round(time.Millisecond))
}
