package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/channels/natsjs/natscluster"
	"github.com/ipn-cgsi/caud/cmd/internal/clusterrig"
	"github.com/ipn-cgsi/caud/config"
)

// Tests on three clustered nats-server nodes (in-process, loopback, R3 streams) with several caud
// replicas: what only a cluster shows.

func startCluster(t *testing.T) *natscluster.Cluster {
	t.Helper()
	c, err := natscluster.Start(natscluster.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Shutdown)
	return c
}

// replica is one caud App on the cluster; dir is its own (config file and data dir).
type replica struct {
	t   *testing.T
	dir string
	app *App
}

func newReplica(t *testing.T, c *natscluster.Cluster, dir, imapAddr string) *replica {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	path, err := clusterrig.WriteReplicaConfig(dir, c, imapAddr, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load([]string{"--config", path})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	if os.Getenv("CAUD_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil)).With("replica", filepath.Base(dir))
	}
	r := &replica{t: t, dir: dir, app: NewApp(cfg, log)}
	t.Cleanup(func() { r.stop() })
	return r
}

func (r *replica) start(ctx context.Context) error { return r.app.Start(ctx) }

func (r *replica) base() string { return "http://" + r.app.Addr() }

func (r *replica) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.app.Stop(ctx); err != nil {
		r.t.Errorf("stop: %v", err)
	}
}

// crash ends the replica the way kill -9 would for the others: its NATS connection drops at once,
// nothing is released or drained. (Its goroutines are then stopped so the test process stays clean.)
func (r *replica) crash() {
	r.app.mu.Lock()
	nc := r.app.nc
	r.app.mu.Unlock()
	nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = r.app.Stop(ctx)
}

type readyz struct {
	Ready  bool
	Checks []Check
}

func getReadyz(base string) (int, readyz, error) {
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		return 0, readyz{}, err
	}
	defer resp.Body.Close()
	var rz readyz
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &rz)
	return resp.StatusCode, rz, nil
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func clusterJS(t *testing.T, c *natscluster.Cluster) jetstream.JetStream {
	t.Helper()
	nc, err := c.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// Three replicas started at the same moment on a fresh cluster all become ready (what
// `docker compose up` does).
func TestClusterReplicasStartedTogetherAllBecomeReady(t *testing.T) {
	c := startCluster(t)
	const n = 3
	reps := make([]*replica, n)
	for i := range reps {
		reps[i] = newReplica(t, c, "", "")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	errs := make([]error, n)
	t0 := time.Now()
	var wg sync.WaitGroup
	for i, r := range reps {
		wg.Go(func() { errs[i] = r.start(ctx) })
	}
	wg.Wait()
	t.Logf("%d replicas ready %s after a simultaneous start", n, time.Since(t0).Round(time.Millisecond))
	for i, r := range reps {
		if errs[i] != nil {
			t.Fatalf("replica %d: %v", i, errs[i])
		}
		code, rz, err := getReadyz(r.base())
		if err != nil || code != 200 || !rz.Ready {
			t.Errorf("replica %d /readyz: %d %+v %v", i, code, rz, err)
		}
	}
}

// With one node of three up there is no JetStream quorum: caud serves /healthz, says on /readyz
// why it waits (with the quorum hint), and finishes starting by itself once the nodes are back.
func TestClusterStartWaitsForQuorumAndSaysWhy(t *testing.T) {
	c := startCluster(t)
	c.Stop(1)
	c.Stop(2)
	r := newReplica(t, c, "", "")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	started := make(chan error, 1)
	go func() { started <- r.start(ctx) }()
	waitUntil(t, 30*time.Second, "the HTTP listener", func() bool { return r.app.Addr() != "" })
	if code, b := call(t, "GET", r.base()+"/healthz", ""); code != 200 {
		t.Fatalf("/healthz while waiting: %d %s", code, b)
	}
	var why string
	waitUntil(t, 30*time.Second, "/readyz to name the quorum", func() bool {
		code, rz, err := getReadyz(r.base())
		for _, ch := range rz.Checks {
			if ch.Name == "startup" {
				why = ch.Detail
			}
		}
		return err == nil && code == 503 && strings.Contains(why, "quorum")
	})
	t.Logf("/readyz while waiting: %s", why)
	if code, _ := call(t, "POST", r.base()+"/api/v1/requests", `{"channel":"phone","description":"x"}`); code != 503 {
		t.Errorf("intake while starting: %d, want 503", code)
	}
	select {
	case err := <-started:
		t.Fatalf("start returned without a quorum: %v", err)
	default:
	}
	for _, i := range []int{1, 2} {
		if err := c.Restart(i); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-started; err != nil {
		t.Fatalf("start after the quorum came back: %v", err)
	}
	if code, rz, _ := getReadyz(r.base()); code != 200 {
		t.Fatalf("/readyz after start: %d %+v", code, rz)
	}
}

// A NATS node killed under desk load: clients that retry with their idempotency key lose nothing
// and get nothing twice. The intake pause is logged (a figure, not an assertion).
func TestClusterNodeLossUnderLoadLosesAndDoublesNothing(t *testing.T) {
	c := startCluster(t)
	reps := []*replica{newReplica(t, c, "", ""), newReplica(t, c, "", "")}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for _, r := range reps {
		if err := r.start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	js := clusterJS(t, c)
	load := &clusterrig.DeskLoad{Clients: 8, Run: "nodeloss", Targets: func() []string { return []string{reps[0].base(), reps[1].base()} }}
	lctx, lcancel := context.WithCancel(ctx)
	wait := load.Start(lctx)
	waitUntil(t, 30*time.Second, "load running", func() bool { return load.Accepted() >= 50 })
	// Kill the node that leads CAU_INBOUND: the worst case for intake.
	s, err := js.Stream(ctx, natsjs.StreamInbound)
	if err != nil {
		t.Fatal(err)
	}
	leader := s.CachedInfo().Cluster.Leader
	killed := -1
	for i := range 3 {
		if n := c.Node(i); n != nil && n.Name() == leader {
			killed = i
		}
	}
	if killed < 0 {
		t.Fatalf("no node leads CAU_INBOUND (leader %q)", leader)
	}
	before := load.Accepted()
	at := time.Now()
	c.Stop(killed)
	waitUntil(t, 60*time.Second, "intake after the node loss", func() bool { return load.Accepted() >= before+200 })
	lcancel()
	wait()
	res := load.Result()
	t.Logf("node %s (CAU_INBOUND leader) stopped under load: intake pause %s, %d requests accepted in %s, %d failed attempts retried (statuses %v), slowest request %s",
		leader, res.PauseAfter(at).Round(time.Millisecond), len(res.Accepted), res.Duration.Round(time.Millisecond), res.Failures, res.Statuses, res.Slowest.Round(time.Millisecond))
	assertOneRequestPerKey(t, js, res.Accepted)
}

func assertOneRequestPerKey(t *testing.T, js jetstream.JetStream, accepted map[string]string) {
	t.Helper()
	// Requests the spare lane took reach CAU_INBOUND through its source: count until every
	// accepted key is there (or the deadline), then judge.
	// When the source consumer's server was the node lost, nats-server sets it up again after its
	// 10 s health check plus a backoff: 90 s bound that, as a failure bound only.
	t0 := time.Now()
	deadline := t0.Add(90 * time.Second)
	var desk map[string]int
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var err error
		desk, _, err = clusterrig.Count(ctx, js)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		missing := 0
		for key := range accepted {
			if desk[key] == 0 {
				missing++
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			t.Logf("every accepted key counted in CAU_INBOUND %s after the load (%d missing)", time.Since(t0).Round(time.Millisecond), missing)
			if missing > 0 {
				if s, err := js.Stream(context.Background(), natsjs.StreamInbound); err == nil {
					for _, src := range s.CachedInfo().Sources {
						t.Logf("CAU_INBOUND source %s: lag %d, active %s, error %v", src.Name, src.Lag, src.Active, src.Error)
					}
				}
			}
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for key := range accepted {
		if desk[key] != 1 {
			t.Errorf("key %s: %d requests on CAU_INBOUND, want 1", key, desk[key])
		}
	}
	for key, n := range desk {
		if _, ok := accepted[key]; !ok || n != 1 {
			t.Errorf("key %s: %d requests, accepted %v", key, n, ok)
		}
	}
}

// The mailbox lease on a cluster: the replica that works the mailbox crashes (no release), the
// standby takes over within the lease TTL and every mail becomes one request; the crashed replica
// comes back on its data dir as a standby; a clean stop hands over at once.
func TestClusterMailboxFailover(t *testing.T) {
	c := startCluster(t)
	srv, err := clusterrig.StartIMAP()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	dirs := []string{t.TempDir(), t.TempDir()}
	reps := []*replica{newReplica(t, c, dirs[0], srv.Addr), newReplica(t, c, dirs[1], srv.Addr)}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	for _, r := range reps {
		if err := r.start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	js := clusterJS(t, c)
	state, err := js.KeyValue(ctx, natsjs.KVState)
	if err != nil {
		t.Fatal(err)
	}
	changes, err := clusterrig.WatchLease(ctx, state, clusterrig.MailboxName)
	if err != nil {
		t.Fatal(err)
	}
	holderOf := func() int {
		e, err := state.Get(ctx, "imap."+clusterrig.MailboxName+".lease")
		if err != nil {
			return -1
		}
		var l struct{ Holder string }
		_ = json.Unmarshal(e.Value(), &l)
		for i, r := range reps {
			if r.app.instance.holder == l.Holder {
				return i
			}
		}
		return -1
	}
	waitUntil(t, 30*time.Second, "one replica working the mailbox", func() bool { return holderOf() >= 0 })
	h := holderOf()
	other := 1 - h
	mails := 0
	deliver := func(n int) {
		for range n {
			if err := srv.Append(clusterrig.Mail("failover", mails)); err != nil {
				t.Fatal(err)
			}
			mails++
		}
	}
	deliver(20)
	nextHolder := func(not string) LeaseChangeT {
		for ch := range changes {
			if ch.Holder != "" && ch.Holder != not {
				return LeaseChangeT(ch)
			}
		}
		t.Fatal("lease watch ended")
		return LeaseChangeT{}
	}
	crashedHolder := reps[h].app.instance.holder
	crashAt := time.Now()
	reps[h].crash()
	deliver(20)
	took := nextHolder(crashedHolder)
	if took.Holder != reps[other].app.instance.holder {
		t.Fatalf("lease went to %q, want the standby %q", took.Holder, reps[other].app.instance.holder)
	}
	t.Logf("mailbox takeover %s after the holder crashed (lease_ttl 3s)", took.At.Sub(crashAt).Round(time.Millisecond))

	// The crashed replica restarts on the same data dir: the lease is no longer its own (the
	// standby took it), so it stands by and says who works the mailbox.
	back := newReplica(t, c, dirs[h], srv.Addr)
	if err := back.start(ctx); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 30*time.Second, "the restarted replica standing by", func() bool {
		_, rz, _ := getReadyz(back.base())
		for _, ch := range rz.Checks {
			if strings.HasPrefix(ch.Name, "imap:") && strings.Contains(ch.Detail, "worked by "+took.Holder) {
				return true
			}
		}
		return false
	})
	// A clean stop of the holder hands the lease over at once (it is deleted on stop, the standby
	// watches the key).
	stopAt := time.Now()
	reps[other].stop()
	took = nextHolder(reps[other].app.instance.holder)
	if took.Holder != back.app.instance.holder {
		t.Fatalf("lease went to %q after the clean stop, want %q", took.Holder, back.app.instance.holder)
	}
	t.Logf("mailbox handover %s after a clean stop of the holder", took.At.Sub(stopAt).Round(time.Millisecond))
	deliver(10)
	waitUntil(t, 60*time.Second, fmt.Sprintf("%d mails ingested", mails), func() bool {
		_, mail, err := clusterrig.Count(ctx, js)
		return err == nil && len(mail) == mails
	})
	_, mail, err := clusterrig.Count(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	for id, n := range mail {
		if n != 1 {
			t.Errorf("mail %s: %d requests, want 1", id, n)
		}
	}
}

// LeaseChangeT is a local name for clusterrig.LeaseChange (keeps the helper signatures short).
type LeaseChangeT clusterrig.LeaseChange
