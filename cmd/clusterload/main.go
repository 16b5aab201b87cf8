// Command clusterload measures caud on a three-node JetStream cluster (R3 streams) on this machine,
// the figures of issue 13's "Done means": N replicas started at the same moment, desk idempotency
// keys raced on two replicas, the node leading each intake raft group killed (SIGKILL) in turn
// under desk load, and mailbox takeover after kill -9 of the holder, after a clean stop of the
// holder, and after a restart of a single caud (clean, and kill -9).
//
// The nodes are real nats-server processes built from the module caud already depends on (or
// --nats-server PATH), configured like the compose cluster (accounts, route credentials); caud
// runs as separate processes of the binary built from ./cmd/caud (or --caud PATH); the IMAP server
// is in memory. Everything listens on 127.0.0.1. Run it from the repository root:
//
//	go run ./cmd/clusterload                     # defaults: 4 replicas, 400 raced keys, 3 kills
//	go run ./cmd/clusterload --replicas 2 --kills 5 --lease-ttl 8s --keep
//	go run ./cmd/clusterload --steps nodeloss    # only the node kills (the replicas start first)
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/channels/natsjs/natscluster"
	"github.com/ipn-cgsi/caud/cmd/internal/clusterrig"
	"github.com/ipn-cgsi/caud/cmd/internal/loadtest"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

type options struct {
	replicas, keys, kills, clients int
	leaseTTL                       time.Duration
	load                           time.Duration
	caud, natsServer, dir          string
	keep                           bool
	steps                          string
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("clusterload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.IntVar(&o.replicas, "replicas", 4, "caud replicas started at the same moment")
	fs.IntVar(&o.keys, "keys", 400, "desk idempotency keys, each posted to two replicas at the same moment")
	fs.IntVar(&o.kills, "kills", 3, "kill -9 rounds of the mailbox holder")
	fs.IntVar(&o.clients, "clients", 8, "desk clients during the node loss")
	fs.DurationVar(&o.leaseTTL, "lease-ttl", 8*time.Second, "imap.lease_ttl of the replicas")
	fs.DurationVar(&o.load, "load", 12*time.Second, "desk load duration around the node kill")
	fs.StringVar(&o.caud, "caud", "", "caud binary (default: go build ./cmd/caud)")
	fs.StringVar(&o.natsServer, "nats-server", "", "nats-server binary (default: go build github.com/nats-io/nats-server/v2)")
	fs.StringVar(&o.dir, "dir", "", "work directory (default: a new temporary one)")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (logs, stores)")
	fs.StringVar(&o.steps, "steps", "raced,nodeloss,takeover,handover,restart", "steps to run after the simultaneous start, comma-separated")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	h, err := newHarness(o, stdout)
	if err != nil {
		fmt.Fprintln(stderr, "clusterload:", err)
		return 1
	}
	defer h.close()
	if err := h.all(); err != nil {
		fmt.Fprintln(stderr, "clusterload:", err)
		return 1
	}
	return 0
}

type harness struct {
	o       options
	out     io.Writer
	dir     string
	cluster *natscluster.Cluster
	imap    *clusterrig.IMAP
	nc      *nats.Conn
	js      jetstream.JetStream
	reps    []*proc
	failed  bool

	arrivals sync.Map // Message-ID → time.Time its request was published
	triaged  sync.Map // desk idempotency key → time.Time its triaged item was published
	mails    int
}

// proc is one caud process with its own directory (config, data dir, log).
type proc struct {
	i    int
	dir  string
	http string
	cmd  *exec.Cmd
	done chan error
}

func newHarness(o options, out io.Writer) (*harness, error) {
	h := &harness{o: o, out: out, dir: o.dir}
	if h.dir == "" {
		d, err := os.MkdirTemp("", "clusterload-")
		if err != nil {
			return nil, err
		}
		h.dir = d
	}
	var err error
	if o.caud == "" {
		if h.o.caud, err = build(h.dir, "caud", "./cmd/caud"); err != nil {
			return nil, err
		}
	}
	if o.natsServer == "" {
		if h.o.natsServer, err = build(h.dir, "nats-server", "github.com/nats-io/nats-server/v2"); err != nil {
			return nil, err
		}
	}
	h.printf("work directory %s; caud %s; nats-server %s", h.dir, h.o.caud, h.o.natsServer)
	if h.cluster, err = natscluster.Start(natscluster.Options{Dir: filepath.Join(h.dir, "nats"), Exec: h.o.natsServer}); err != nil {
		return nil, err
	}
	for _, u := range h.cluster.URLs() {
		if err := loadtest.LoopbackURL(strings.Replace(u, "nats://", "http://", 1)); err != nil {
			return nil, err
		}
	}
	if h.imap, err = clusterrig.StartIMAP(); err != nil {
		return nil, err
	}
	if h.nc, err = h.cluster.Connect(); err != nil {
		return nil, err
	}
	if h.js, err = jetstream.New(h.nc); err != nil {
		return nil, err
	}
	// Arrival time of each mail's request, by Message-ID (a core subscription sees every publish).
	if _, err := h.nc.Subscribe(natsjs.SubjectInboundPrefix+"email.>", func(m *nats.Msg) {
		var r channels.Request
		if json.Unmarshal(m.Data, &r) == nil && r.Source.MessageID != "" {
			h.arrivals.LoadOrStore(r.Source.MessageID, time.Now())
		}
	}); err != nil {
		return nil, err
	}
	if _, err := h.nc.Subscribe(natsjs.SubjectTriagedPrefix+">", func(m *nats.Msg) {
		var item struct{ Request channels.Request }
		if json.Unmarshal(m.Data, &item) == nil && item.Request.Source.IdempotencyKey != "" {
			h.triaged.LoadOrStore(item.Request.Source.IdempotencyKey, time.Now())
		}
	}); err != nil {
		return nil, err
	}
	return h, nil
}

func build(dir, name, pkg string) (string, error) {
	out := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build %s: %w", pkg, err)
	}
	return out, nil
}

func (h *harness) printf(format string, a ...any) {
	fmt.Fprintf(h.out, "%s  %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, a...))
}

func (h *harness) close() {
	for _, p := range h.reps {
		p.signal(syscall.SIGTERM)
	}
	if h.nc != nil {
		h.nc.Close()
	}
	if h.imap != nil {
		h.imap.Close()
	}
	if h.cluster != nil {
		h.cluster.Shutdown()
	}
	if !h.o.keep {
		_ = os.RemoveAll(h.dir)
	} else {
		fmt.Fprintln(h.out, "kept", h.dir)
	}
}

func (h *harness) all() error {
	if err := h.simultaneousStart(); err != nil {
		return err
	}
	steps := map[string]func() error{"raced": h.racedKeys, "nodeloss": h.nodeLoss, "takeover": h.takeoverAfterKill, "handover": h.handoverAfterStop, "restart": h.singleRestart}
	for _, name := range strings.Split(h.o.steps, ",") {
		step, ok := steps[strings.TrimSpace(name)]
		if !ok {
			return fmt.Errorf("unknown step %q (raced, nodeloss, takeover, handover, restart)", name)
		}
		if err := step(); err != nil {
			return err
		}
	}
	if h.failed {
		return errors.New("some checks failed (see above)")
	}
	h.printf("done")
	return nil
}

func (h *harness) check(ok bool, format string, a ...any) {
	if !ok {
		h.failed = true
		h.printf("FAIL: "+format, a...)
	}
}

// newProc prepares replica i (its directory and config); start runs it.
func (h *harness) newProc(i int) (*proc, error) {
	dir := filepath.Join(h.dir, fmt.Sprintf("caud-%d", i))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if _, err := clusterrig.WriteReplicaConfig(dir, h.cluster, h.imap.Addr, h.o.leaseTTL); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return &proc{i: i, dir: dir, http: addr}, nil
}

func (p *proc) start() error {
	logf, err := os.OpenFile(filepath.Join(p.dir, "caud.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	p.cmd = exec.Command(binary, "--config", filepath.Join(p.dir, "caud.yaml"), "--http-listen", p.http, "--log-level", "info")
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	p.done = make(chan error, 1)
	go func() { p.done <- p.cmd.Wait(); logf.Close() }()
	return nil
}

// binary is the caud binary processes run (set once by all).
var binary string

func (p *proc) signal(sig syscall.Signal) {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	p.cmd = nil
}

func (p *proc) exited() bool {
	select {
	case err := <-p.done:
		p.done <- err
		return true
	default:
		return false
	}
}

func (p *proc) base() string { return "http://" + p.http }

func (p *proc) ready() bool {
	resp, err := http.Get(p.base() + "/readyz")
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == 200
}

func (p *proc) holder() string {
	b, err := os.ReadFile(filepath.Join(p.dir, "data", "instance.id"))
	if err != nil {
		return ""
	}
	host, _ := os.Hostname()
	if host == "" {
		host = "caud"
	}
	return host + "/" + strings.TrimSpace(string(b))
}

func waitFor(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// simultaneousStart starts every replica at the same moment on the fresh cluster.
func (h *harness) simultaneousStart() error {
	binary = h.o.caud
	for i := range h.o.replicas {
		p, err := h.newProc(i)
		if err != nil {
			return err
		}
		h.reps = append(h.reps, p)
	}
	t0 := time.Now()
	for _, p := range h.reps {
		if err := p.start(); err != nil {
			return err
		}
	}
	readyAt := make([]time.Duration, len(h.reps))
	ok := waitFor(3*time.Minute, func() bool {
		all, alive := true, 0
		for i, p := range h.reps {
			if readyAt[i] == 0 && p.ready() {
				readyAt[i] = time.Since(t0)
			}
			all = all && readyAt[i] != 0
			if !p.exited() {
				alive++
			}
		}
		return all || alive == 0
	})
	exits := 0
	for _, p := range h.reps {
		if p.exited() {
			exits++
		}
	}
	h.printf("SIMULTANEOUS START: %d replicas on a fresh R3 cluster: ready after %v; processes that exited: %d", len(h.reps), roundAll(readyAt), exits)
	if !ok || exits > 0 {
		return fmt.Errorf("not every replica became ready (%d exited; see %s/caud-*/caud.log)", exits, h.dir)
	}
	return nil
}

func roundAll(d []time.Duration) []time.Duration {
	out := make([]time.Duration, len(d))
	for i, x := range d {
		out[i] = x.Round(10 * time.Millisecond)
	}
	return out
}

// racedKeys posts each idempotency key to two replicas at the same moment.
func (h *harness) racedKeys() error {
	a, b := h.reps[0], h.reps[len(h.reps)-1]
	statuses := map[int]int{}
	var mu sync.Mutex
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	cl := &http.Client{Timeout: 30 * time.Second}
	t0 := time.Now()
	for k := range h.o.keys {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			key := fmt.Sprintf("raced-%d", k)
			body, _ := json.Marshal(map[string]string{"channel": "phone", "description": "Se cayó la red del laboratorio 3 (" + key + ")", "idempotency_key": key})
			start := make(chan struct{})
			var inner sync.WaitGroup
			for _, p := range []*proc{a, b} {
				inner.Go(func() {
					<-start
					code := 0
					if resp, err := cl.Post(p.base()+"/api/v1/requests", "application/json", bytes.NewReader(body)); err == nil {
						code = resp.StatusCode
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
					mu.Lock()
					statuses[code]++
					mu.Unlock()
				})
			}
			close(start)
			inner.Wait()
		})
	}
	wg.Wait()
	elapsed := time.Since(t0)
	desk := h.countDesk()
	var one, none, more int
	for k := range h.o.keys {
		switch n := desk[fmt.Sprintf("raced-%d", k)]; {
		case n == 1:
			one++
		case n == 0:
			none++
		default:
			more++
		}
	}
	fivexx := 0
	for code, n := range statuses {
		if code >= 500 || code == 0 {
			fivexx += n
		}
	}
	h.printf("RACED DESK KEYS: %d keys, each posted to 2 replicas at once, in %s: answers %v (5xx or none: %d); requests per key: exactly 1 for %d, none for %d, more than 1 for %d",
		h.o.keys, elapsed.Round(time.Millisecond), statuses, fivexx, one, none, more)
	h.check(one == h.o.keys, "raced keys did not give exactly one request each")
	h.check(fivexx == 0, "raced keys answered 5xx")
	return nil
}

func (h *harness) countDesk() map[string]int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	desk, _, err := clusterrig.Count(ctx, h.js)
	if err != nil {
		h.check(false, "count CAU_INBOUND: %v", err)
	}
	return desk
}

// nodeLoss takes a node away under desk load, then brings it back: SIGKILL of the node leading
// each raft group intake writes to, in turn (CAU_INBOUND, its spare lane CAU_INBOUND_SPARE, KV
// cau_requests of the desk's idempotency records: each must elect a new leader, which nats-server
// does only after its 4-9 s election timeout), then SIGTERM of CAU_INBOUND's leader (nats-server
// hands its leaderships over first). Before each kill it waits until caud has the groups' leaders
// on different servers. A caud without the spare lane (an older binary through --caud) gets the
// kills of the groups it has.
func (h *harness) nodeLoss() error {
	spare := h.hasStream(natsjs.StreamInboundSpare)
	type round struct{ sig, group string }
	var rounds []round
	for _, g := range natsjs.LeaderGroups {
		if g != natsjs.StreamInboundSpare || spare {
			rounds = append(rounds, round{"SIGKILL", g})
		}
	}
	rounds = append(rounds, round{"SIGTERM", natsjs.StreamInbound})
	for _, v := range rounds {
		targets := func() []string {
			var out []string
			for _, p := range h.reps {
				out = append(out, p.base())
			}
			return out
		}
		if spare {
			t0 := time.Now()
			leaders, ok := h.leadersApart(time.Minute)
			h.printf("leaders apart after %s: %v", time.Since(t0).Round(time.Millisecond), leaders)
			h.check(ok, "the intake groups' leaders were not on different servers within a minute")
		}
		load := &clusterrig.DeskLoad{Clients: h.o.clients, Run: "nodeloss-" + v.sig + "-" + v.group, Targets: targets}
		ctx, cancel := context.WithCancel(context.Background())
		wait := load.Start(ctx)
		time.Sleep(h.o.load / 4)
		leader, err := h.leader(v.group)
		if err != nil {
			cancel()
			wait()
			return err
		}
		idx := h.cluster.Index(leader)
		at := time.Now()
		if v.sig == "SIGKILL" {
			h.cluster.Kill(idx)
		} else {
			h.cluster.Stop(idx)
		}
		time.Sleep(h.o.load * 3 / 4)
		cancel()
		wait()
		res := load.Result()
		if err := h.cluster.Restart(idx); err != nil {
			return err
		}
		lost, doubled, tLost, tDoubled := h.countAccepted(res.Accepted)
		lag, late := h.triageLag(res.AcceptedAt)
		fivexx := 0
		for code, n := range res.Statuses {
			if code >= 500 || code == 0 {
				fivexx += n
			}
		}
		h.printf("NODE LOSS (%s of n%d, leader of %s) under desk load of %d clients retrying with their key: intake pause %s (longest gap between accepted requests after the kill); slowest request %s; %d accepted in %s; answers %v (5xx or none: %d, each retried); in CAU_INBOUND lost %d, doubled %d; triaged lost %d, doubled %d; triage lag (accepted to triaged item) at most %s, %d requests over 3 s",
			v.sig, idx+1, v.group, h.o.clients, res.PauseAfter(at).Round(time.Millisecond), res.Slowest.Round(time.Millisecond), len(res.Accepted), res.Duration.Round(time.Millisecond), res.Statuses, fivexx, lost, doubled, tLost, tDoubled, lag.Round(time.Millisecond), late)
		h.check(lost == 0 && doubled == 0 && tLost == 0 && tDoubled == 0, "node loss lost or doubled requests")
		// Let the restarted node catch up before the next measurement.
		if !waitFor(time.Minute, func() bool { return h.allReady() }) {
			h.check(false, "replicas not ready after the node came back")
		}
	}
	return nil
}

// countAccepted counts the accepted keys in CAU_INBOUND and CAU_TRIAGED, waiting (a minute at
// most) until every key is in both: requests the spare lane took reach CAU_INBOUND once it has a
// leader again, and triage follows.
func (h *harness) countAccepted(accepted map[string]string) (lost, doubled, tLost, tDoubled int) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tally := func(m map[string]int) (lost, doubled int) {
		for key := range accepted {
			switch m[key] {
			case 0:
				lost++
			case 1:
			default:
				doubled++
			}
		}
		return lost, doubled
	}
	for {
		desk, _, err := clusterrig.Count(ctx, h.js)
		if err == nil {
			triaged, _, err2 := clusterrig.CountTriaged(ctx, h.js)
			err = err2
			lost, doubled = tally(desk)
			tLost, tDoubled = tally(triaged)
		}
		if (err == nil && lost == 0 && tLost == 0) || ctx.Err() != nil {
			if err != nil {
				h.check(false, "count: %v", err)
			}
			return lost, doubled, tLost, tDoubled
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// triageLag is the longest time from a request's acceptance to its triaged item's publish, and
// how many took over 3 s (those the spare lane took wait for CAU_INBOUND's new leader).
func (h *harness) triageLag(accepted map[string]time.Time) (longest time.Duration, late int) {
	for key, at := range accepted {
		v, ok := h.triaged.Load(key)
		if !ok {
			continue // counted as lost above
		}
		d := v.(time.Time).Sub(at)
		longest = max(longest, d)
		if d > 3*time.Second {
			late++
		}
	}
	return longest, late
}

func (h *harness) hasStream(name string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := h.js.Stream(ctx, name)
	return err == nil
}

// leadersApart waits until the intake groups have leaders on different servers.
func (h *harness) leadersApart(d time.Duration) (map[string]string, bool) {
	leaders := map[string]string{}
	ok := waitFor(d, func() bool {
		clear(leaders)
		seen := map[string]bool{}
		for _, g := range natsjs.LeaderGroups {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			s, err := h.js.Stream(ctx, g)
			cancel()
			if err != nil || s.CachedInfo().Cluster == nil || s.CachedInfo().Cluster.Leader == "" {
				return false
			}
			l := s.CachedInfo().Cluster.Leader
			leaders[g] = l
			if seen[l] {
				return false
			}
			seen[l] = true
		}
		return true
	})
	return leaders, ok
}

func (h *harness) allReady() bool {
	for _, p := range h.reps {
		if p.cmd != nil && !p.ready() {
			return false
		}
	}
	return true
}

func (h *harness) leader(stream string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		s, err := h.js.Stream(ctx, stream)
		if err == nil && s.CachedInfo().Cluster != nil && s.CachedInfo().Cluster.Leader != "" {
			return s.CachedInfo().Cluster.Leader, nil
		}
		if ctx.Err() != nil {
			return "", fmt.Errorf("leader of %s: %v", stream, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// currentHolder reads the lease key.
func (h *harness) currentHolder() string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := h.js.KeyValue(ctx, natsjs.KVState)
	if err != nil {
		return ""
	}
	e, err := kv.Get(ctx, "imap."+clusterrig.MailboxName+".lease")
	if err != nil {
		return ""
	}
	var l struct{ Holder string }
	_ = json.Unmarshal(e.Value(), &l)
	return l.Holder
}

func (h *harness) holderProc() *proc {
	cur := h.currentHolder()
	for _, p := range h.reps {
		if p.cmd != nil && p.holder() == cur {
			return p
		}
	}
	return nil
}

// deliver appends a mail and returns its Message-ID.
func (h *harness) deliver() string {
	h.mails++
	raw := clusterrig.Mail("clusterload", h.mails)
	if err := h.imap.Append(raw); err != nil {
		h.check(false, "append: %v", err)
	}
	return fmt.Sprintf("<clusterload-%d@clusterrig.ipn.mx>", h.mails)
}

// arrived waits until the request of Message-ID id was published and returns when.
func (h *harness) arrived(id string, d time.Duration) (time.Time, bool) {
	var at time.Time
	ok := waitFor(d, func() bool {
		v, ok := h.arrivals.Load(id)
		if ok {
			at = v.(time.Time)
		}
		return ok
	})
	return at, ok
}

// newHolder waits for the lease to name someone other than old.
func (h *harness) newHolder(old string, d time.Duration) (string, time.Time, bool) {
	var cur string
	ok := waitFor(d, func() bool { cur = h.currentHolder(); return cur != "" && cur != old })
	return cur, time.Now(), ok
}

// takeoverAfterKill kills the mailbox holder with SIGKILL and measures the standby's takeover.
func (h *harness) takeoverAfterKill() error {
	var takeovers, resumes []time.Duration
	for r := range h.o.kills {
		if !waitFor(30*time.Second, func() bool { return h.holderProc() != nil }) {
			h.check(false, "round %d: nobody holds the mailbox", r)
			continue
		}
		p := h.holderProc()
		old := p.holder()
		// A mail just before the kill, so the holder is busy; then one after it.
		id0 := h.deliver()
		at := time.Now()
		p.signal(syscall.SIGKILL)
		id := h.deliver()
		cur, tookAt, ok := h.newHolder(old, 2*h.o.leaseTTL+30*time.Second)
		h.check(ok, "round %d: no takeover", r)
		arr, ok2 := h.arrived(id, time.Minute)
		_, ok0 := h.arrived(id0, time.Minute)
		h.check(ok2 && ok0, "round %d: a mail was not ingested", r)
		takeovers = append(takeovers, tookAt.Sub(at).Round(10*time.Millisecond))
		resumes = append(resumes, arr.Sub(at).Round(10*time.Millisecond))
		h.printf("  kill -9 round %d: lease %s → %s after %s; mail delivered after the kill published after %s", r+1, short(old), short(cur), tookAt.Sub(at).Round(10*time.Millisecond), arr.Sub(at).Round(10*time.Millisecond))
		if err := p.start(); err != nil { // back on its data dir, as a standby
			return err
		}
		if !waitFor(time.Minute, p.ready) {
			h.check(false, "round %d: restarted replica not ready", r)
		}
	}
	h.printf("MAILBOX TAKEOVER AFTER KILL -9 of the holder (lease_ttl %s, %d rounds): lease taken over after %v; ingest resumed (mail delivered after the kill published) after %v",
		h.o.leaseTTL, h.o.kills, takeovers, resumes)
	h.check(len(takeovers) > 0 && slices.Max(takeovers) <= 10*time.Second, "takeover after kill -9 over 10 s")
	return nil
}

// handoverAfterStop stops the holder cleanly (SIGTERM): the standby takes over at once.
func (h *harness) handoverAfterStop() error {
	p := h.holderProc()
	if p == nil {
		h.check(false, "nobody holds the mailbox")
		return nil
	}
	old := p.holder()
	at := time.Now()
	p.signal(syscall.SIGTERM)
	stopped := time.Since(at)
	id := h.deliver()
	cur, tookAt, ok := h.newHolder(old, time.Minute)
	arr, ok2 := h.arrived(id, time.Minute)
	h.check(ok && ok2, "no handover after a clean stop")
	h.printf("MAILBOX HANDOVER AFTER A CLEAN STOP (SIGTERM) of the holder: process exited after %s; lease %s → %s after %s; next mail published after %s",
		stopped.Round(10*time.Millisecond), short(old), short(cur), tookAt.Sub(at).Round(10*time.Millisecond), arr.Sub(at).Round(10*time.Millisecond))
	return p.start()
}

// singleRestart leaves one replica and restarts it: cleanly, then after kill -9. It resumes its
// own lease at once (instance id in its data dir).
func (h *harness) singleRestart() error {
	keep := h.reps[0]
	for _, p := range h.reps[1:] {
		p.signal(syscall.SIGTERM)
	}
	if !waitFor(time.Minute, func() bool { return h.currentHolder() == keep.holder() }) {
		h.check(false, "the remaining replica did not take the mailbox")
		return nil
	}
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		keep.signal(sig)
		id := h.deliver()
		t0 := time.Now()
		if err := keep.start(); err != nil {
			return err
		}
		held := waitFor(time.Minute, func() bool {
			return h.currentHolder() == keep.holder() && h.leaseFresh(t0)
		})
		heldAt := time.Since(t0)
		arr, ok := h.arrived(id, time.Minute)
		h.check(held && ok, "restart (%s) did not resume the mailbox", sig)
		name := "clean stop (SIGTERM)"
		if sig == syscall.SIGKILL {
			name = "kill -9"
		}
		h.printf("SINGLE CAUD RESTART after %s: lease held again %s after the new process started; waiting mail published %s after it started",
			name, heldAt.Round(10*time.Millisecond), arr.Sub(t0).Round(10*time.Millisecond))
	}
	return nil
}

// leaseFresh reports whether the lease was written after t (the new process took it).
func (h *harness) leaseFresh(t time.Time) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := h.js.KeyValue(ctx, natsjs.KVState)
	if err != nil {
		return false
	}
	e, err := kv.Get(ctx, "imap."+clusterrig.MailboxName+".lease")
	return err == nil && e.Created().After(t)
}

func short(holder string) string {
	if i := strings.LastIndex(holder, "/"); i >= 0 && len(holder)-i > 7 {
		return holder[i+1 : i+7]
	}
	return holder
}
