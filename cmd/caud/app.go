package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/deadletter"
	"github.com/ipn-cgsi/caud/channels/desk"
	"github.com/ipn-cgsi/caud/channels/httpjson"
	"github.com/ipn-cgsi/caud/channels/imap"
	"github.com/ipn-cgsi/caud/channels/memo"
	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/channels/social"
	"github.com/ipn-cgsi/caud/config"
	"github.com/ipn-cgsi/caud/triage"
	"github.com/ipn-cgsi/caud/triage/archive"
	"github.com/ipn-cgsi/caud/triage/audit"
	"github.com/ipn-cgsi/caud/triage/learner"
	"github.com/ipn-cgsi/caud/triage/notify"
	"github.com/ipn-cgsi/caud/triage/queue"
	"github.com/ipn-cgsi/caud/triage/search"
	"github.com/ipn-cgsi/caud/triage/worker"
)

// App is one caud process: NATS (embedded or external), the roles the configuration selects, and the
// HTTP listener. Tests drive it with Start and Stop.
type App struct {
	cfg *config.Config
	log *slog.Logger
	reg *prometheus.Registry

	ns      *server.Server
	nc      *nats.Conn
	h       *natsjs.Handles
	sink    *natsjs.Sink
	catalog *triage.Store
	queues  *queue.Queues
	// trail, recorder, search and archive serve the history, search and originals of requests
	// (the API and the console).
	trail    *audit.Trail
	recorder *audit.Recorder
	search   *search.Index
	archive  *archive.Archive
	desk     *desk.Desk
	worker   *worker.Worker
	learner  *learner.Learner

	// guard restarts the embedded server's JetStream after a full disk; nil with an external one.
	guard *natsjs.StoreGuard
	// health are the adapters that report to /readyz.
	health []channels.HealthReporter

	ln      net.Listener
	httpSrv *http.Server
	mux     *http.ServeMux
	api     http.Handler // mux, with JSON 404 and 405 answers under /api/
	// started is set once every role runs; until then only /healthz, /readyz and /metrics answer.
	started atomic.Bool
	// instance names this process in mailbox leases; see instance.go.
	instance *instance

	cancel   context.CancelFunc
	bg       sync.WaitGroup
	stopOnce sync.Once
	stopErr  error

	mu       sync.Mutex
	natsDown time.Time // when the connection was lost; zero while connected
	waiting  Check     // what start-up is waiting for, shown by /readyz until started
	reloads  prometheus.Counter

	catalogErr error // last refused catalog reload, for the console
	// catalogErrKept is the engine in force when catalogErr happened: the refusal is news while
	// it still is (a later good reload replaces it).
	catalogErrKept *triage.Engine
	catalogErrAt   time.Time
}

// NewApp wires nothing yet; Start does.
func NewApp(cfg *config.Config, log *slog.Logger) *App {
	return &App{cfg: cfg, log: log, reg: prometheus.NewRegistry()}
}

// Addr is the HTTP listener's address once it listens, which is early in Start (useful with
// listen port 0); "" before. Safe to call while Start runs.
func (a *App) Addr() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ln == nil {
		return ""
	}
	return a.ln.Addr().String()
}

// Start brings caud up: the HTTP listener first (so /healthz and /readyz answer while it waits),
// then NATS, the topology, the catalog and the selected roles. It waits for NATS and the topology
// as long as ctx allows, retrying with backoff (several replicas may start at the same moment, and
// a cluster may still be forming); /readyz says what it waits for. It returns once every role
// runs. On error the caller must still call Stop to release what was started.
func (a *App) Start(ctx context.Context) error {
	cfg := a.cfg
	if err := a.checkListen(); err != nil {
		return err
	}
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a.cancel = cancel
	inst, err := openInstance(cfg.DataDir, a.log)
	if err != nil {
		return err
	}
	a.instance = inst

	a.mux = http.NewServeMux()
	a.api = httpjson.APIErrors("/api/", a.mux)
	a.registerOps(a.mux)
	if err := a.serveHTTP(); err != nil {
		return err
	}

	conn := natsjs.ConnectOptions{
		URLs: cfg.NATS.URLs, CredsFile: cfg.NATS.CredsFile, User: cfg.NATS.User, Password: cfg.NATS.Password,
		Token: cfg.NATS.Token, CAFile: cfg.NATS.TLS.CAFile, CertFile: cfg.NATS.TLS.CertFile, KeyFile: cfg.NATS.TLS.KeyFile,
		Timeout: cfg.NATS.ConnectTimeout, OnStateChange: a.natsState,
	}
	if cfg.NATS.IsEmbedded() {
		a.setWaiting("starting the embedded NATS server")
		eo := natsjs.EmbeddedOptions{
			Listen: cfg.NATS.Embedded.Listen, StoreDir: cfg.NATS.Embedded.StoreDir,
			MaxMemory: cfg.NATS.Embedded.MaxMemory, MaxStore: cfg.NATS.Embedded.MaxStore,
		}
		guard := natsjs.NewStoreGuard(natsjs.StoreGuardOptions{ResumeFree: cfg.NATS.Embedded.ResumeFree, Logger: a.log, Registerer: a.reg})
		eo.Guard, a.guard = guard, guard
		a.health = append(a.health, guard)
		a.goBG(func() { _ = guard.Run(runCtx) })
		if eo.Listen != "" && cfg.NATS.Embedded.Auth {
			if eo.Token, err = natsjs.LoadOrCreateToken(cfg.NATS.Embedded.TokenFile); err != nil {
				return err
			}
			a.log.Info("embedded nats requires a token", "token_file", cfg.NATS.Embedded.TokenFile)
		}
		ns, err := natsjs.StartEmbedded(eo, a.log)
		if err != nil {
			return err
		}
		a.ns = ns
		conn.Server, conn.Token = ns, eo.Token
	} else {
		a.setWaiting("connecting to NATS " + cfg.NATS.URL)
	}
	nc, err := natsjs.Connect(ctx, conn, a.log)
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.nc = nc
	a.mu.Unlock()
	// A pipelined publish whose ack was lost (a stream leader went away) fails after 5 s instead of
	// holding Stop forever.
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096), jetstream.WithPublishAsyncTimeout(5*time.Second))
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	a.setWaiting("creating the JetStream streams and buckets")
	a.h, err = natsjs.EnsureTopology(ctx, js, natsjs.Topology{
		Replicas: cfg.NATS.Replicas, DedupWindow: cfg.NATS.DedupWindow, Retention: cfg.NATS.Retention,
		LeaseRetention: 2 * cfg.Queues.MaxLease, Logger: a.log, OnWait: a.topologyWait,
	})
	if err != nil {
		return err
	}
	// On a cluster: the leaders of CAU_INBOUND, its spare and cau_requests on different servers,
	// so a lost node takes at most one with it (natsjs/lanes.go). A no-op without a spare lane.
	a.goBG(func() {
		natsjs.KeepLeadersApart(runCtx, a.h, natsjs.KeeperOptions{Logger: a.log.With("component", "lanes")})
	})

	var maxStore int64
	if cfg.NATS.IsEmbedded() {
		maxStore = cfg.NATS.Embedded.MaxStore
	} else {
		// A server caud does not run: /readyz says when it stops writing and what to do.
		probe := natsjs.NewWriteProbe(natsjs.WriteProbeOptions{KV: a.h.State, Key: natsjs.ProbeKey(a.instance.id), Logger: a.log.With("stage", "probe")})
		a.health = append(a.health, probe)
		a.goBG(func() { _ = probe.Run(runCtx) })
	}
	a.reg.MustRegister(natsjs.NewStoreCollector(js, maxStore))

	a.reloads = prometheus.NewCounter(prometheus.CounterOpts{Name: "caud_catalog_reload_errors_total", Help: "Catalog files refused on reload (the previous catalog stays in force)."})
	a.reg.MustRegister(a.reloads)
	a.catalog, err = triage.NewStoreWithModel(cfg.Triage.Catalog, cfg.Triage.Model, a.log, func(err error) { a.reloads.Inc(); a.catalogReloadError(err) })
	if err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	a.log.Info("catalog loaded", "version", a.catalog.Engine().Version(), "file", cfg.Triage.Catalog, "model", cfg.Triage.Model)
	if cfg.Triage.Catalog != "" || cfg.Triage.Model != "" {
		a.goBG(func() { _ = a.catalog.Watch(runCtx) })
	}

	a.setWaiting("creating the audit trail")
	a.trail, err = audit.Open(ctx, a.h.JS, audit.TrailOptions{Replicas: cfg.NATS.Replicas})
	if err != nil {
		return err
	}
	a.recorder = audit.NewRecorder(a.h.JS, audit.RecorderOptions{Logger: a.log.With("stage", "audit"), Registerer: a.reg})
	a.goBG(func() { _ = a.recorder.Run(runCtx) })

	a.setWaiting("starting the roles")
	auth := a.auth()
	a.setWaiting("loading the triage model in force")
	if err := a.startLearner(ctx, runCtx, a.mux, auth); err != nil {
		return err
	}
	if cfg.HasRole(config.RoleIntake) {
		if err := a.startIntake(runCtx, a.mux, auth); err != nil {
			return err
		}
	}
	if cfg.HasRole(config.RoleTriage) {
		if err := a.startTriage(ctx, runCtx); err != nil {
			return err
		}
	}
	if cfg.HasRole(config.RoleQueues) {
		if err := a.startQueues(ctx, runCtx, a.mux, auth); err != nil {
			return err
		}
	}
	letters := deadletter.New(a.h, a.log.With("stage", "deadletter"))
	letters.Register(a.mux, auth)
	a.mux.Handle("GET /api/v1/spool/failures", auth(http.HandlerFunc(a.handleSpoolFailures)))
	if cfg.Console.Enabled && a.queues != nil {
		if err := a.startConsole(ctx, runCtx, a.mux, letters); err != nil {
			return err
		}
	}
	a.started.Store(true)
	a.log.Info("caud ready", "http", "http://"+a.ln.Addr().String(), "roles", cfg.Roles, "embedded_nats", cfg.NATS.IsEmbedded(), "data_dir", cfg.DataDir, "instance", a.instance.id)
	a.warnUnready(ctx)
	return nil
}

// serveHTTP opens the listener and serves it at once. Until Start completes, everything but the
// operations endpoints answers 503 with a Retry-After.
func (a *App) serveHTTP() error {
	a.httpSrv = &http.Server{
		Handler:           http.HandlerFunc(a.serve),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", a.cfg.HTTP.Listen)
	if err != nil {
		return fmt.Errorf("http listen: %w", err)
	}
	a.mu.Lock()
	a.ln = ln
	a.mu.Unlock()
	srv := a.httpSrv
	a.goBG(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("http server", "err", err)
		}
	})
	a.log.Info("http listening; health endpoints answer while caud starts", "http", "http://"+ln.Addr().String())
	return nil
}

func (a *App) serve(w http.ResponseWriter, r *http.Request) {
	if !a.started.Load() {
		switch r.URL.Path {
		case "/healthz", "/readyz", "/metrics":
		default:
			w.Header().Set("Retry-After", "2")
			httpjson.Fail(w, http.StatusServiceUnavailable, "caud está arrancando; intente de nuevo en unos segundos")
			return
		}
	}
	a.api.ServeHTTP(w, r)
}

// setWaiting records what start-up waits for, for /readyz.
func (a *App) setWaiting(detail string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.waiting.Since == "" {
		a.waiting.Since = time.Now().UTC().Format(time.RFC3339)
	}
	a.waiting.Name, a.waiting.Detail = "startup", detail
}

// topologyWait reports a failed set-up attempt, with the usual cause on a cluster: no quorum.
func (a *App) topologyWait(asset string, err error) {
	detail := fmt.Sprintf("waiting for JetStream to set up %s: %v", asset, err)
	if r := a.cfg.NATS.Replicas; r > 1 {
		a.mu.Lock()
		url := natsjs.ConnURL(a.nc, a.ns)
		a.mu.Unlock()
		detail += fmt.Sprintf("; with nats.replicas %d JetStream needs a quorum, %d of the %d NATS nodes running and routed to each other (connected to %s): check that the other nodes are up and their routes connect", r, r/2+1, r, url)
	}
	a.setWaiting(detail)
}

// startIntake starts the channels: desk API, webhooks, mailboxes and the memo spool, all publishing
// through one sink.
func (a *App) startIntake(runCtx context.Context, mux *http.ServeMux, auth func(http.Handler) http.Handler) error {
	cfg := a.cfg
	a.sink = natsjs.NewSink(a.h, natsjs.SinkOptions{FailoverAfter: cfg.NATS.FailoverAfter, Logger: a.log, Registerer: a.reg})
	a.health = append(a.health, a.sink)
	units, err := config.LoadUnits(cfg.Units.File)
	if err != nil {
		return fmt.Errorf("units: %w", err)
	}
	a.desk, err = desk.New(desk.Options{
		Sink: a.sink, Units: unitDirectory{units}, Idempotency: a.h.Requests,
		MaxBodyBytes: cfg.HTTP.MaxBodyBytes, ClaimTimeout: cfg.NATS.FailoverAfter * 4 / 3, Logger: a.log.With("channel", "desk"),
	})
	if err != nil {
		return err
	}
	mux.Handle("POST /api/v1/requests", auth(a.desk))
	if fb := cfg.Social.Facebook; fb.AppSecret != "" {
		var profiles *social.Profiles
		if fb.PageAccessToken != "" {
			if profiles, err = social.NewProfiles(social.ProfileOptions{
				PageAccessToken: fb.PageAccessToken, AppSecret: fb.AppSecret, GraphBase: fb.APIBase,
				Logger: a.log.With("channel", "facebook"), Registerer: a.reg,
			}); err != nil {
				return fmt.Errorf("facebook profiles: %w", err)
			}
		}
		h, err := social.NewFacebook(social.FacebookOptions{
			AppSecrets: []string{fb.AppSecret}, VerifyToken: fb.VerifyToken, Profiles: profiles,
			Webhook: social.WebhookOptions{Sink: a.sink, Seen: a.h.Requests, Inbound: a.h.Inbound, Logger: a.log.With("channel", "facebook"), Registerer: a.reg},
		})
		if err != nil {
			return fmt.Errorf("facebook webhook: %w", err)
		}
		a.health = append(a.health, h)
		mux.Handle("/webhooks/facebook", h)
	}
	if x := cfg.Social.X; x.ConsumerSecret != "" {
		h, err := social.NewX(social.XOptions{
			ConsumerSecrets: []string{x.ConsumerSecret},
			Webhook:         social.WebhookOptions{Sink: a.sink, Seen: a.h.Requests, Inbound: a.h.Inbound, Logger: a.log.With("channel", "x"), Registerer: a.reg},
		})
		if err != nil {
			return fmt.Errorf("x webhook: %w", err)
		}
		a.health = append(a.health, h)
		mux.Handle("/webhooks/x", h)
	}
	var attachments channels.AttachmentReader
	if ac := cfg.IMAP.Attachments; ac.Read && len(cfg.IMAP.Mailboxes) > 0 {
		r, err := memo.NewReader(runCtx, memo.ReaderOptions{
			MaxBytes: ac.MaxBytes, MaxPages: ac.MaxPages, Workers: ac.Workers, Units: unitDirectory{units},
		})
		if err != nil {
			return fmt.Errorf("attachment reader: %w", err)
		}
		if missing := r.Missing(); len(missing) > 0 {
			a.log.Warn("mail attachments will be archived unread: OCR tools missing", "missing", strings.Join(missing, ", "))
		}
		attachments = r
	}
	for _, mb := range cfg.IMAP.Mailboxes {
		m, err := imap.New(imap.Options{
			Attachments: attachments, AttachmentTimeout: cfg.IMAP.Attachments.Timeout, MaxAttachmentReadBytes: cfg.IMAP.Attachments.MaxBytes,
			Name: mb.Name, Address: mb.Address, Host: mb.Host, TLS: mb.TLS,
			Username: mb.Username, Password: mb.Password, Folder: mb.Folder,
			ProcessedFolder: mb.ProcessedFolder, FlagOnly: mb.FlagOnly, QuarantineFolder: mb.QuarantineFolder,
			MaxMessageBytes: mb.MaxMessageBytes, PollInterval: mb.PollInterval, Channel: mb.Channel,
			State: a.h.State, Requests: a.h.Requests, JS: a.h.JS, Holder: a.instance.holder, LeaseTTL: cfg.IMAP.LeaseTTL, Units: units,
			Logger: a.log.With("channel", mb.Channel), Registerer: a.reg,
		})
		if err != nil {
			return fmt.Errorf("mailbox %s: %w", mb.Name, err)
		}
		a.health = append(a.health, m)
		a.goBG(func() {
			if err := m.Run(runCtx, a.sink); err != nil && runCtx.Err() == nil {
				a.log.Error("mailbox stopped", "mailbox", mb.Name, "err", err)
			}
		})
	}
	if cfg.Memo.Enabled {
		m, err := memo.New(memo.Options{
			SpoolDir: cfg.Memo.SpoolDir, MaxBytes: cfg.Memo.MaxBytes, Workers: cfg.Memo.Workers,
			PageWorkers: cfg.Memo.PageWorkers, PageTimeout: cfg.Memo.PageTimeout, MaxPages: cfg.Memo.MaxPages,
			Units: unitDirectory{units}, Sink: a.sink, Logger: a.log.With("channel", "memo"), Registerer: a.reg,
		})
		if err != nil {
			return fmt.Errorf("memo channel: %w", err)
		}
		a.health = append(a.health, m)
		mux.Handle("POST /api/v1/memos", auth(m))
		a.goBG(func() {
			if err := m.Run(runCtx, a.sink); err != nil && runCtx.Err() == nil {
				a.log.Error("memo channel stopped", "err", err)
			}
		})
	}
	return nil
}

// startTriage starts the triage worker and, when notify.enabled, the notifier.
func (a *App) startTriage(ctx, runCtx context.Context) error {
	cfg := a.cfg
	var err error
	a.worker, err = worker.New(ctx, a.h, worker.Options{
		Decide:     func(in triage.Input) triage.Triage { return a.catalog.Engine().Decide(in) },
		MaxDeliver: cfg.Triage.MaxDeliver, AckWait: cfg.Triage.AckWait, Workers: cfg.Triage.Workers,
		Batch: cfg.Triage.Batch, Logger: a.log.With("stage", "triage"), Registerer: a.reg,
	})
	if err != nil {
		return err
	}
	a.health = append(a.health, a.worker)
	a.goBG(func() { _ = a.worker.Run(runCtx) })
	if cfg.Notify.Enabled {
		n, err := notify.New(ctx, notify.Options{
			JS: a.h.JS, Triaged: a.h.Triaged, Requests: a.h.Requests, Replicas: cfg.NATS.Replicas,
			MaxAge: cfg.Notify.MaxAge, MaxPerSenderPerDay: cfg.Notify.MaxPerSenderPerDay,
			Channels: enabled(cfg.Notify.Channels, "email", "memo", "facebook", "x", "phone", "in_person"),
			Outcomes: enabled(cfg.Notify.Outcomes, triage.Outcomes...),
			SMTP: notify.SMTPOptions{
				Host: cfg.Notify.SMTP.Host, Port: cfg.Notify.SMTP.Port, TLS: cfg.Notify.SMTP.TLS,
				Username: cfg.Notify.SMTP.Username, Password: cfg.Notify.SMTP.Password, From: cfg.Notify.SMTP.From,
			},
			FacebookAPIBase: cfg.Social.Facebook.APIBase, FacebookPageToken: cfg.Social.Facebook.PageAccessToken,
			XAPIBase: cfg.Social.X.APIBase, XBearerToken: cfg.Social.X.BearerToken,
			TemplatesDir: cfg.Notify.TemplatesDir, Logger: a.log.With("stage", "notify"), Registerer: a.reg,
		})
		if err != nil {
			return fmt.Errorf("notifier: %w", err)
		}
		a.goBG(func() { _ = n.Run(runCtx) })
	}
	// The audit projector records what the pipeline did (received, triaged, dead-lettered, notified).
	bucket := ""
	if cfg.Notify.Enabled {
		bucket = notify.KVNotify
	}
	p, err := audit.NewProjector(ctx, audit.ProjectorOptions{Handles: a.h, NotifyBucket: bucket, Logger: a.log.With("stage", "audit"), Registerer: a.reg})
	if err != nil {
		return err
	}
	a.goBG(func() { _ = p.Run(runCtx) })
	return nil
}

// startQueues creates the agents' work queues and registers their API, with the requests' history,
// search and archived originals; it renews the leases agents extended.
func (a *App) startQueues(ctx, runCtx context.Context, mux *http.ServeMux, auth func(http.Handler) http.Handler) error {
	cfg := a.cfg
	var err error
	a.queues, err = queue.New(ctx, a.h, a.nc, queue.Options{
		Lease: cfg.Queues.Lease, MaxLease: cfg.Queues.MaxLease, Logger: a.log.With("stage", "queues"), Registerer: a.reg,
		Catalog: func() queue.Catalog { return a.catalog.Engine().Catalog() },
		Audit:   a.recorder, Trail: a.trail,
	})
	if err != nil {
		return err
	}
	a.queues.Register(mux, auth)
	a.goBG(func() { _ = a.queues.Run(runCtx) })
	a.trail.Register(mux, auth, a.log.With("stage", "audit"))
	a.search = search.New(a.h, search.Options{Logger: a.log.With("stage", "search"), Registerer: a.reg})
	a.goBG(func() { _ = a.search.Run(runCtx) })
	a.search.Register(mux, auth)
	a.archive = archive.New(a.h, a.log.With("stage", "archive"))
	a.archive.Register(mux, auth)
	return nil
}

func (a *App) goBG(f func()) {
	a.bg.Add(1)
	go func() { defer a.bg.Done(); f() }()
}

// checkListen refuses an API reachable from the network without a token.
func (a *App) checkListen() error {
	if a.cfg.HTTP.Token != "" {
		return nil
	}
	host, _, err := net.SplitHostPort(a.cfg.HTTP.Listen)
	if err != nil {
		return fmt.Errorf("http.listen: %w", err)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("http.listen %q is not a loopback address and no API token is configured: set http.token_file, or listen on 127.0.0.1", a.cfg.HTTP.Listen)
	}
	return nil
}

func (a *App) natsState(state string, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch state {
	case "connect failed":
		a.waiting.Name = "startup"
		a.waiting.Detail = fmt.Sprintf("connecting to NATS %s: %v", a.cfg.NATS.URL, err)
		if a.waiting.Since == "" {
			a.waiting.Since = time.Now().UTC().Format(time.RFC3339)
		}
	case "disconnected", "closed":
		if a.natsDown.IsZero() {
			a.natsDown = time.Now()
		}
	default:
		a.natsDown = time.Time{}
	}
}

// Stop shuts caud down in reverse order within ctx: stop HTTP intake, drain the triage worker, wait
// for pending publishes, drain the NATS connection, then stop the embedded server. It is idempotent.
func (a *App) Stop(ctx context.Context) error {
	a.stopOnce.Do(func() { a.stopErr = a.stop(ctx) })
	return a.stopErr
}

func (a *App) stop(ctx context.Context) error {
	var errs []error
	if a.httpSrv != nil {
		// Requests in flight get a bounded grace; connections that never sent a request (a client's
		// spare keep-alive dial) would otherwise hold Shutdown for 5 s, so past the grace they are
		// closed.
		hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if err := a.httpSrv.Shutdown(hctx); err != nil {
			a.log.Warn("http connections still open at stop; closing them", "err", err)
			_ = a.httpSrv.Close()
		}
		cancel()
	}
	if a.cancel != nil {
		a.cancel()
	}
	done := make(chan struct{})
	go func() { a.bg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, errors.New("background tasks did not finish in time"))
	}
	if a.h != nil {
		select {
		case <-a.h.JS.PublishAsyncComplete():
		case <-ctx.Done():
			errs = append(errs, errors.New("pending publishes did not complete in time"))
		}
	}
	if a.nc != nil {
		closed := make(chan struct{})
		a.nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
		if err := a.nc.Drain(); err != nil {
			a.nc.Close()
		} else {
			select {
			case <-closed:
			case <-ctx.Done():
				a.nc.Close()
			}
		}
	}
	if a.ns != nil {
		a.ns.Shutdown()
		waited := make(chan struct{})
		go func() { a.ns.WaitForShutdown(); close(waited) }()
		select {
		case <-waited:
		case <-ctx.Done():
			errs = append(errs, errors.New("embedded nats did not shut down in time"))
		}
	}
	a.instance.close()
	return errors.Join(errs...)
}

// enabled turns a config list into an on/off map over every known name (unlisted names are off).
func enabled(list []string, known ...string) map[string]bool {
	m := make(map[string]bool, len(known))
	for _, k := range known {
		m[k] = slices.Contains(list, k)
	}
	return m
}

// unitDirectory adapts the IPN unit list to the desk channel.
type unitDirectory struct{ u *config.Units }

func (d unitDirectory) Canonical(s string) (string, bool) {
	u, ok := d.u.Match(s)
	return u.ID, ok
}

func (d unitDirectory) Suggest(s string, n int) []string {
	var out []string
	for _, u := range d.u.Suggest(s, n) {
		out = append(out, u.ID)
	}
	return out
}
