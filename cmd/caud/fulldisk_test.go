package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ipn-cgsi/caud/channels/natsjs/natstest"
)

// The disk under the embedded store really runs full (a small tmpfs and a ballast file) while desk
// clients send requests: /readyz answers 503 with the kernel's reason, and once the ballast is gone
// caud restarts JetStream by itself, without a process restart. Clients that got 503 retry with
// their idempotency keys; every request is taken in and triaged exactly once.
func TestFullDiskAtTheDaemon(t *testing.T) {
	disk, ok := natstest.SmallDisk(t, 64<<20)
	if !ok {
		return
	}
	t.Setenv("CAU_NATS_EMBEDDED_STORE_DIR", filepath.Join(disk, "jetstream"))
	t.Setenv("CAU_NATS_EMBEDDED_RESUME_FREE", "4194304")
	app, base := startApp(t)
	body := keyedBody("disk")
	const before, during = 10, 6
	ids := submitKeyed(t, base, body, before)
	ballast := natstest.FillDisk(t, disk)
	// Desk clients send while the disk is full; their requests wait in caud (or get 503).
	var wg sync.WaitGroup
	codes, late := make([]int, during), make([]string, during)
	for i := range during {
		wg.Go(func() { codes[i], late[i] = submit(t, base, body(before+i)) })
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, b := call(t, "GET", base+"/readyz", "")
		if code == 503 && bytes.Contains(b, []byte("no space left on device")) {
			t.Logf("readyz on a full disk: %s", b)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz on a full disk: %d %s", code, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	for {
		if code, _ := call(t, "GET", base+"/readyz", ""); code == 200 {
			break
		}
		if time.Since(freed) > 30*time.Second {
			_, b := call(t, "GET", base+"/readyz", "")
			t.Fatalf("not ready after space returned: %s", b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	ready := time.Since(freed)
	wg.Wait()
	for i, code := range codes {
		switch code {
		case 201:
			ids[before+i] = late[i]
		case 503: // the client's wait ended before space returned: it retries with its key
			c, id := submit(t, base, body(before+i))
			if c != 201 && c != 200 {
				t.Fatalf("retry %d after space returned: %d", i, c)
			}
			ids[before+i] = id
		default:
			t.Fatalf("submit %d on a full disk: %d", i, code)
		}
	}
	expectEachOnce(t, app, base, ids)
	// The search index reads JetStream live (an ordered consumer and a bucket watch): it resumed
	// too, and finds a request taken in after the restart, queued.
	code, after := submit(t, base, body(99))
	if code != 201 {
		t.Fatalf("submit after recovery: %d", code)
	}
	waitQueued(t, base, after)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var r struct{ Requests []struct{ ID string } }
		code, b := call(t, "GET", base+"/api/v1/requests?state=queued&id="+after, "")
		if code == 200 && json.Unmarshal(b, &r) == nil && len(r.Requests) == 1 && r.Requests[0].ID == after {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("search after the restart: %d %s", code, b)
		}
	}
	t.Logf("daemon, full disk: %d requests (and one after), 0 lost, 0 doubled; ready %s after space returned; waiting clients answered %v", before+during, ready.Round(time.Millisecond), codes)
}
