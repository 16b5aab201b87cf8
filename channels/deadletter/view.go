package deadletter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/httpjson"
	"github.com/ipn-cgsi/caud/channels/natsjs"
)

// Errors of Replay.
var (
	ErrNotFound      = errors.New("no dead letter with that sequence")
	ErrNotReplayable = errors.New("dead letter cannot be replayed")
)

// Letter is one dead letter as the API lists it.
type Letter struct {
	Seq             uint64    `json:"seq"`
	Stage           string    `json:"stage"`
	Reason          string    `json:"reason"`
	OriginalSubject string    `json:"original_subject,omitempty"`
	OriginalSeq     string    `json:"original_seq,omitempty"`
	RequestID       string    `json:"request_id,omitempty"`
	Deliveries      string    `json:"deliveries,omitempty"`
	Time            time.Time `json:"time"`
	Size            int       `json:"size"`
}

// Letters is the operator's view of CAU_DLQ: what a stage could not process, and its replay once
// the cause is fixed.
type Letters struct {
	h   *natsjs.Handles
	log *slog.Logger
}

// New returns the dead-letter view over h; log may be nil.
func New(h *natsjs.Handles, log *slog.Logger) *Letters {
	log = channels.OrDiscard(log)
	return &Letters{h: h, log: log}
}

// List returns up to limit dead letters, oldest first, starting at sequence from (0 = the first).
func (l *Letters) List(ctx context.Context, from uint64, limit int) ([]Letter, error) {
	info, err := l.h.DLQ.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("dead letters: %w", err)
	}
	seq := max(from, info.State.FirstSeq)
	var out []Letter
	for len(out) < limit && seq <= info.State.LastSeq && info.State.Msgs > 0 {
		m, err := l.h.DLQ.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(natsjs.SubjectDLQPrefix+">"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("dead letter %d: %w", seq, err)
		}
		out = append(out, letter(m))
		seq = m.Sequence + 1
	}
	return out, nil
}

func letter(m *jetstream.RawStreamMsg) Letter {
	return Letter{
		Seq: m.Sequence, Stage: m.Header.Get(HeaderStage), Reason: m.Header.Get(HeaderReason),
		OriginalSubject: m.Header.Get(HeaderOrigSubject), OriginalSeq: m.Header.Get(HeaderOrigSeq),
		RequestID: m.Header.Get("ce-id"), Deliveries: m.Header.Get(HeaderDeliveries), Time: m.Time, Size: len(m.Data),
	}
}

// Replay publishes a dead letter again onto the inbound subject it came from, with a new
// Nats-Msg-Id derived from the dead letter (so two replays of one letter publish once), then removes
// it from CAU_DLQ. Only letters that came from CAU_INBOUND can be replayed.
func (l *Letters) Replay(ctx context.Context, seq uint64) (string, error) {
	m, err := l.h.DLQ.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("dead letter %d: %w", seq, err)
	}
	subj := m.Header.Get(HeaderOrigSubject)
	if !strings.HasPrefix(subj, natsjs.SubjectInboundPrefix) {
		return "", fmt.Errorf("%w: it came from %q, not from %s*", ErrNotReplayable, subj, natsjs.SubjectInboundPrefix)
	}
	out := nats.NewMsg(subj)
	out.Data = m.Data
	for k, v := range m.Header {
		if !strings.HasPrefix(k, "Cau-") && k != jetstream.MsgIDHeader {
			out.Header[k] = v
		}
	}
	out.Header.Set(HeaderReplayedOf, strconv.FormatUint(seq, 10))
	out.Header.Set(jetstream.MsgIDHeader, "replay:"+strconv.FormatUint(seq, 10)+":"+m.Time.UTC().Format(time.RFC3339Nano))
	if _, err := l.h.JS.PublishMsg(ctx, out); err != nil {
		return "", fmt.Errorf("replay %d: %w", seq, err)
	}
	if err := l.h.DLQ.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return "", fmt.Errorf("replay %d: remove dead letter: %w", seq, err)
	}
	l.log.Info("dead letter replayed", "seq", seq, "subject", subj, "request", m.Header.Get("ce-id"))
	return subj, nil
}

// Register adds GET /api/v1/deadletters (?from=SEQ&limit=N, default 100) and
// POST /api/v1/deadletters/{seq}/replay to mux, wrapped by auth.
func (l *Letters) Register(mux *http.ServeMux, auth func(http.Handler) http.Handler) {
	mux.Handle("GET /api/v1/deadletters", auth(http.HandlerFunc(l.handleList)))
	mux.Handle("POST /api/v1/deadletters/{seq}/replay", auth(http.HandlerFunc(l.handleReplay)))
}

func (l *Letters) handleList(w http.ResponseWriter, r *http.Request) {
	from, _ := strconv.ParseUint(r.URL.Query().Get("from"), 10, 64)
	limit, err := strconv.Atoi(r.URL.Query().Get("limit"))
	if err != nil || limit <= 0 || limit > 1000 {
		limit = 100
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	letters, err := l.List(ctx, from, limit)
	if err != nil {
		l.log.Error("list dead letters", "err", err)
		httpjson.Fail(w, http.StatusServiceUnavailable, "no se pudieron leer los mensajes fallidos")
		return
	}
	if letters == nil {
		letters = []Letter{}
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"deadletters": letters})
}

func (l *Letters) handleReplay(w http.ResponseWriter, r *http.Request) {
	seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	if err != nil || seq == 0 {
		httpjson.Fail(w, http.StatusBadRequest, "número de secuencia inválido")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	subj, err := l.Replay(ctx, seq)
	switch {
	case errors.Is(err, ErrNotFound):
		httpjson.Fail(w, http.StatusNotFound, "no existe un mensaje fallido con esa secuencia")
	case errors.Is(err, ErrNotReplayable):
		httpjson.Fail(w, http.StatusConflict, "ese mensaje fallido no se puede reprocesar: "+err.Error())
	case err != nil:
		l.log.Error("replay dead letter", "seq", seq, "err", err)
		httpjson.Fail(w, http.StatusServiceUnavailable, "no se pudo reprocesar; intente de nuevo")
	default:
		httpjson.Write(w, http.StatusOK, map[string]string{"replayed_to": subj})
	}
}
