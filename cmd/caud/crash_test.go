package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ipn-cgsi/caud/channels/natsjs"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

type daemon struct {
	t        *testing.T
	bin, dir string
	httpAddr string
	natsAddr string
	cmd      *exec.Cmd
	n        int
}

func (d *daemon) start() {
	d.t.Helper()
	d.n++
	logf, err := os.Create(filepath.Join(d.dir, fmt.Sprintf("caud-%d.log", d.n)))
	if err != nil {
		d.t.Fatal(err)
	}
	d.cmd = exec.Command(d.bin, "--data-dir", filepath.Join(d.dir, "data"), "--http-listen", d.httpAddr)
	// A short ack wait: deliveries the killed process held come back quickly.
	d.cmd.Env = append(os.Environ(), "CAU_NATS_EMBEDDED_LISTEN="+d.natsAddr, "CAU_TRIAGE_ACK_WAIT=3s")
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	t0 := time.Now()
	defer func() { d.t.Logf("start %d took %s", d.n, time.Since(t0)) }()
	if err := d.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + d.httpAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logf.Name())
			d.t.Fatalf("caud not ready: %v\n%s", err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (d *daemon) kill9() {
	_ = d.cmd.Process.Signal(syscall.SIGKILL)
	_ = d.cmd.Wait()
}

// A crash at any moment must neither lose a request that got a 2xx nor triage one twice: publishes
// are acknowledged before the answer, triaged items carry a Nats-Msg-Id derived from the request,
// and inputs are acknowledged only after their item was stored.
func TestKill9WhileSubmittingLosesAndDoublesNothing(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "caud")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	d := &daemon{t: t, bin: bin, dir: dir, httpAddr: freeAddr(t), natsAddr: freeAddr(t)}
	d.start()
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			d.kill9()
		}
	})

	var mu sync.Mutex
	accepted := map[string]string{} // request id -> idempotency key
	var stop atomic.Bool
	var failures atomic.Int64
	client := &http.Client{Timeout: 5 * time.Second}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for n := 0; !stop.Load(); n++ {
				key := fmt.Sprintf("crash-%d-%d", g, n)
				body := fmt.Sprintf(`{"channel":"phone","description":"No puedo entrar a mi correo institucional (%s)","idempotency_key":%q}`, key, key)
				resp, err := client.Post("http://"+d.httpAddr+"/api/v1/requests", "application/json", strings.NewReader(body))
				if err != nil {
					failures.Add(1)
					time.Sleep(20 * time.Millisecond)
					continue
				}
				var out struct{ ID string }
				_ = json.NewDecoder(resp.Body).Decode(&out)
				resp.Body.Close()
				if resp.StatusCode/100 == 2 {
					mu.Lock()
					accepted[out.ID] = key
					mu.Unlock()
				} else {
					failures.Add(1)
				}
			}
		})
	}
	// Each kill lands while requests are being accepted, the clients meet the dead daemon, and the
	// restarted one takes requests again.
	acceptedMore := func(n int) {
		t.Helper()
		mu.Lock()
		want := len(accepted) + n
		mu.Unlock()
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			mu.Lock()
			got := len(accepted)
			mu.Unlock()
			if got >= want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d requests accepted, waiting for %d", got, want)
			}
		}
	}
	for range 2 {
		acceptedMore(40)
		d.kill9()
		for f, deadline := failures.Load(), time.Now().Add(30*time.Second); failures.Load() == f; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("no client met the killed daemon")
			}
		}
		d.start()
	}
	acceptedMore(40)
	stop.Store(true)
	wg.Wait()
	if len(accepted) < 50 {
		t.Fatalf("only %d requests accepted; the load did not run", len(accepted))
	}
	t.Logf("load done at %s", time.Now().Format(time.StampMilli))
	t.Logf("%d requests accepted, %d failed calls during the crashes", len(accepted), failures.Load())

	token, err := os.ReadFile(filepath.Join(d.dir, "data", "nats.token"))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect("nats://"+d.natsAddr, nats.Token(strings.TrimSpace(string(token))))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cons, _ := js.Stream(ctx, natsjs.StreamInbound)
	// Wait until the triage consumer has nothing left, then count triaged items per request.
	tc, err := cons.Consumer(ctx, natsjs.ConsumerTriage)
	if err != nil {
		t.Fatal(err)
	}
	for {
		info, err := tc.Info(ctx)
		if err == nil && info.NumPending == 0 && info.NumAckPending == 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("triage did not catch up: %+v %v", info, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	triaged, err := js.Stream(ctx, natsjs.StreamTriaged)
	if err != nil {
		t.Fatal(err)
	}
	oc, err := triaged.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	info, _ := triaged.Info(ctx)
	count := map[string]int{}
	for range info.State.Msgs {
		m, err := oc.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		var item struct{ Request struct{ ID string } }
		if err := json.Unmarshal(m.Data(), &item); err != nil {
			t.Fatal(err)
		}
		count[item.Request.ID]++
	}
	for id, n := range count {
		if n != 1 {
			t.Errorf("request %s triaged %d times", id, n)
		}
	}
	for id, key := range accepted {
		if count[id] != 1 {
			t.Errorf("accepted request %s (key %s) triaged %d times", id, key, count[id])
		}
	}
	// And a clean stop: SIGTERM ends the process with status 0 within 5 s.
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- d.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("caud did not stop within 5 s of SIGTERM")
	}
}
