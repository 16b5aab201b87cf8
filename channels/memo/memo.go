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
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

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
	health channels.HealthTracker

	mu       sync.Mutex
	sink     channels.Sink
	ex       *extractor
	missing  []string
	inFlight map[string]bool // names in processing/
	waiting  int             // spool files held back while a tool is missing, as of the last look

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
	waiting   prometheus.Gauge
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
	log := channels.OrDiscard(o.Logger)
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
		waiting:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "caud_memo_spool_waiting", Help: "Memo files the spool holds back while an OCR or PDF tool is missing."}),
	}
	if o.Registerer != nil {
		for _, c := range []prometheus.Collector{mm.m.pages, mm.m.ocr, mm.m.conf, mm.m.failed, mm.m.processed, mm.m.dups, mm.m.waiting} {
			if err := o.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("memo metrics: %w", err)
			}
		}
	}
	mm.health.Now = o.Now
	mm.refreshTools(context.Background())
	return mm, nil
}

// Waiting is how many spool files the spool watcher held back, at its last look, because a tool
// is missing (caud_memo_spool_waiting).
func (m *Memo) Waiting() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.waiting
}

func (m *Memo) setWaiting(n int) {
	m.mu.Lock()
	m.waiting = n
	m.mu.Unlock()
	m.m.waiting.Set(float64(n))
}

func (m *Memo) extractor() *extractor {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ex
}
