package natsjs

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ipn-cgsi/caud/channels"
)

// StoreGuard keeps the embedded server's JetStream writing through a full disk.
//
// When a write to its file store fails (the disk is full: "Critical write error … no space left on
// device"), nats-server v2.15 stops writing to that stream for good: later publishes get no answer,
// also once space has returned. On some paths it shuts JetStream down instead ("JetStream out of
// space, will be DISABLED"). Either way only a restart used to bring it back. The guard learns of it
// from the server's own log and from JetStream's state, reports it through Health (so /readyz says
// 503 and why), watches the free space of the store's filesystem, and once there is room again
// restarts JetStream in-process the way a configuration reload does. Streams, consumers and
// buckets are read back from the store as at a process restart; caud's publishers and consumers
// retry and resume by themselves, and since every publish carries its Nats-Msg-Id (the server
// rebuilds its duplicate window from the store) a retried publish is not a second request.
//
// Pass it in EmbeddedOptions.Guard and run Run. Safe for concurrent use.
type StoreGuard struct {
	o    StoreGuardOptions
	log  *slog.Logger
	wake chan struct{}

	restarts prometheus.Counter

	mu         sync.Mutex
	ns         *server.Server
	opts       *server.Options
	dir        string
	halted     bool // JetStream does not write; reason and since say why and since when
	reason     string
	since      time.Time
	restarting bool      // lines logged while the guard restarts JetStream are its own doing
	roomSince  time.Time // when the free space was first seen enough while halted
	resumed    time.Duration
	failures   int // failed restarts in a row
	retryAt    time.Time
}

// StoreGuardOptions configures a StoreGuard. Zero values are documented defaults.
type StoreGuardOptions struct {
	// ResumeFree is the free space the store's filesystem must have before JetStream is restarted;
	// 0 means 64 MiB, or a tenth of the filesystem when that is less. Restarting with less would
	// only fill the disk again at the next request.
	ResumeFree int64
	// Interval is how often free space and JetStream's state are looked at; 0 means 250 ms.
	Interval time.Duration
	// OnResume is called after each restart of JetStream with the time from enough free space
	// being seen to JetStream writing again (for load tools); nil means none.
	OnResume func(time.Duration)
	Logger   *slog.Logger
	// Registerer receives caud_jetstream_restarts_total and caud_store_disk_free_bytes; nil
	// means none.
	Registerer prometheus.Registerer
}

// NewStoreGuard returns a guard; it does nothing until StartEmbedded attaches it to a server.
func NewStoreGuard(o StoreGuardOptions) *StoreGuard {
	o.Interval = channels.OrDefault(o.Interval, 250*time.Millisecond)
	g := &StoreGuard{o: o, log: channels.OrDiscard(o.Logger), wake: make(chan struct{}, 1)}
	g.restarts = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "caud_jetstream_restarts_total",
		Help: "Times caud restarted the embedded server's JetStream after it stopped writing (a full disk) and space returned.",
	})
	if o.Registerer != nil {
		g.restarts = channels.Register(o.Registerer, g.restarts)
		channels.Register(o.Registerer, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "caud_store_disk_free_bytes",
			Help: "Free space of the filesystem that holds the embedded JetStream store.",
		}, func() float64 {
			g.mu.Lock()
			dir := g.dir
			g.mu.Unlock()
			free, _, err := diskSpace(dir)
			if dir == "" || err != nil {
				return -1
			}
			return float64(free)
		}))
	}
	return g
}

// attach binds the guard to the server StartEmbedded created from opts, before it starts.
func (g *StoreGuard) attach(ns *server.Server, opts *server.Options) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.ns, g.opts, g.dir = ns, opts, opts.StoreDir
}

// serverLine receives every line the embedded server logs at warning level or above.
func (g *StoreGuard) serverLine(line string) {
	if !writeFailure(line) {
		return
	}
	g.mu.Lock()
	if g.restarting {
		g.mu.Unlock()
		return
	}
	g.haltLocked(line)
	g.mu.Unlock()
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// writeFailure reports whether a server log line says JetStream has stopped writing: a stream's,
// consumer's or raft group's critical write error, or JetStream being disabled for lack of space
// or permission.
func writeFailure(line string) bool {
	l := strings.ToLower(line)
	return strings.Contains(l, "critical write error") || strings.Contains(l, "will be disabled") ||
		strings.Contains(l, "disabling jetstream")
}

func (g *StoreGuard) haltLocked(reason string) {
	if g.halted {
		return
	}
	g.halted, g.reason, g.since, g.roomSince = true, reason, time.Now(), time.Time{}
	g.log.Error("embedded JetStream stopped writing; requests wait in their sources, and caud restarts JetStream once the store's disk has room",
		"reason", reason, "store_dir", g.dir, "resume_free", g.resumeFree())
}

// Run watches until ctx ends. Call it once, after StartEmbedded.
func (g *StoreGuard) Run(ctx context.Context) error {
	t := time.NewTicker(g.o.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-g.wake:
		}
		g.check(ctx)
	}
}

// check halts the guard when JetStream was shut down behind its back; when halted it pauses
// JetStream and restarts it once the disk has room.
func (g *StoreGuard) check(ctx context.Context) {
	g.mu.Lock()
	ns := g.ns
	g.mu.Unlock()
	if ns == nil || !ns.Running() || ctx.Err() != nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.halted {
		if ns.JetStreamEnabled() {
			return
		}
		g.haltLocked("JetStream is disabled on the embedded server")
	}
	if ns.JetStreamEnabled() {
		g.pauseLocked(ns)
	}
	free, _, err := diskSpace(g.dir)
	if err != nil || free < g.resumeFree() {
		g.roomSince = time.Time{}
		return
	}
	if g.roomSince.IsZero() {
		g.roomSince = time.Now()
	}
	if time.Now().Before(g.retryAt) {
		return
	}
	g.restartLocked(ctx, ns, free)
}

// pauseLocked shuts JetStream down while the disk is full, as nats-server itself does on its
// clustered paths. A stream that failed a write refuses every later one without an answer, so a
// publisher would wait out its whole timeout on each attempt, also just after space returns; with
// JetStream down each attempt fails at once (no responders) and the first one after the restart
// goes through. The store on disk is what a restart reads back.
func (g *StoreGuard) pauseLocked(ns *server.Server) {
	g.restarting = true
	g.mu.Unlock()
	err := ns.ShutdownJetStream()
	g.mu.Lock()
	g.restarting = false
	if err != nil {
		g.log.Error("pausing embedded JetStream", "err", err)
		return
	}
	g.log.Warn("embedded JetStream paused until the store's disk has room", "store_dir", g.dir)
}

// restartLocked starts JetStream again from the store.
func (g *StoreGuard) restartLocked(ctx context.Context, ns *server.Server, free int64) {
	g.log.Warn("the store's disk has room again; restarting embedded JetStream", "free_bytes", free, "store_dir", g.dir)
	g.restarting = true
	g.mu.Unlock()
	start := time.Now()
	var err error
	if ctx.Err() == nil && ns.Running() {
		// A reload with unchanged options starts a JetStream that should run and does not
		// (nats-server's own path for this, as after SIGHUP), with the server's configuration.
		err = ns.ReloadOptions(g.opts.Clone())
	}
	if err == nil && !ns.JetStreamEnabled() {
		err = fmt.Errorf("JetStream did not start again (the nats-server lines above say why)")
	}
	g.mu.Lock()
	g.restarting = false
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		g.failures++
		wait := min(time.Duration(g.failures)*time.Second, 30*time.Second)
		g.retryAt = time.Now().Add(wait)
		g.log.Error("restarting embedded JetStream failed; trying again", "err", err, "in", wait)
		return
	}
	g.restarts.Inc()
	g.resumed = time.Since(g.roomSince)
	g.log.Info("embedded JetStream writes again", "stopped_for", time.Since(g.since).Round(time.Millisecond),
		"restart_took", time.Since(start).Round(time.Millisecond), "since_room", g.resumed.Round(time.Millisecond))
	g.halted, g.reason, g.failures, g.retryAt = false, "", 0, time.Time{}
	if f := g.o.OnResume; f != nil {
		d := g.resumed
		g.mu.Unlock()
		f(d)
		g.mu.Lock()
	}
}

// resumeFree is ResumeFree or its default for the store's filesystem.
func (g *StoreGuard) resumeFree() int64 {
	if g.o.ResumeFree > 0 {
		return g.o.ResumeFree
	}
	def := int64(64 << 20)
	if _, total, err := diskSpace(g.dir); err == nil && total/10 < def {
		def = total / 10
	}
	return def
}

// Writing reports whether the embedded JetStream writes (false from a failed write until the
// restart after space returned).
func (g *StoreGuard) Writing() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return !g.halted
}

// Health reports whether the embedded JetStream writes, and when it does not, why and what caud
// waits for.
func (g *StoreGuard) Health(context.Context) []channels.Health {
	g.mu.Lock()
	defer g.mu.Unlock()
	h := channels.Health{Name: "embedded store", OK: true, Detail: "JetStream writes to " + g.dir}
	if g.halted {
		free, _, _ := diskSpace(g.dir)
		h.OK, h.Since = false, g.since
		h.Detail = fmt.Sprintf("JetStream stopped writing: %s; requests wait in their sources; caud restarts JetStream by itself once %s has %s free (now %s)",
			g.reason, g.dir, friendlyBytes(g.resumeFree()), friendlyBytes(free))
	}
	return []channels.Health{h}
}

// diskSpace returns the space available to unprivileged writers and the size of dir's filesystem.
func diskSpace(dir string) (free, total int64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), int64(st.Blocks) * int64(st.Bsize), nil
}

func friendlyBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
