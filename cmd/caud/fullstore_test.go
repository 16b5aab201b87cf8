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
	body := keyedBody("full")
	const before, during = 10, 6
	ids := submitKeyed(t, base, body, before)
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
	expectEachOnce(t, app, base, ids)
	t.Logf("daemon, full store: %d requests, 0 lost, 0 doubled; ready %s after space returned", before+during, ready.Round(time.Millisecond))
}

// keyedBody returns the body of desk request i, with idempotency key prefix-i.
func keyedBody(prefix string) func(i int) string {
	return func(i int) string {
		return fmt.Sprintf(`{"channel":"phone","description":"No puedo entrar a mi correo institucional (%d)","idempotency_key":"%s-%d"}`, i, prefix, i)
	}
}

// submitKeyed sends requests 0…n-1 of body, each of which must be taken in (201), and returns
// their ids by number.
func submitKeyed(t *testing.T, base string, body func(int) string, n int) map[int]string {
	t.Helper()
	ids := map[int]string{}
	for i := range n {
		code, id := submit(t, base, body(i))
		if code != 201 {
			t.Fatalf("submit %d: %d", i, code)
		}
		ids[i] = id
	}
	return ids
}

// expectEachOnce waits until every request of ids is queued, and checks that CAU_INBOUND and
// CAU_TRIAGED hold one message for each: none lost, none doubled.
func expectEachOnce(t *testing.T, app *App, base string, ids map[int]string) {
	t.Helper()
	for _, id := range ids {
		waitQueued(t, base, id)
	}
	ctx := context.Background()
	in, err := app.h.Inbound.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := app.h.Triaged.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := uint64(len(ids)); in.State.Msgs != n || tr.State.Msgs != n {
		t.Fatalf("%d requests and %d triaged items for %d keys", in.State.Msgs, tr.State.Msgs, n)
	}
}
