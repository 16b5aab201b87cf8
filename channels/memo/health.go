package memo

import (
	"context"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/ipn-cgsi/caud/channels"
)

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
