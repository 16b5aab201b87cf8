// Package memo is the scanned-memo (oficio) channel. Memos arrive as files dropped into a spool
// folder (the scanner's scan-to-folder target) or uploaded with POST /api/v1/memos; both go through
// one pipeline: the file is claimed into <spool>/processing/, its text is read (PDF text layer with
// pdftotext, otherwise pdftoppm and tesseract -l spa), the memo fields are extracted (number, date,
// unit, subject, addressee, signer, c.c.p., e-mails, extensions), the scan is archived and the
// request published; only then does the file move to <spool>/processed/. A file that cannot be
// handled moves to <spool>/failed/ with NAME.reason.txt beside it.
//
// Spool layout:
//
//	<spool>/                 incoming: complete files are claimed (dot-files and partial names ignored)
//	<spool>/processing/      claimed, being read or waiting to be published (resumed after a crash)
//	<spool>/processed/       published
//	<spool>/failed/          NAME and NAME.reason.txt
//	<spool>/.caud/records/   <sha256>.json: the request id given to each scan (deduplication)
//	<spool>/.caud/uploads/   what an upload said (sender e-mail, unit) while it is in processing/
//	<spool>/.caud/tmp/       uploads being received, pages being rendered
//
// Nothing is deleted: a crash at any point leaves the file in the spool or in processing/, and a
// restart finishes it with the same request id and Nats-Msg-Id ("memo:<sha256>"), so JetStream keeps
// one request.
package memo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ipn-cgsi/caud/channels"
)

// Options configures the memo channel. Zero values are the documented defaults.
type Options struct {
	// SpoolDir is the folder scanners drop files into; "" means "data/spool". The sub-folders are
	// created by New.
	SpoolDir string
	// MaxBytes bounds one file or upload; 0 means 50 MiB. Larger uploads get 413, larger spool
	// files go to failed/.
	MaxBytes int64
	// Workers is how many memos are read at once (spool and uploads together); 0 means 2.
	Workers int
	// PageWorkers is how many pages of one PDF are rendered and read at once; 0 means the number
	// of CPUs, at most 4. (A multi-page TIFF is read by one tesseract run.)
	PageWorkers int
	// PageTimeout bounds rendering and reading one page; 0 means 60 s.
	PageTimeout time.Duration
	// MaxPages refuses longer documents; 0 means 20.
	MaxPages int
	// MaxPixels refuses larger images (per page); 0 means 80 megapixels (A3 at 600 dpi is 70).
	MaxPixels int64
	// RescanInterval is how often the spool is listed besides file-system notifications, and how
	// often a file left in processing/ by a transient error is retried; 0 means 30 s.
	RescanInterval time.Duration
	// StableFor is how long a file's size and modification time must stay unchanged before it is
	// taken; 0 means 1 s. Writers that write a temporary name and rename need no wait beyond it.
	StableFor time.Duration
	// PublishTimeout bounds archiving and publishing one memo; 0 means 30 s. On timeout the file
	// stays in processing/ and is retried.
	PublishTimeout time.Duration
	// Units resolves the letterhead to a canonical unit id; nil keeps the unit as printed.
	Units Units
	// Sink publishes requests. Optional: when nil, ServeHTTP uses the sink given to Run (and answers
	// 503 until Run started).
	Sink       channels.Sink
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Errors.
var (
	// ErrNoSink is returned by Run with a nil sink.
	ErrNoSink = errors.New("memo: no sink")
	// ErrToolsMissing is wrapped when a file waits because pdftotext, pdftoppm, pdfinfo or
	// tesseract (with Spanish) is missing.
	ErrToolsMissing = errors.New("memo: OCR tools missing")
)

// Memo is the memo channel. Safe for concurrent use; Run may be called once.
type Memo struct {
	o      Options
	log    *slog.Logger
	ids    *channels.IDs
	m      metrics
	dirs   dirs
	sem    chan struct{}
	shaMu  keyedMutex
	health healthState

	mu       sync.Mutex
	sink     channels.Sink
	ex       *extractor
	missing  []string
	inFlight map[string]bool // names in processing/

	// afterPublish, set by tests, runs between the publish and the move to processed/; an error
	// abandons the file there as a crash would.
	afterPublish func(name string) error
}

type dirs struct{ spool, processing, processed, failed, records, uploads, tmp string }

type metrics struct {
	pages     prometheus.Counter
	ocr       prometheus.Histogram
	conf      prometheus.Histogram
	failed    *prometheus.CounterVec
	processed prometheus.Counter
	dups      prometheus.Counter
}

// New checks the options, creates the spool folders and looks for the tools. A missing tool is not
// an error: Health reports it and files wait in the spool until it is installed.
func New(o Options) (*Memo, error) {
	if o.SpoolDir == "" {
		o.SpoolDir = filepath.Join("data", "spool")
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = 50 << 20
	}
	if o.Workers <= 0 {
		o.Workers = 2
	}
	if o.PageWorkers <= 0 {
		o.PageWorkers = min(runtime.NumCPU(), 4)
	}
	if o.PageTimeout <= 0 {
		o.PageTimeout = 60 * time.Second
	}
	if o.MaxPages <= 0 {
		o.MaxPages = 20
	}
	if o.MaxPixels <= 0 {
		o.MaxPixels = 80e6
	}
	if o.RescanInterval <= 0 {
		o.RescanInterval = 30 * time.Second
	}
	if o.StableFor <= 0 {
		o.StableFor = time.Second
	}
	if o.PublishTimeout <= 0 {
		o.PublishTimeout = 30 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	spool, err := filepath.Abs(o.SpoolDir)
	if err != nil {
		return nil, fmt.Errorf("spool dir: %w", err)
	}
	d := dirs{
		spool: spool, processing: filepath.Join(spool, "processing"), processed: filepath.Join(spool, "processed"),
		failed: filepath.Join(spool, "failed"), records: filepath.Join(spool, ".caud", "records"),
		uploads: filepath.Join(spool, ".caud", "uploads"), tmp: filepath.Join(spool, ".caud", "tmp"),
	}
	for _, p := range []string{d.spool, d.processing, d.processed, d.failed, d.records, d.uploads, d.tmp} {
		if err := os.MkdirAll(p, 0o750); err != nil {
			return nil, fmt.Errorf("create spool: %w", err)
		}
	}
	mm := &Memo{o: o, log: log, ids: channels.NewIDs(), dirs: d, sem: make(chan struct{}, o.Workers),
		inFlight: map[string]bool{}, sink: o.Sink}
	mm.m = metrics{
		pages:     prometheus.NewCounter(prometheus.CounterOpts{Name: "caud_memo_pages_total", Help: "Memo pages read (OCR or PDF text layer)."}),
		ocr:       prometheus.NewHistogram(prometheus.HistogramOpts{Name: "caud_memo_ocr_seconds", Help: "Time tesseract took per OCR run (one page, or one multi-page TIFF).", Buckets: prometheus.ExponentialBuckets(0.25, 2, 10)}),
		conf:      prometheus.NewHistogram(prometheus.HistogramOpts{Name: "caud_memo_confidence", Help: "Mean OCR word confidence (0-100) per memo.", Buckets: prometheus.LinearBuckets(10, 10, 9)}),
		failed:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "caud_memo_failed_total", Help: "Memo files moved to failed/ (or uploads refused), by reason."}, []string{"reason"}),
		processed: prometheus.NewCounter(prometheus.CounterOpts{Name: "caud_memo_processed_total", Help: "Memo files published and moved to processed/ (duplicates included)."}),
		dups:      prometheus.NewCounter(prometheus.CounterOpts{Name: "caud_memo_duplicates_total", Help: "Memo files whose scan (SHA-256) had already become a request."}),
	}
	if o.Registerer != nil {
		for _, c := range []prometheus.Collector{mm.m.pages, mm.m.ocr, mm.m.conf, mm.m.failed, mm.m.processed, mm.m.dups} {
			if err := o.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("memo metrics: %w", err)
			}
		}
	}
	mm.refreshTools(context.Background())
	return mm, nil
}

// refreshTools looks the tools up again (after a missing one is installed) and reports whether
// all are present.
func (m *Memo) refreshTools(ctx context.Context) bool {
	m.mu.Lock()
	ok := m.ex != nil
	m.mu.Unlock()
	if ok {
		return true
	}
	t, missing := findTools(ctx)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.missing = missing
	if len(missing) > 0 {
		m.health.set("memo.tools", false, "missing: "+strings.Join(missing, ", ")+"; memo files wait in the spool", m.o.Now())
		return false
	}
	m.health.set("memo.tools", true, "pdftotext, pdftoppm, pdfinfo, tesseract (spa)", m.o.Now())
	m.ex = &extractor{t: t, pageWorkers: m.o.PageWorkers, pageTimeout: m.o.PageTimeout, maxPages: m.o.MaxPages,
		maxPixels: m.o.MaxPixels, tmp: m.dirs.tmp, onPage: func(p page) {
			m.m.ocr.Observe(p.seconds)
		}}
	return true
}

func (m *Memo) extractor() *extractor {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ex
}

// Health reports the tools (which are missing) and whether the spool is writable.
func (m *Memo) Health() []channels.Health {
	m.refreshTools(context.Background())
	f, err := os.CreateTemp(m.dirs.tmp, ".health-")
	if err == nil {
		f.Close()
		os.Remove(f.Name())
		m.health.set("memo.spool", true, m.dirs.spool, m.o.Now())
	} else {
		m.health.set("memo.spool", false, "spool not writable: "+err.Error(), m.o.Now())
	}
	return m.health.list()
}

type healthState struct {
	mu     sync.Mutex
	checks []channels.Health
}

func (h *healthState) set(name string, ok bool, detail string, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := range h.checks {
		if h.checks[i].Name == name {
			c := &h.checks[i]
			if !ok && c.OK {
				c.Since = now
			}
			if ok {
				c.Since = time.Time{}
			}
			c.OK, c.Detail = ok, detail
			return
		}
	}
	c := channels.Health{Name: name, OK: ok, Detail: detail}
	if !ok {
		c.Since = now
	}
	h.checks = append(h.checks, c)
}

func (h *healthState) list() []channels.Health {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]channels.Health(nil), h.checks...)
}

// Run watches the spool (fsnotify and a periodic rescan), resumes what a previous run left in
// processing/, and reads memos with up to Options.Workers at once until ctx ends. It returns nil
// when ctx ends, after the memos being read stopped (they stay in processing/ for the next run).
func (m *Memo) Run(ctx context.Context, sink channels.Sink) error {
	if sink == nil {
		return ErrNoSink
	}
	m.mu.Lock()
	if m.sink == nil {
		m.sink = sink
	}
	m.mu.Unlock()
	var wg sync.WaitGroup
	defer wg.Wait()

	w, err := fsnotify.NewWatcher()
	var events chan fsnotify.Event
	if err == nil {
		defer w.Close()
		if err = w.Add(m.dirs.spool); err == nil {
			events = w.Events
		}
	}
	if err != nil {
		m.log.Warn("memo spool: no file notifications, rescanning only", "err", err, "every", m.o.RescanInterval)
	}

	type cand struct {
		size    int64
		mod     time.Time
		changed time.Time
	}
	pending := map[string]*cand{}
	note := func(name string) {
		if _, ok := pending[name]; !ok && !ignored(name) {
			pending[name] = &cand{size: -1}
		}
	}
	rescan := func() {
		m.refreshTools(ctx)
		if ents, err := os.ReadDir(m.dirs.spool); err == nil {
			for _, e := range ents {
				if e.Type().IsRegular() {
					note(e.Name())
				}
			}
		} else {
			m.log.Error("memo spool: list", "err", err)
		}
		if ents, err := os.ReadDir(m.dirs.processing); err == nil {
			for _, e := range ents {
				if e.Type().IsRegular() && m.startProcessing(e.Name()) {
					wg.Add(1)
					go func() {
						defer wg.Done()
						m.work(ctx, sink, e.Name())
					}()
				}
			}
		}
	}
	rescan()
	tick := time.NewTicker(m.o.RescanInterval)
	defer tick.Stop()
	settle := time.NewTicker(min(m.o.StableFor/4, 250*time.Millisecond))
	defer settle.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if ev.Has(fsnotify.Create) || ev.Has(fsnotify.Write) || ev.Has(fsnotify.Chmod) {
				if filepath.Dir(ev.Name) == m.dirs.spool {
					note(filepath.Base(ev.Name))
				}
			}
		case <-tick.C:
			rescan()
		case <-settle.C:
			if len(pending) == 0 || m.extractor() == nil {
				continue // files wait in the spool while a tool is missing
			}
			now := time.Now()
			for name, c := range pending {
				st, err := os.Lstat(filepath.Join(m.dirs.spool, name))
				if err != nil || !st.Mode().IsRegular() {
					delete(pending, name)
					continue
				}
				if st.Size() != c.size || !st.ModTime().Equal(c.mod) {
					c.size, c.mod, c.changed = st.Size(), st.ModTime(), now
					continue
				}
				if now.Sub(c.changed) < m.o.StableFor {
					continue
				}
				delete(pending, name)
				proc, err := m.claim(filepath.Join(m.dirs.spool, name), name)
				if err != nil {
					if !errors.Is(err, os.ErrNotExist) {
						m.log.Error("memo spool: claim", "file", name, "err", err)
					}
					continue
				}
				if m.startProcessing(proc) {
					wg.Add(1)
					go func() {
						defer wg.Done()
						m.work(ctx, sink, proc)
					}()
				}
			}
		}
	}
}

// ignored says whether a spool name is not (yet) a memo: dot-files, temporary and partial names.
func ignored(name string) bool {
	l := strings.ToLower(name)
	if strings.HasPrefix(l, ".") || strings.HasPrefix(l, "~") || strings.HasSuffix(l, "~") {
		return true
	}
	for _, s := range []string{".tmp", ".temp", ".part", ".partial", ".crdownload", ".filepart", ".download", ".swp", ".lock", ".reason.txt"} {
		if strings.HasSuffix(l, s) {
			return true
		}
	}
	return false
}

// claim moves a spool file into processing/ without replacing anything there, returning its name
// there.
// Names reserved by an upload (its metadata exists) are skipped.
func (m *Memo) claim(src, name string) (string, error) {
	return moveUnique(src, m.dirs.processing, name, func(cand string) bool {
		_, err := os.Lstat(filepath.Join(m.dirs.uploads, cand+".json"))
		return err == nil
	})
}

func moveNoReplace(src, dir, name string) (string, error) {
	return moveUnique(src, dir, name, nil)
}

// moveUnique moves src into dir under name, or name-2, name-3... when that exists or skip says so.
func moveUnique(src, dir, name string, skip func(cand string) bool) (string, error) {
	for i := 1; i < 1000; i++ {
		cand := numbered(name, i)
		if skip != nil && skip(cand) {
			continue
		}
		err := linkExact(src, filepath.Join(dir, cand))
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return "", err
		}
		syncDir(dir)
		return cand, nil
	}
	return "", fmt.Errorf("move %s: too many files of that name in %s", name, dir)
}

func numbered(name string, i int) string {
	if i <= 1 {
		return name
	}
	ext := filepath.Ext(name)
	return fmt.Sprintf("%s-%d%s", strings.TrimSuffix(name, ext), i, ext)
}

// linkExact moves src to dst without replacing dst (os.ErrExist then). os.Link fails when the target
// exists, so two claimers (or two replicas on one spool) never take the same name.
func linkExact(src, dst string) error {
	err := os.Link(src, dst)
	if err == nil {
		if err := os.Remove(src); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	if errors.Is(err, os.ErrExist) {
		return os.ErrExist
	}
	if errors.Is(err, syscall.EXDEV) || errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.ENOTSUP) {
		// No hard links here (some SMB or FUSE mounts): rename after checking.
		if _, err := os.Lstat(dst); err == nil {
			return os.ErrExist
		}
		return os.Rename(src, dst)
	}
	return err
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

func (m *Memo) startProcessing(name string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.inFlight[name] {
		return false
	}
	m.inFlight[name] = true
	return true
}

func (m *Memo) doneProcessing(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.inFlight, name)
}

// work reads one file of processing/ under the workers' semaphore.
func (m *Memo) work(ctx context.Context, sink channels.Sink, name string) {
	defer m.doneProcessing(name)
	select {
	case m.sem <- struct{}{}:
	case <-ctx.Done():
		return
	}
	defer func() { <-m.sem }()
	res, err := m.process(ctx, sink, name)
	var f *Failure
	switch {
	case errors.As(err, &f):
		// already moved to failed/ and logged
	case err != nil:
		m.log.Warn("memo: left in processing/ for a retry", "file", name, "err", err)
	default:
		m.log.Info("memo published", "file", name, "id", res.ID, "duplicate", res.Duplicate)
	}
}

// Result says what became of one memo file.
type Result struct {
	ID        string
	Duplicate bool
	Fields    Fields
}

// record is the request id given to one scan, kept under .caud/records/<sha256>.json.
type record struct {
	ID         string    `json:"id"`
	File       string    `json:"file"`
	Source     string    `json:"source"`
	ReceivedAt time.Time `json:"received_at"`
	Published  bool      `json:"published"`
}

// upload is what an upload said besides the file, kept while it is in processing/.
type upload struct {
	Name  string `json:"name"`
	Email string `json:"email,omitempty"`
	Unit  string `json:"unit,omitempty"`
}

// process takes one file of processing/ to processed/ (published) or failed/ (a *Failure). Any
// other error leaves it in processing/ for a retry.
func (m *Memo) process(ctx context.Context, sink channels.Sink, name string) (Result, error) {
	path := filepath.Join(m.dirs.processing, name)
	var up *upload
	if b, err := os.ReadFile(filepath.Join(m.dirs.uploads, name+".json")); err == nil {
		up = new(upload)
		if err := json.Unmarshal(b, up); err != nil {
			up = nil
		}
	}
	origName, source := sanitizeName(name), "memo://spool/"
	if up != nil {
		origName, source = up.Name, "memo://upload/"
	}
	st, err := os.Stat(path)
	if err != nil {
		return Result{}, err
	}
	if st.Size() == 0 {
		return Result{}, m.failFile(name, "", fail("empty", 400, "El archivo está vacío.", "file is empty"))
	}
	if st.Size() > m.o.MaxBytes {
		return Result{}, m.failFile(name, "", fail("too_large", 413, fmt.Sprintf("El archivo excede %d MiB.", m.o.MaxBytes>>20),
			"file is %d bytes, over the limit of %d", st.Size(), m.o.MaxBytes))
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return Result{}, err
	}
	sum := sha256.Sum256(data)
	sha := hex.EncodeToString(sum[:])
	unlock := m.shaMu.lock(sha)
	defer unlock()

	recPath := filepath.Join(m.dirs.records, sha+".json")
	var rec record
	haveRec := false
	if b, err := os.ReadFile(recPath); err == nil && json.Unmarshal(b, &rec) == nil && rec.ID != "" {
		haveRec = true
	}
	if haveRec && rec.Published {
		m.m.dups.Inc()
		if err := m.finish(name); err != nil {
			return Result{}, err
		}
		return Result{ID: rec.ID, Duplicate: true}, nil
	}
	kind := sniff(data)
	if kind == "" {
		return Result{}, m.failFile(name, sha, unsupported(data))
	}
	if !haveRec {
		now := m.o.Now().UTC()
		rec = record{ID: m.ids.New(now), File: origName, Source: source + origName, ReceivedAt: now}
		if err := writeFileAtomic(recPath, mustJSON(rec)); err != nil {
			return Result{}, fmt.Errorf("record: %w", err)
		}
	}
	ex := m.extractor()
	if ex == nil {
		return Result{}, ErrToolsMissing
	}
	// The tools see a temporary copy named by the hash, never the name the file came with.
	tmp := filepath.Join(m.dirs.tmp, sha[:32]+extensions[kind])
	if err := writeFileAtomic(tmp, data); err != nil {
		return Result{}, err
	}
	defer os.Remove(tmp)
	text, err := ex.run(ctx, tmp, kind)
	var f *Failure
	if errors.As(err, &f) {
		return Result{}, m.failFile(name, sha, f)
	}
	if err != nil {
		return Result{}, err
	}
	m.m.pages.Add(float64(text.pages))
	if text.method == "ocr" {
		m.m.conf.Observe(text.confidence)
	}
	body := strings.TrimSpace(text.text)
	if countLetters([]byte(body)) < 20 {
		return Result{}, m.failFile(name, sha, fail("no_text", 422, "No se encontró texto legible en el documento.",
			"no readable text (%d pages, %s, confidence %.0f): blank or unreadable scan", text.pages, text.method, text.confidence))
	}
	if len(body) > channels.MaxTextBytes {
		return Result{}, m.failFile(name, sha, fail("text_too_long", 413, "El documento tiene demasiado texto.",
			"text is %d bytes, over %d", len(body), channels.MaxTextBytes))
	}
	fields := Extract(body, m.o.Units)
	req := m.request(rec, fields, text, body, up)

	pctx, cancel := context.WithTimeout(ctx, m.o.PublishTimeout)
	defer cancel()
	ctype := contentTypes[kind]
	obj, err := sink.Archive(pctx, channels.ChannelMemo, ctype, bytes.NewReader(data))
	if err != nil {
		return Result{}, fmt.Errorf("archive scan: %w", err)
	}
	req.Original = obj
	req.Attachments = []channels.Attachment{{Name: origName, ContentType: ctype, Size: obj.Size, SHA256: obj.SHA256, Object: obj.Object}}
	receipt, err := sink.Publish(pctx, channels.Submission{
		Request: req, Subject: channels.ChannelMemo, MsgID: "memo:" + sha, Source: rec.Source,
	})
	if errors.Is(err, channels.ErrInvalid) {
		return Result{}, m.failFile(name, sha, fail("invalid", 422, "El documento no produjo una solicitud válida.", "request refused: %v", err))
	}
	if err != nil {
		return Result{}, fmt.Errorf("publish: %w", err)
	}
	if m.afterPublish != nil {
		if err := m.afterPublish(name); err != nil {
			return Result{}, err
		}
	}
	rec.Published = true
	if err := writeFileAtomic(recPath, mustJSON(rec)); err != nil {
		return Result{}, fmt.Errorf("record: %w", err)
	}
	if err := m.finish(name); err != nil {
		return Result{}, err
	}
	if receipt.Duplicate {
		m.m.dups.Inc()
	}
	return Result{ID: rec.ID, Duplicate: receipt.Duplicate, Fields: fields}, nil
}

func (m *Memo) request(rec record, f Fields, ex extraction, body string, up *upload) *channels.Request {
	memo := f.Memo()
	memo.Pages, memo.Method = ex.pages, ex.method
	if ex.method == "ocr" {
		memo.Confidence = float64(int(ex.confidence*10)) / 10
	}
	r := &channels.Request{
		ID: rec.ID, Channel: channels.MediumMemo, ReceivedAt: rec.ReceivedAt,
		Source:    channels.Source{File: rec.File},
		Requester: channels.Requester{Name: f.Signer},
		Subject:   clip(f.Subject, channels.MaxSubjectBytes),
		Text:      body,
		Memo:      memo,
	}
	if f.UnitKnown {
		r.Requester.Unit = f.Unit
	}
	if len(f.Emails) > 0 {
		r.Requester.Email = f.Emails[0]
	}
	if len(f.Extensions) > 0 {
		r.Requester.Extension = f.Extensions[0]
	}
	if up != nil {
		if up.Email != "" {
			r.Requester.Email = up.Email
		}
		if up.Unit != "" {
			r.Requester.Unit = up.Unit
		}
	}
	return r
}

// finish moves a published file to processed/.
func (m *Memo) finish(name string) error {
	if _, err := moveNoReplace(filepath.Join(m.dirs.processing, name), m.dirs.processed, name); err != nil {
		return fmt.Errorf("move to processed: %w", err)
	}
	os.Remove(filepath.Join(m.dirs.uploads, name+".json"))
	m.m.processed.Inc()
	return nil
}

// failFile moves a file to failed/ with NAME.reason.txt and returns f.
func (m *Memo) failFile(name, sha string, f *Failure) error {
	m.m.failed.WithLabelValues(f.Code).Inc()
	m.log.Warn("memo failed", "file", name, "reason", f.Code, "detail", f.Msg)
	// Pick the final name first so the reason sits beside it; the reason is written before the
	// move so a crash in between only repeats the work.
	final := name
	base, ext := strings.TrimSuffix(name, filepath.Ext(name)), filepath.Ext(name)
	for i := 2; ; i++ {
		if _, err := os.Lstat(filepath.Join(m.dirs.failed, final)); errors.Is(err, os.ErrNotExist) {
			break
		}
		final = fmt.Sprintf("%s-%d%s", base, i, ext)
		if i > 1000 {
			return f
		}
	}
	reason := fmt.Sprintf("file: %s\nfailed_at: %s\nreason: %s\ndetail: %s\nsha256: %s\n\n"+
		"This file did not become a request. Fix it (or scan it again) and drop it into the spool again.\n"+
		"Este archivo no se convirtió en solicitud: %s\n",
		sanitizeName(name), m.o.Now().UTC().Format(time.RFC3339), f.Code, f.Msg, sha, f.Spanish)
	if err := writeFileAtomic(filepath.Join(m.dirs.failed, final+".reason.txt"), []byte(reason)); err != nil {
		m.log.Error("memo: write reason", "file", name, "err", err)
	}
	if _, err := moveNoReplace(filepath.Join(m.dirs.processing, name), m.dirs.failed, final); err != nil {
		m.log.Error("memo: move to failed", "file", name, "err", err)
	}
	os.Remove(filepath.Join(m.dirs.uploads, name+".json"))
	return f
}

func unsupported(data []byte) *Failure {
	ct := http.DetectContentType(data)
	if i := strings.IndexByte(ct, ';'); i > 0 {
		ct = ct[:i]
	}
	return fail("unsupported_type", 415, "Tipo de archivo no admitido: "+ct+". Envíe PDF, PNG, JPEG o TIFF.",
		"unsupported file type: content is %s, not PDF, PNG, JPEG or TIFF (the file name does not decide)", ct)
}

// sanitizeName keeps the last element of a client-supplied name, without control characters,
// separators or leading dots, and at most 100 bytes; "memo" when nothing is left.
func sanitizeName(s string) string {
	s = strings.ToValidUTF8(s, "")
	if i := strings.LastIndexAny(s, `/\`); i >= 0 {
		s = s[i+1:]
	}
	s = strings.Map(func(r rune) rune {
		switch {
		case r < ' ' || r == 0x7f || !unicode.IsPrint(r):
			return -1
		case strings.ContainsRune(`<>:"|?*`, r):
			return '_'
		}
		return r
	}, s)
	s = strings.TrimLeft(strings.TrimSpace(s), ".")
	if len(s) > 100 {
		ext := filepath.Ext(s)
		if len(ext) > 10 || !utf8.ValidString(ext) {
			ext = ""
		}
		s = clip(s, 100-len(ext)) + ext
	}
	if s == "" {
		s = "memo"
	}
	return s
}

func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return err
	}
	syncDir(filepath.Dir(path))
	return nil
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// keyedMutex serializes work on one key (a scan's SHA-256), so a scan dropped and uploaded at the
// same moment gets one request id.
type keyedMutex struct {
	mu sync.Mutex
	m  map[string]*keyed
}

type keyed struct {
	mu   sync.Mutex
	refs int
}

func (k *keyedMutex) lock(key string) func() {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyed{}
	}
	e := k.m[key]
	if e == nil {
		e = &keyed{}
		k.m[key] = e
	}
	e.refs++
	k.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}
