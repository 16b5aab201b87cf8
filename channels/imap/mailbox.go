package imap

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/retry"
)

// Mailbox ingests one IMAP mailbox. Run it with Run; Health is safe to call concurrently.
type Mailbox struct {
	o      Options
	log    *slog.Logger
	m      *metrics
	ids    *channels.IDs
	source string

	stats  counters
	health channels.HealthTracker
}

// New validates o and applies its defaults. It does no I/O besides reading PasswordFile.
func New(o Options) (*Mailbox, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	log := o.Logger.With("mailbox", o.Name, "address", o.Address)
	if o.TLS == TLSInsecure {
		log.Warn("imap mailbox configured without TLS: the password and the mail cross the network in clear text", "host", o.Host)
	}
	mb := &Mailbox{
		o:      o,
		log:    log,
		m:      newMetrics(o.Registerer),
		ids:    channels.NewIDs(),
		source: "imap://" + o.Address + "/" + o.Folder,
	}
	mb.setHealth(false, "starting")
	mb.m.connected.WithLabelValues(o.Name).Set(0)
	// Every series the alert rules read exists from the start (0: never synced, none quarantined).
	mb.m.lastSync.WithLabelValues(o.Name)
	for _, r := range []string{ReasonTooLarge, ReasonUnparseable, ReasonEmpty, ReasonRejected} {
		mb.m.quarantined.WithLabelValues(o.Name, r)
	}
	return mb, nil
}

// Name is the mailbox's short name.
func (m *Mailbox) Name() string { return m.o.Name }

// Health reports the mailbox for /readyz: connected and idle, standby (another process holds the
// lease: OK), or down with the last error and since when.
func (m *Mailbox) Health(context.Context) []channels.Health { return m.health.List() }

func (m *Mailbox) setHealth(ok bool, detail string) { m.health.Set("imap:"+m.o.Name, ok, detail) }

// Run works the mailbox until ctx ends, then returns nil. It never gives up on server or JetStream
// errors: it reconnects with exponential backoff and jitter. While another process holds the
// mailbox lease it waits as a standby and takes over when the lease expires.
func (m *Mailbox) Run(ctx context.Context, sink channels.Sink) error {
	l := &leaseHolder{kv: m.o.State, key: leaseKey(m.o.Name), holder: m.o.Holder, ttl: m.o.LeaseTTL}
	for ctx.Err() == nil {
		if !m.acquire(ctx, l) {
			break
		}
		m.log.Info("mailbox lease acquired", "holder", m.o.Holder)
		lctx, cancel := context.WithCancelCause(ctx)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.keepLease(lctx, cancel, l)
		}()
		m.work(lctx, sink)
		cancel(nil)
		wg.Wait()
		if cause := context.Cause(lctx); errors.Is(cause, ErrLeaseLost) {
			m.log.Warn("mailbox lease lost; standing by")
		}
		if ctx.Err() != nil {
			rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Second)
			if err := l.release(rctx); err != nil {
				m.log.Warn("mailbox lease not released; a standby takes over when it expires", "err", err)
			}
			rcancel()
		}
	}
	m.m.connected.WithLabelValues(m.o.Name).Set(0)
	return nil
}

// work runs sessions, backing off between failures, until ctx ends. The backoff starts again from
// MinBackoff after a session that completed a sync (a server that crashed once is retried at
// once), and while the server refuses connections it grows to RedialBackoff only: a refused dial
// costs the server nothing, and the mailbox is back within about that long of the server.
func (m *Mailbox) work(ctx context.Context, sink channels.Sink) {
	b := retry.Policy{Initial: m.o.MinBackoff, Max: m.o.MaxBackoff, Jitter: 0.5}.Start()
	for ctx.Err() == nil {
		synced := false
		err := m.session(ctx, sink, func() {
			if !synced {
				synced = true
				m.m.reconnectBackoff.WithLabelValues(m.o.Name).Set(0)
			}
		})
		m.m.connected.WithLabelValues(m.o.Name).Set(0)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, ErrLeaseLost) {
			return
		}
		if synced {
			b.Reset()
		}
		wait := b.Next()
		if errors.Is(err, errUnreachable) {
			wait = min(wait, m.o.RedialBackoff)
		}
		m.setHealth(false, "down: "+errString(err))
		m.m.reconnectBackoff.WithLabelValues(m.o.Name).Set(wait.Seconds())
		m.log.Warn("imap session ended; reconnecting", "err", err, "in", wait)
		if !retry.Sleep(ctx, b.Spread(wait)) {
			return
		}
	}
}

func errString(err error) string {
	if err == nil {
		return "disconnected"
	}
	s := err.Error()
	if len(s) > 300 {
		s = s[:300]
	}
	return s
}

type metrics struct {
	fetched, published, duplicates *prometheus.CounterVec
	suppressed, quarantined        *prometheus.CounterVec
	lastSync, connected            *prometheus.GaugeVec
	reconnectBackoff               *prometheus.GaugeVec
	moveRecovered                  *prometheus.CounterVec
	attachments                    *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		fetched:          prometheus.NewCounterVec(prometheus.CounterOpts{Name: "caud_imap_fetched_total", Help: "Messages fetched from the mailbox."}, []string{"mailbox"}),
		published:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: "caud_imap_published_total", Help: "Requests published from the mailbox (JetStream acknowledged)."}, []string{"mailbox"}),
		duplicates:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "caud_imap_duplicates_total", Help: "Messages whose Message-ID already created a request."}, []string{"mailbox"}),
		suppressed:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "caud_imap_suppressed_total", Help: "Auto-replies and bounces archived and moved aside without a request."}, []string{"mailbox", "reason"}),
		quarantined:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "caud_imap_quarantined_total", Help: "Poison messages moved to quarantine and dead-lettered."}, []string{"mailbox", "reason"}),
		lastSync:         prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "caud_imap_last_sync_timestamp_seconds", Help: "Unix time of the last complete sync of the mailbox."}, []string{"mailbox"}),
		connected:        prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "caud_imap_connected", Help: "1 while this process is connected to the mailbox and holds its lease."}, []string{"mailbox"}),
		reconnectBackoff: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "caud_imap_reconnect_backoff_seconds", Help: "Current reconnect backoff of the mailbox (0 once a sync completed)."}, []string{"mailbox"}),
		attachments:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "caud_imap_attachments_total", Help: "PDF and image attachments read (read_text, read_ocr) or not (unread_<reason>)."}, []string{"mailbox", "result"}),
		moveRecovered:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "caud_imap_move_recovered_total", Help: "Messages of an interrupted move found already copied to the destination folder and removed from the source instead of being copied again."}, []string{"mailbox"}),
	}
	if reg == nil {
		return m
	}
	// Several mailboxes share one registry: reuse the collectors the first one registered.
	m.fetched = channels.Register(reg, m.fetched)
	m.published = channels.Register(reg, m.published)
	m.duplicates = channels.Register(reg, m.duplicates)
	m.suppressed = channels.Register(reg, m.suppressed)
	m.quarantined = channels.Register(reg, m.quarantined)
	m.lastSync = channels.Register(reg, m.lastSync)
	m.connected = channels.Register(reg, m.connected)
	m.reconnectBackoff = channels.Register(reg, m.reconnectBackoff)
	m.moveRecovered = channels.Register(reg, m.moveRecovered)
	m.attachments = channels.Register(reg, m.attachments)
	return m
}

// Stats is a snapshot of a mailbox's counters since New (tests and the load tool read it).
type Stats struct {
	Fetched, Published, Duplicates, Suppressed, Quarantined int64
}

// Stats returns the mailbox's counters.
func (m *Mailbox) Stats() Stats {
	return Stats{
		Fetched:     m.stats.fetched.Load(),
		Published:   m.stats.published.Load(),
		Duplicates:  m.stats.duplicates.Load(),
		Suppressed:  m.stats.suppressed.Load(),
		Quarantined: m.stats.quarantined.Load(),
	}
}

type counters struct {
	fetched, published, duplicates, suppressed, quarantined atomic.Int64
}
