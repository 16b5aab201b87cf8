package console

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/ipn-cgsi/caud/triage"
	"github.com/ipn-cgsi/caud/triage/audit"
	"github.com/ipn-cgsi/caud/triage/queue"
	"github.com/ipn-cgsi/caud/triage/search"
)

// queueLabels are the Spanish names of the four queues.
var queueLabels = map[string]string{
	triage.OutcomeSAI:          "SAI",
	triage.OutcomeInformativo:  "Informativo (CAU_INFORMATIVO_04A)",
	triage.OutcomeAclaracion:   "Aclaración",
	triage.OutcomeNoCompetente: "No competente",
}

// boardRow is one queue on the board, and one entry of the SSE event.
type boardRow struct {
	Name       string  `json:"name"`
	Label      string  `json:"label"`
	Pending    uint64  `json:"pending"`
	InProgress int     `json:"in_progress"`
	Oldest     float64 `json:"oldest_age_seconds"`
	OldestText string  `json:"oldest"`
}

func rows(stats []queue.Stat) []boardRow {
	out := make([]boardRow, 0, len(stats))
	for _, s := range stats {
		out = append(out, boardRow{Name: s.Name, Label: queueLabels[s.Name], Pending: s.Pending, InProgress: s.InProgress,
			Oldest: s.OldestAgeSeconds, OldestText: age(time.Duration(s.OldestAgeSeconds * float64(time.Second)))})
	}
	return out
}

func (c *Console) board(w http.ResponseWriter, r *http.Request, s *req) {
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	stats, err := c.o.Queues.Stats(ctx)
	if err != nil {
		c.log.Error("console board", "err", err)
		c.fail(w, r, s, http.StatusServiceUnavailable, "No se pudo leer el estado de las colas; intente de nuevo en unos segundos.")
		return
	}
	c.render(w, r, s, http.StatusOK, "tablero", page{Title: "Tablero de colas", Nav: "tablero",
		Data: boardData{Rows: rows(stats), Mine: c.openLeases(ctx, s.User.Name)}})
}

type boardData struct {
	Rows []boardRow
	Mine []openLease
}

// openLease is an item the signed-in agent holds, so that closing the tab never loses it.
type openLease struct {
	Lease     string
	RequestID string
	Subject   string
	Queue     string
	ExpiresAt time.Time
}

// openLeases finds the agent's live leases: claimed requests of theirs in the search index, each
// lease taken from the request's last claim in the audit trail and checked live. Best effort: an
// error leaves the list short, never the board broken.
func (c *Console) openLeases(ctx context.Context, agent string) []openLease {
	if c.o.Search == nil || c.o.Trail == nil {
		return nil
	}
	res, err := c.o.Search.Search(ctx, search.Query{State: "claimed", Limit: 200})
	if err != nil {
		return nil
	}
	var out []openLease
	for _, sm := range res.Requests {
		if sm.Agent != agent || len(out) >= 20 {
			continue
		}
		ev, err := c.o.Trail.History(ctx, sm.ID)
		if err != nil {
			continue
		}
		for i := len(ev) - 1; i >= 0; i-- {
			if ev[i].Type != audit.Claimed {
				continue
			}
			if l, err := c.o.Queues.Lease(ctx, ev[i].Lease); err == nil && l.Agent == agent {
				out = append(out, openLease{Lease: l.ID, RequestID: sm.ID, Subject: sm.Subject, Queue: l.Queue, ExpiresAt: l.ExpiresAt})
			}
			break
		}
	}
	return out
}

func (c *Console) statsJSON(ctx context.Context) ([]byte, error) {
	stats, err := c.o.Queues.Stats(ctx)
	if err != nil {
		return nil, err
	}
	return json.Marshal(rows(stats))
}

// boardEvents streams the board as Server-Sent Events: one "colas" event at once, then one at every
// change; a comment every 20 s keeps proxies from closing an idle stream.
func (c *Console) boardEvents(w http.ResponseWriter, r *http.Request, _ *req) {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	sub := c.hub.subscribe()
	defer c.hub.unsubscribe(sub)
	write := func(b []byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !write([]byte("retry: 3000\n\n")) {
		return
	}
	if last := c.hub.latest(); last != nil && !write(last) {
		return
	}
	keep := time.NewTicker(20 * time.Second)
	defer keep.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case ev := <-sub:
			if !write(ev) {
				return
			}
		case <-keep.C:
			if !write([]byte(": sigo aquí\n\n")) {
				return
			}
		}
	}
}

// hub reads the queue depths once per interval while anyone listens, and fans each change out to
// every subscriber. A slow subscriber only ever misses intermediate states: its one-slot channel
// holds the newest event.
type hub struct {
	read     func(context.Context) ([]byte, error)
	interval time.Duration
	log      *slog.Logger

	mu   sync.Mutex
	subs map[chan []byte]struct{}
	last []byte
	wake chan struct{}
}

func newHub(read func(context.Context) ([]byte, error), interval time.Duration, log *slog.Logger) *hub {
	return &hub{read: read, interval: interval, log: log, subs: map[chan []byte]struct{}{}, wake: make(chan struct{}, 1)}
}

func (h *hub) subscribe() chan []byte {
	ch := make(chan []byte, 1)
	h.mu.Lock()
	h.subs[ch] = struct{}{}
	h.mu.Unlock()
	select {
	case h.wake <- struct{}{}:
	default:
	}
	return ch
}

func (h *hub) unsubscribe(ch chan []byte) {
	h.mu.Lock()
	delete(h.subs, ch)
	h.mu.Unlock()
}

func (h *hub) latest() []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last
}

func (h *hub) listeners() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// publish sends data as an SSE "colas" event to every subscriber when it differs from the last.
func (h *hub) publish(data []byte) {
	ev := make([]byte, 0, len(data)+32)
	ev = append(ev, "event: colas\ndata: "...)
	ev = append(ev, data...)
	ev = append(ev, "\n\n"...)
	h.mu.Lock()
	defer h.mu.Unlock()
	if bytes.Equal(ev, h.last) {
		return
	}
	h.last = ev
	for ch := range h.subs {
		select {
		case ch <- ev:
		default:
			select {
			case <-ch:
			default:
			}
			select {
			case ch <- ev:
			default:
			}
		}
	}
}

func (h *hub) run(ctx context.Context) error {
	t := time.NewTicker(h.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-h.wake:
		}
		if h.listeners() == 0 {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		data, err := h.read(rctx)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				h.log.Warn("console board poll", "err", err)
			}
			continue
		}
		h.publish(data)
	}
}
