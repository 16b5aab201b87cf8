package memo

import (
	"context"
	"os"
	"strings"

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
		m.health.Set("memo.tools", false, "missing: "+strings.Join(missing, ", ")+"; memo files wait in the spool")
		return false
	}
	m.health.Set("memo.tools", true, "pdftotext, pdftoppm, pdfinfo, tesseract (spa)")
	m.ex = &extractor{t: t, pageWorkers: m.o.PageWorkers, pageTimeout: m.o.PageTimeout, maxPages: m.o.MaxPages,
		maxPixels: m.o.MaxPixels, tmp: m.dirs.tmp, onPage: func(p page) {
			m.m.ocr.Observe(p.seconds)
		}}
	return true
}

// Health reports the tools (which are missing) and whether the spool is writable. It never runs
// the tools: they are looked up at New and again at each rescan of the spool while one is missing.
func (m *Memo) Health(context.Context) []channels.Health {
	f, err := os.CreateTemp(m.dirs.tmp, ".health-")
	if err == nil {
		f.Close()
		os.Remove(f.Name())
		m.health.Set("memo.spool", true, m.dirs.spool)
	} else {
		m.health.Set("memo.spool", false, "spool not writable: "+err.Error())
	}
	return m.health.List()
}
