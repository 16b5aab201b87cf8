package triage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// pollInterval is the period of the stat/hash fallback of Watch.
const pollInterval = 2 * time.Second

// settleDelay lets an editor finish writing (write, rename, chmod) before the file is read.
const settleDelay = 100 * time.Millisecond

// Store holds the current Engine and replaces it when the catalog file changes. Engine is safe to
// call from any goroutine at any time; Reload and Watch may run concurrently with it.
type Store struct {
	path   string
	model  string // learned model file (cauctl triage learn); "" none
	log    *slog.Logger
	onErr  func(error)
	engine atomic.Pointer[Engine]
	// pushed is the model handed in by SetModel (the automatic retraining), used when no model
	// file is configured.
	pushed  atomic.Pointer[Model]
	mu      sync.Mutex // serializes reloads
	lastSum [sha256.Size]byte
}

// NewStore loads the catalog at path and compiles its engine. An empty path selects the embedded
// default catalog, which is never reloaded. log may be nil (slog.Default is used); onReloadError,
// if not nil, is called with every error of a later reload (the old engine is then kept). The first
// load has no old engine to keep, so its error is returned.
func NewStore(path string, log *slog.Logger, onReloadError func(error)) (*Store, error) {
	return NewStoreWithModel(path, "", log, onReloadError)
}

// NewStoreWithModel is NewStore with a learned model file (written by `cauctl triage learn`;
// "" for none) trained into the engine. The catalog and the model are reloaded when either file
// changes; a bad model is refused like a bad catalog.
func NewStoreWithModel(path, model string, log *slog.Logger, onReloadError func(error)) (*Store, error) {
	if log == nil {
		log = slog.Default()
	}
	s := &Store{path: path, model: model, log: log, onErr: onReloadError}
	e, sum, err := s.load()
	if err != nil {
		return nil, err
	}
	s.lastSum = sum
	s.engine.Store(e)
	log.Info("triage catalog loaded", "path", path, "model", model, "version", e.Version(), "services", len(e.cat.f.Services))
	return s, nil
}

// load reads the catalog and the model and compiles them; sum covers both files' bytes.
func (s *Store) load() (*Engine, [sha256.Size]byte, error) {
	h := sha256.New()
	c := DefaultCatalog()
	if s.path != "" {
		data, err := os.ReadFile(s.path)
		if err != nil {
			return nil, [sha256.Size]byte{}, fmt.Errorf("read catalog: %w", err)
		}
		h.Write(data)
		if c, err = ParseCatalog(data, filepath.Base(s.path)); err != nil {
			return nil, [sha256.Size]byte{}, err
		}
	}
	m := s.pushed.Load()
	if s.model != "" {
		data, err := os.ReadFile(s.model)
		if err != nil {
			return nil, [sha256.Size]byte{}, fmt.Errorf("read model: %w", err)
		}
		h.Write([]byte{0})
		h.Write(data)
		if m, err = ReadModel(bytes.NewReader(data)); err != nil {
			return nil, [sha256.Size]byte{}, fmt.Errorf("%s: %w", filepath.Base(s.model), err)
		}
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return NewEngineWithModel(c, m), sum, nil
}

// SetModel trains the current catalog with model m (nil: none) and swaps the engine in, as a
// reload does; later catalog reloads keep m. It is how the automatic retraining (package learner)
// promotes a model on every replica. With a model file configured (triage.model) the file wins:
// SetModel then returns an error and changes nothing.
func (s *Store) SetModel(m *Model) error {
	if s.model != "" {
		return fmt.Errorf("set model: the model file %s is configured and stays in force", s.model)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pushed.Store(m)
	old := s.engine.Load()
	e := NewEngineWithModel(old.Catalog(), m)
	s.engine.Store(e)
	s.log.Info("triage model set", "version", e.Version(), "previous", old.Version())
	return nil
}

// Model returns the learned model the engine was trained with (nil: none).
func (e *Engine) Model() *Model { return e.model }

// Version is the catalog version plus, with a learned model, "+m.<model version>": the
// catalog_version of every decision.
func (e *Engine) Version() string { return e.version }

// Engine returns the current engine. It never returns nil.
func (s *Store) Engine() *Engine { return s.engine.Load() }

// Reload reads the catalog (and model) files again and swaps the engine in. Files that fail to
// read or validate are refused: the current engine is kept, the error is logged and passed to
// onReloadError, and returned. With the default catalog and no model Reload does nothing.
func (s *Store) Reload() error {
	if s.path == "" && s.model == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err := s.reloadLocked(false)
	return err
}

// reloadLocked reloads; when onlyIfChanged it skips content already seen (good or bad), so a
// broken file is reported once rather than every poll. It reports whether the files were examined.
func (s *Store) reloadLocked(onlyIfChanged bool) (bool, error) {
	e, sum, err := s.load()
	if err != nil {
		if onlyIfChanged && errors.Is(err, os.ErrNotExist) {
			return false, nil // mid-rename; the next event or poll sees the new file
		}
		if !errors.Is(err, os.ErrNotExist) && onlyIfChanged {
			// Report a broken content once, not every poll.
			if sum := s.contentSum(); bytes.Equal(sum[:], s.lastSum[:]) {
				return false, nil
			} else {
				s.lastSum = sum
			}
		}
		err = fmt.Errorf("reload catalog: %w", err)
		s.refuse(err)
		return true, err
	}
	if onlyIfChanged && bytes.Equal(sum[:], s.lastSum[:]) {
		return false, nil
	}
	s.lastSum = sum
	old := s.engine.Load()
	s.engine.Store(e)
	s.log.Info("triage catalog reloaded", "path", s.path, "model", s.model, "version", e.Version(), "previous", old.Version())
	return true, nil
}

// contentSum hashes the files as load does, without parsing them.
func (s *Store) contentSum() [sha256.Size]byte {
	h := sha256.New()
	if s.path != "" {
		data, _ := os.ReadFile(s.path)
		h.Write(data)
	}
	if s.model != "" {
		data, _ := os.ReadFile(s.model)
		h.Write([]byte{0})
		h.Write(data)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

func (s *Store) refuse(err error) {
	s.log.Error("triage catalog refused, keeping the current one", "path", s.path,
		"version", s.engine.Load().Catalog().Version(), "err", err)
	if s.onErr != nil {
		s.onErr(err)
	}
}

// Watch reloads the catalog whenever its file changes, until ctx ends; it then returns nil. It
// watches the file's directory with fsnotify (editors replace files by renaming) and also checks
// the file's size, time and hash every 2 s, which covers file systems without notifications.
// Reload errors do not stop Watch. With the default catalog Watch only waits for ctx.
func (s *Store) Watch(ctx context.Context) error {
	if s.path == "" && s.model == "" {
		<-ctx.Done()
		return nil
	}
	var paths []string
	for _, p := range []string{s.path, s.model} {
		if p != "" {
			paths = append(paths, p)
		}
	}
	var events <-chan fsnotify.Event
	var errs <-chan error
	w, err := fsnotify.NewWatcher()
	if err == nil {
		for _, p := range paths {
			if err = w.Add(filepath.Dir(p)); err != nil {
				w.Close()
				break
			}
		}
	}
	if err != nil {
		s.log.Warn("triage catalog: file notifications unavailable, polling only", "path", s.path, "err", err)
	} else {
		defer w.Close()
		events, errs = w.Events, w.Errors
	}
	watched := map[string]bool{}
	for _, p := range paths {
		watched[filepath.Clean(p)] = true
	}
	stats := func() string {
		var k string
		for _, p := range paths {
			k += statKey(p) + ";"
		}
		return k
	}
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	var settle <-chan time.Time
	lastStat := stats()
	check := func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.reloadLocked(true) //nolint:errcheck // reported through log and onReloadError
	}
	// The file may have changed between NewStore and Watch, before anything was watching.
	check()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if watched[filepath.Clean(ev.Name)] || watchedBase(paths, ev.Name) {
				settle = time.After(settleDelay)
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			s.log.Warn("triage catalog: watch error", "err", err)
		case <-settle:
			settle = nil
			lastStat = stats()
			check()
		case <-tick.C:
			if k := stats(); k != lastStat {
				lastStat = k
				check()
			}
		}
	}
}

// watchedBase reports whether name is one of paths, compared by directory and base name (events
// may name a file relative to a different spelling of its directory).
func watchedBase(paths []string, name string) bool {
	for _, p := range paths {
		if filepath.Base(p) == filepath.Base(name) && filepath.Clean(filepath.Dir(p)) == filepath.Clean(filepath.Dir(name)) {
			return true
		}
	}
	return false
}

// statKey summarizes what a cheap stat says about the file.
func statKey(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return "missing"
	}
	return fmt.Sprint(fi.Size(), fi.ModTime().UnixNano(), fi.Mode())
}
