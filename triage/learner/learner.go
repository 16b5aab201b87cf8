// Package learner is caud's automatic, versioned retraining of the triage model from the agents'
// corrections (CAU_CORRECTIONS). On a schedule, when enough new corrections have arrived (or when an
// operator asks), it trains a candidate model from the catalog and the corrections (triage.Learn),
// holds a deterministic part of the corrections out, and compares the candidate with the model in
// force on the catalog's own examples and on the held-out corrections. It promotes the candidate
// only if it is not worse on the catalog's examples and better on the held-out corrections; a
// contradictory set, or one that would teach the engine to be wrong (poisoned), is refused, and the
// refusal is logged, counted and shown (GET /api/v1/triage/model, /readyz).
//
// Promoted models are kept, each under its version, in the object store CAU_TRIAGE_MODELS; the KV
// bucket CAU_TRIAGE_MODEL names the one in force ("current") and records the last attempt
// ("attempt"). This package is the only owner of both. Every replica watches "current" and loads a
// promotion into its triage.Store without a restart, so all replicas decide with the same model;
// decisions name it in catalog_version ("<catalog>+m.<model>").
package learner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/httpjson"
	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/channels/retry"
	"github.com/ipn-cgsi/caud/triage"
)

// JetStream assets owned by this package.
const (
	// BucketModels is the object store of every promoted model, one object per version.
	BucketModels = "CAU_TRIAGE_MODELS"
	// KVModel names the model in force (key keyCurrent) and the last attempt (key keyAttempt).
	KVModel    = "CAU_TRIAGE_MODEL"
	keyCurrent = "current"
	keyAttempt = "attempt"
)

// Defaults of Options.
const (
	DefaultInterval = 10 * time.Minute
	DefaultMinNew   = 10
)

// Attempt results.
const (
	ResultPromoted      = "promoted"
	ResultContradictory = "refused_contradictory"
	ResultNotPromoted   = "not_promoted"
	ResultError         = "error"
)

// Options configure a Learner.
type Options struct {
	JS jetstream.JetStream
	// Corrections is the CAU_CORRECTIONS stream (natsjs.Handles.Corrections).
	Corrections jetstream.Stream
	// Store is the engine of this process; promotions (by any replica) are loaded into it.
	Store *triage.Store
	// Replicas of the bucket and the object store (nats.replicas).
	Replicas int
	// Interval between checks for new corrections (default 10m); 0 keeps the default.
	Interval time.Duration
	// MinNew is how many new corrections start a retraining (default 10).
	MinNew int
	// Train enables the scheduled retraining in this process; without it the Learner only loads
	// promotions (every replica must, only some need to train).
	Train      bool
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Current names the model in force.
type Current struct {
	Version     string    `json:"version"`
	Object      string    `json:"object"`
	Catalog     string    `json:"catalog_version"`
	Corrections int       `json:"corrections"` // examples the model holds
	PromotedAt  time.Time `json:"promoted_at"`
}

// Attempt is the record of one retraining: what was read, the comparison and the decision.
type Attempt struct {
	At time.Time `json:"at"`
	// Seq is the last CAU_CORRECTIONS sequence read.
	Seq    uint64 `json:"seq"`
	Result string `json:"result"`
	// Reason says why, in Spanish for the operator and the agents.
	Reason string `json:"reason"`
	// Candidate is the version of the model trained (promoted or not).
	Candidate string             `json:"candidate,omitempty"`
	Report    triage.LearnReport `json:"report"`
	Error     string             `json:"error,omitempty"`
}

// Status is what GET /api/v1/triage/model answers.
type Status struct {
	// Engine is the catalog_version this process decides with.
	Engine  string   `json:"engine"`
	Current *Current `json:"current,omitempty"`
	Last    *Attempt `json:"last_attempt,omitempty"`
	// LoadError is the last failure to load a promoted model into this process ("" none).
	LoadError string `json:"load_error,omitempty"`
}

// Learner retrains, compares, promotes and loads the triage model. Run starts it; Retrain runs
// one attempt at once.
type Learner struct {
	o      Options
	log    *slog.Logger
	kv     jetstream.KeyValue
	models jetstream.ObjectStore

	attempts *prometheus.CounterVec
	loaded   prometheus.Counter

	train   sync.Mutex // one retraining at a time in this process
	mu      sync.Mutex
	lastSeq uint64 // corrections seen by the last attempt of this process
	lastCat string
	loadErr error
	loadAt  time.Time
}

// New sets up the bucket and the object store (retrying while JetStream is not ready, until ctx
// ends) and registers the metrics.
func New(ctx context.Context, o Options) (*Learner, error) {
	if o.JS == nil || o.Corrections == nil || o.Store == nil {
		return nil, errors.New("learner: JS, Corrections and Store are required")
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.MinNew <= 0 {
		o.MinNew = DefaultMinNew
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	l := &Learner{o: o, log: channels.OrDiscard(o.Logger)}
	replicas := max(o.Replicas, 1)
	var err error
	if l.kv, err = natsjs.EnsureKeyValue(ctx, o.JS, jetstream.KeyValueConfig{
		Bucket: KVModel, Description: "the triage model in force and the last retraining attempt",
		History: 5, Storage: jetstream.FileStorage, Replicas: replicas,
	}, natsjs.Topology{}); err != nil {
		return nil, fmt.Errorf("learner kv: %w", err)
	}
	if l.models, err = natsjs.EnsureObjectStore(ctx, o.JS, jetstream.ObjectStoreConfig{
		Bucket: BucketModels, Description: "every promoted triage model, by version",
		Storage: jetstream.FileStorage, Replicas: replicas,
	}, natsjs.Topology{}); err != nil {
		return nil, fmt.Errorf("learner object store: %w", err)
	}
	l.attempts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "caud_triage_learn_attempts_total",
		Help: "Automatic retrainings of the triage model from the agents' corrections, by result (promoted, refused_contradictory, not_promoted, error).",
	}, []string{"result"})
	l.loaded = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "caud_triage_model_loads_total",
		Help: "Promoted triage models loaded into this process's engine.",
	})
	if o.Registerer != nil {
		l.attempts = channels.Register(o.Registerer, l.attempts)
		l.loaded = channels.Register(o.Registerer, l.loaded)
	}
	for _, r := range []string{ResultPromoted, ResultContradictory, ResultNotPromoted, ResultError} {
		l.attempts.WithLabelValues(r)
	}
	return l, nil
}

// LoadCurrent loads the model in force, if any, into the Store now (at start, before the triage
// worker decides its first request); Run keeps following promotions.
func (l *Learner) LoadCurrent(ctx context.Context) error {
	e, err := l.kv.Get(ctx, keyCurrent)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the triage model in force: %w", err)
	}
	l.load(ctx, e.Value())
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.loadErr
}

// Run loads the model in force and every later promotion into the Store, and, with Options.Train,
// retrains every Interval when at least MinNew corrections are new. It returns when ctx ends.
func (l *Learner) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	if l.o.Train {
		wg.Go(func() { l.schedule(ctx) })
	}
	err := l.watch(ctx)
	wg.Wait()
	return err
}

// watch follows the "current" key and loads each promotion.
func (l *Learner) watch(ctx context.Context) error {
	for ctx.Err() == nil {
		w, err := l.kv.Watch(ctx, keyCurrent)
		if err != nil {
			l.log.Warn("triage model: watch failed, retrying", "err", err)
			if !retry.Sleep(ctx, 2*time.Second) {
				break
			}
			continue
		}
		for e := range w.Updates() {
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue // end of the initial values, or a delete
			}
			l.load(ctx, e.Value())
		}
		_ = w.Stop()
		// The channel closes when the watch ends (connection loss): watch again.
		if !retry.Sleep(ctx, time.Second) {
			break
		}
	}
	return nil
}

// load reads the promoted model named by cur and hands it to the Store.
func (l *Learner) load(ctx context.Context, cur []byte) {
	err := func() error {
		var c Current
		if err := json.Unmarshal(cur, &c); err != nil {
			return fmt.Errorf("read %s: %w", keyCurrent, err)
		}
		if m := l.o.Store.Engine().Model(); m != nil && m.Version == c.Version {
			return nil // already in force (this process promoted it)
		}
		data, err := l.models.GetBytes(ctx, c.Object)
		if err != nil {
			return fmt.Errorf("get model %s: %w", c.Object, err)
		}
		m, err := triage.ReadModel(bytes.NewReader(data))
		if err != nil {
			return err
		}
		if err := l.o.Store.SetModel(m); err != nil {
			return err
		}
		l.loaded.Inc()
		l.log.Info("triage model loaded", "version", m.Version, "engine", l.o.Store.Engine().Version())
		return nil
	}()
	l.mu.Lock()
	l.loadErr, l.loadAt = err, l.o.Now()
	l.mu.Unlock()
	if err != nil {
		l.log.Error("triage model: promoted model not loaded, the engine keeps its model", "err", err)
	}
}

func (l *Learner) schedule(ctx context.Context) {
	t := time.NewTicker(l.o.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := l.retrain(ctx, false); err != nil && ctx.Err() == nil {
				l.log.Warn("triage model: retraining failed", "err", err)
			}
		}
	}
}

// Retrain runs one retraining now, whatever the number of new corrections, and returns its record
// (also stored as the last attempt). The error is for failures to read or store (JetStream); a
// candidate refused or not promoted is a result, not an error.
func (l *Learner) Retrain(ctx context.Context) (Attempt, error) {
	a, err := l.retrain(ctx, true)
	if a == nil {
		return Attempt{}, err
	}
	return *a, err
}

// retrain trains and compares; without force it does nothing (nil) unless MinNew corrections
// arrived since the last attempt, or the catalog changed and there are corrections.
func (l *Learner) retrain(ctx context.Context, force bool) (*Attempt, error) {
	l.train.Lock()
	defer l.train.Unlock()
	info, err := l.o.Corrections.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("corrections: %w", err)
	}
	cat := l.o.Store.Engine().Catalog()
	l.mu.Lock()
	lastSeq, lastCat := l.lastSeq, l.lastCat
	l.mu.Unlock()
	if lastSeq == 0 {
		// A restarted process continues from the last attempt recorded by any replica.
		if a, err := l.lastAttempt(ctx); err == nil && a != nil {
			lastSeq, lastCat = a.Seq, cat.Version()
		}
	}
	last := info.State.LastSeq
	fresh := last > lastSeq && int(last-lastSeq) >= l.o.MinNew || cat.Version() != lastCat && lastCat != "" && info.State.Msgs > 0
	if !force && !fresh {
		return nil, nil
	}
	a := &Attempt{At: l.o.Now().UTC(), Seq: last}
	corrections, err := l.read(ctx, last)
	if err == nil {
		err = l.compare(ctx, cat, corrections, a)
	}
	if err != nil {
		a.Result, a.Error = ResultError, err.Error()
		a.Reason = "no se pudo reentrenar: " + err.Error()
	}
	l.mu.Lock()
	l.lastSeq, l.lastCat = last, cat.Version()
	l.mu.Unlock()
	l.attempts.WithLabelValues(a.Result).Inc()
	b, _ := json.Marshal(a)
	if _, perr := l.kv.Put(ctx, keyAttempt, b); perr != nil && err == nil {
		err = fmt.Errorf("record attempt: %w", perr)
	}
	lvl := slog.LevelInfo
	if a.Result != ResultPromoted {
		lvl = slog.LevelWarn
	}
	l.log.Log(ctx, lvl, "triage model retraining", "result", a.Result, "reason", a.Reason, "candidate", a.Candidate,
		"corrections", a.Report.Corrections, "held_out", a.Report.HeldOut)
	return a, err
}

// compare trains the candidate, fills a, and promotes the candidate when it passes.
func (l *Learner) compare(ctx context.Context, cat *triage.Catalog, corrections []triage.Example, a *Attempt) error {
	current := l.o.Store.Engine().Model()
	m, r, err := triage.Learn(cat, current, corrections, nil)
	a.Report, a.Reason = r, r.Reason
	switch {
	case errors.Is(err, triage.ErrContradictory):
		a.Result = ResultContradictory
		return nil
	case errors.Is(err, triage.ErrNotPromoted):
		a.Result = ResultNotPromoted
		return nil
	case err != nil:
		return err
	}
	a.Candidate = m.Version
	if current != nil && current.Version == m.Version {
		a.Result, a.Reason = ResultNotPromoted, "el modelo candidato es el que ya está en uso"
		return nil
	}
	if err := l.promote(ctx, m); errors.Is(err, errRaced) {
		a.Result, a.Reason = ResultNotPromoted, "otra réplica promovió un modelo al mismo tiempo; queda en uso el suyo"
		return nil
	} else if err != nil {
		return err
	}
	a.Result = ResultPromoted
	return nil
}

// errRaced: another replica changed the model in force between the read and the update.
var errRaced = errors.New("another replica promoted a model meanwhile")

// promote stores m under its version and makes it current (compare-and-set: if another replica
// promoted meanwhile, the update fails and its model stays in force).
func (l *Learner) promote(ctx context.Context, m *triage.Model) error {
	var buf bytes.Buffer
	if err := triage.WriteModel(&buf, m); err != nil {
		return err
	}
	obj := "model-" + m.Version + ".json"
	if _, err := l.models.PutBytes(ctx, obj, buf.Bytes()); err != nil {
		return fmt.Errorf("store model %s: %w", obj, err)
	}
	cur, _ := json.Marshal(Current{Version: m.Version, Object: obj, Catalog: m.Catalog, Corrections: len(m.Examples), PromotedAt: l.o.Now().UTC()})
	prev, err := l.kv.Get(ctx, keyCurrent)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		_, err = l.kv.Create(ctx, keyCurrent, cur)
	case err == nil:
		_, err = l.kv.Update(ctx, keyCurrent, cur, prev.Revision())
	}
	var apiErr *jetstream.APIError
	if errors.Is(err, jetstream.ErrKeyExists) || errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
		return errRaced
	}
	if err != nil {
		return fmt.Errorf("promote %s: %w", m.Version, err)
	}
	// Every replica, this one included, loads it through its watch of keyCurrent: one path.
	return nil
}

// read returns the corrections up to sequence last, oldest first, as labelled examples (a
// correction's JSON uses the names of triage.Example).
func (l *Learner) read(ctx context.Context, last uint64) ([]triage.Example, error) {
	if last == 0 {
		return nil, nil
	}
	c, err := l.o.Corrections.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, fmt.Errorf("read corrections: %w", err)
	}
	var out []triage.Example
	for {
		batch, err := c.Fetch(500, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return nil, fmt.Errorf("read corrections: %w", err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				continue
			}
			var x triage.Example
			if json.Unmarshal(m.Data(), &x) == nil && x.Outcome != "" {
				out = append(out, x)
			}
			if md.Sequence.Stream >= last {
				return out, nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return nil, fmt.Errorf("read corrections: %w", err)
		}
		if n == 0 {
			return out, nil // the rest was deleted
		}
	}
}

func (l *Learner) lastAttempt(ctx context.Context) (*Attempt, error) {
	e, err := l.kv.Get(ctx, keyAttempt)
	if err != nil {
		return nil, err
	}
	var a Attempt
	if err := json.Unmarshal(e.Value(), &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// Status reports the model in force, the last attempt and this process's engine.
func (l *Learner) Status(ctx context.Context) Status {
	st := Status{Engine: l.o.Store.Engine().Version()}
	if e, err := l.kv.Get(ctx, keyCurrent); err == nil {
		var c Current
		if json.Unmarshal(e.Value(), &c) == nil {
			st.Current = &c
		}
	}
	if a, err := l.lastAttempt(ctx); err == nil {
		st.Last = a
	}
	l.mu.Lock()
	if l.loadErr != nil {
		st.LoadError = l.loadErr.Error()
	}
	l.mu.Unlock()
	return st
}

// Health reports, for /readyz, the model in force and a refused last attempt (a warning: the
// engine keeps deciding with the model in force).
func (l *Learner) Health(ctx context.Context) []channels.Health {
	st := l.Status(ctx)
	h := channels.Health{Name: "triage model", OK: true}
	if st.Current != nil {
		h.Detail = "modelo " + st.Current.Version + " (" + fmt.Sprint(st.Current.Corrections) + " correcciones)"
	} else {
		h.Detail = "sin modelo aprendido (solo el catálogo)"
	}
	if st.Last != nil && st.Last.Result != ResultPromoted {
		h.Detail += "; último reentrenamiento rechazado: " + st.Last.Reason
	}
	l.mu.Lock()
	if l.loadErr != nil {
		h.OK, h.Since = false, l.loadAt
		h.Detail += "; el modelo promovido no se pudo cargar: " + l.loadErr.Error()
	}
	l.mu.Unlock()
	return []channels.Health{h}
}

// Register adds GET /api/v1/triage/model (Status) and POST /api/v1/triage/model/retrain (one
// retraining now; its Attempt) to mux, behind auth.
func (l *Learner) Register(mux *http.ServeMux, auth func(http.Handler) http.Handler) {
	mux.Handle("GET /api/v1/triage/model", auth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpjson.Write(w, http.StatusOK, l.Status(r.Context()))
	})))
	mux.Handle("POST /api/v1/triage/model/retrain", auth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, err := l.Retrain(r.Context())
		if err != nil && a.Result == "" {
			httpjson.Fail(w, http.StatusServiceUnavailable, "no se pudo reentrenar: "+err.Error())
			return
		}
		httpjson.Write(w, http.StatusOK, a)
	})))
}
