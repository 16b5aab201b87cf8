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
	path    string
	log     *slog.Logger
	onErr   func(error)
	engine  atomic.Pointer[Engine]
	mu      sync.Mutex // serializes reloads
	lastSum [sha256.Size]byte
}

// NewStore loads the catalog at path and compiles its engine. An empty path selects the embedded
// default catalog, which is never reloaded. log may be nil (slog.Default is used); onReloadError,
// if not nil, is called with every error of a later reload (the old engine is then kept). The first
// load has no old engine to keep, so its error is returned.
func NewStore(path string, log *slog.Logger, onReloadError func(error)) (*Store, error) {
	if log == nil {
		log = slog.Default()
	}
	s := &Store{path: path, log: log, onErr: onReloadError}
	if path == "" {
		s.engine.Store(NewEngine(DefaultCatalog()))
		return s, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read catalog: %w", err)
	}
	c, err := ParseCatalog(data, filepath.Base(path))
	if err != nil {
		return nil, err
	}
	s.lastSum = sha256.Sum256(data)
	s.engine.Store(NewEngine(c))
	log.Info("triage catalog loaded", "path", path, "version", c.Version(), "services", len(c.f.Services))
	return s, nil
}

// Engine returns the current engine. It never returns nil.
func (s *Store) Engine() *Engine { return s.engine.Load() }

// Reload reads and parses the catalog file again and swaps the engine in. A file that fails to
// read or validate is refused: the current engine is kept, the error is logged and passed to
// onReloadError, and returned. With the default catalog Reload does nothing.
func (s *Store) Reload() error {
	if s.path == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err := s.reloadLocked(false)
	return err
}

// reloadLocked reloads; when onlyIfChanged it skips content already seen (good or bad), so a
// broken file is reported once rather than every poll. It reports whether the file was examined.
func (s *Store) reloadLocked(onlyIfChanged bool) (bool, error) {
	data, err := os.ReadFile(s.path)
	if err != nil {
		if onlyIfChanged && errors.Is(err, os.ErrNotExist) {
			return false, nil // mid-rename; the next event or poll sees the new file
		}
		err = fmt.Errorf("reload catalog: %w", err)
		s.refuse(err)
		return true, err
	}
	sum := sha256.Sum256(data)
	if onlyIfChanged && bytes.Equal(sum[:], s.lastSum[:]) {
		return false, nil
	}
	s.lastSum = sum
	c, err := ParseCatalog(data, filepath.Base(s.path))
	if err != nil {
		err = fmt.Errorf("reload catalog: %w", err)
		s.refuse(err)
		return true, err
	}
	old := s.engine.Load()
	s.engine.Store(NewEngine(c))
	s.log.Info("triage catalog reloaded", "path", s.path, "version", c.Version(), "previous", old.Catalog().Version())
	return true, nil
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
	if s.path == "" {
		<-ctx.Done()
		return nil
	}
	var events <-chan fsnotify.Event
	var errs <-chan error
	w, err := fsnotify.NewWatcher()
	if err == nil {
		if err = w.Add(filepath.Dir(s.path)); err != nil {
			w.Close()
		}
	}
	if err != nil {
		s.log.Warn("triage catalog: file notifications unavailable, polling only", "path", s.path, "err", err)
	} else {
		defer w.Close()
		events, errs = w.Events, w.Errors
	}
	base := filepath.Base(s.path)
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	var settle <-chan time.Time
	lastStat := statKey(s.path)
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
			if filepath.Base(ev.Name) == base {
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
			lastStat = statKey(s.path)
			check()
		case <-tick.C:
			if k := statKey(s.path); k != lastStat {
				lastStat = k
				check()
			}
		}
	}
}

// statKey summarizes what a cheap stat says about the file.
func statKey(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return "missing"
	}
	return fmt.Sprint(fi.Size(), fi.ModTime().UnixNano(), fi.Mode())
}
