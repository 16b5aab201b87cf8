package memo

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/ipn-cgsi/caud/channels"
)

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
			if m.extractor() == nil {
				m.setWaiting(len(pending)) // files wait in the spool while a tool is missing
				continue
			}
			m.setWaiting(0)
			if len(pending) == 0 {
				continue
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
