package queue

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ipn-cgsi/caud/channels/httpjson"
	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/triage/audit"
)

// maxBody bounds the small JSON bodies of the lease endpoints.
const maxBody = 64 << 10

// Register adds the queue, lease and request endpoints (/api/v1/queues, /api/v1/leases/…,
// /api/v1/requests/{id}) to mux, each wrapped by auth.
func (q *Queues) Register(mux *http.ServeMux, auth func(http.Handler) http.Handler) {
	h := func(pattern string, f http.HandlerFunc) { mux.Handle(pattern, auth(f)) }
	h("GET /api/v1/queues", q.handleQueues)
	h("POST /api/v1/queues/{queue}/claim", q.handleClaim)
	h("POST /api/v1/leases/{lease}/done", q.handleDone)
	h("POST /api/v1/leases/{lease}/release", q.handleRelease)
	h("POST /api/v1/leases/{lease}/extend", q.handleExtend)
	h("POST /api/v1/leases/{lease}/reroute", q.handleReroute)
	h("GET /api/v1/requests/{id}", q.handleGet)
	h("GET /api/v1/corrections", q.handleCorrections)
}

// handleCorrections streams the recorded corrections as JSON Lines (labelled examples).
func (q *Queues) handleCorrections(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
	defer cancel()
	w.Header().Set("Content-Type", "application/x-ndjson; charset=utf-8")
	if n, err := q.Corrections(ctx, w); err != nil {
		q.log.Error("export corrections", "err", err, "written", n)
		if n == 0 {
			httpjson.Fail(w, http.StatusServiceUnavailable, "no se pudieron leer las correcciones")
		}
	}
}

func ctxTimeout(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), 10*time.Second)
}

// agentBody reads a request body {"agent": …}; false when it was refused (the answer is written).
func agentBody(w http.ResponseWriter, r *http.Request) (string, bool) {
	var body struct {
		Agent string `json:"agent"`
	}
	ok := httpjson.DecodeOrFail(w, r, maxBody, &body, true)
	return body.Agent, ok
}

func (q *Queues) handleQueues(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	stats, err := q.Stats(ctx)
	if err != nil {
		q.log.Error("queue stats", "err", err)
		httpjson.Fail(w, http.StatusServiceUnavailable, "no se pudo leer el estado de las colas")
		return
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"queues": stats})
}

func (q *Queues) handleClaim(w http.ResponseWriter, r *http.Request) {
	agent, ok := agentBody(w, r)
	if !ok {
		return
	}
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	c, err := q.Claim(ctx, r.PathValue("queue"), agent)
	switch {
	case errors.Is(err, ErrUnknownQueue):
		httpjson.Fail(w, http.StatusNotFound, "cola desconocida; use sai, informativo, aclaracion o no_competente")
	case err != nil:
		q.log.Error("claim", "queue", r.PathValue("queue"), "err", err)
		httpjson.Fail(w, http.StatusServiceUnavailable, "no se pudo tomar un elemento de la cola; intente de nuevo")
	case c == nil:
		w.WriteHeader(http.StatusNoContent)
	default:
		httpjson.Write(w, http.StatusOK, c)
	}
}

// leaseError answers a failed lease call with what is true of the lease, in the agent's words.
func (q *Queues) leaseError(w http.ResponseWriter, op string, err error) {
	var le *LeaseError
	var l Lease
	if errors.As(err, &le) {
		l = le.Lease
	}
	switch {
	case errors.Is(err, ErrLeaseMalformed):
		httpjson.Fail(w, http.StatusBadRequest, "«"+l.ID+"» no es un identificador de asignación; cópielo tal como lo mostró la toma del elemento (26 letras y números).")
	case errors.Is(err, ErrLeaseUnknown):
		httpjson.Fail(w, http.StatusNotFound, "No existe una asignación con ese identificador (o es tan antigua que ya se depuró). Revise que lo copió completo.")
	case errors.Is(err, ErrLeaseFinished):
		httpjson.Fail(w, http.StatusConflict, finishedMessage(l))
	case errors.Is(err, ErrLeaseExpired):
		httpjson.Fail(w, http.StatusGone, "La asignación venció el "+when(l.end(q.o.Lease))+"; el elemento volvió a su cola "+l.Queue+". Si aún lo atiende, tómelo de nuevo.")
	case errors.Is(err, ErrLeaseTooLong):
		httpjson.Fail(w, http.StatusConflict, "La asignación no puede durar más de "+spanishDuration(q.o.MaxLease)+" desde que se tomó; termínela o libérela.")
	case errors.Is(err, ErrFolioRequired):
		httpjson.Write(w, http.StatusBadRequest, httpjson.Error{
			Error:  "Un elemento de la cola sai se termina con el folio con que se registró en el SAI.",
			Fields: map[string]string{"folio": "Indique el folio del SAI, o en «no_folio_reason» explique por qué no tiene folio."},
		})
	case errors.Is(err, ErrBadDuration):
		httpjson.Write(w, http.StatusBadRequest, httpjson.Error{
			Error:  "La duración no es válida.",
			Fields: map[string]string{"duration": "Use una duración positiva como 30m o 1h30m."},
		})
	case errors.Is(err, ErrBadReroute):
		httpjson.Fail(w, http.StatusBadRequest, strings.TrimPrefix(err.Error(), ErrBadReroute.Error()+": "))
	default:
		q.log.Error("lease "+op, "err", err)
		httpjson.Fail(w, http.StatusServiceUnavailable, "No se pudo completar la operación; intente de nuevo.")
	}
}

func finishedMessage(l Lease) string {
	at := when(l.FinishedAt)
	switch l.Finished {
	case FinishedDone:
		return "La asignación ya se terminó el " + at + "; no hace falta hacer nada más."
	case FinishedReleased:
		return "La asignación ya se liberó el " + at + " y el elemento volvió a su cola " + l.Queue + "; tómelo de nuevo si lo va a atender."
	default:
		return "La asignación ya se reencauzó el " + at + " a la cola " + l.RerouteQueue + "; el elemento se atiende desde esa cola."
	}
}

// when formats a time for an agent in Mexico City, where the help desk is.
func when(t time.Time) string {
	return t.In(mexicoCity).Format("02/01/2006 15:04") + " (hora del centro de México)"
}

var mexicoCity = func() *time.Location {
	if loc, err := time.LoadLocation("America/Mexico_City"); err == nil {
		return loc
	}
	return time.FixedZone("CST", -6*60*60)
}()

func spanishDuration(d time.Duration) string {
	if d%time.Hour == 0 {
		if d == time.Hour {
			return "1 hora"
		}
		return strconv.Itoa(int(d/time.Hour)) + " horas"
	}
	return strconv.Itoa(int(d/time.Minute)) + " minutos"
}

func (q *Queues) handleDone(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Folio         string `json:"folio"`
		NoFolioReason string `json:"no_folio_reason"`
		Agent         string `json:"agent"`
	}
	if !httpjson.DecodeOrFail(w, r, maxBody, &body, true) {
		return
	}
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	ctx = audit.WithActor(ctx, body.Agent)
	if err := q.Done(ctx, r.PathValue("lease"), body.Folio, body.NoFolioReason); err != nil {
		q.leaseError(w, "done", err)
		return
	}
	httpjson.Write(w, http.StatusOK, map[string]string{"state": natsjs.StateDone})
}

func (q *Queues) handleRelease(w http.ResponseWriter, r *http.Request) {
	agent, ok := agentBody(w, r)
	if !ok {
		return
	}
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	ctx = audit.WithActor(ctx, agent)
	if err := q.Release(ctx, r.PathValue("lease")); err != nil {
		q.leaseError(w, "release", err)
		return
	}
	httpjson.Write(w, http.StatusOK, map[string]string{"state": natsjs.StateQueued})
}

func (q *Queues) handleExtend(w http.ResponseWriter, r *http.Request) {
	// duration ("30m"): how long from now; empty means one lease period.
	var body struct {
		Duration string `json:"duration"`
		Agent    string `json:"agent"`
	}
	if !httpjson.DecodeOrFail(w, r, maxBody, &body, true) {
		return
	}
	var d time.Duration
	if body.Duration != "" {
		var err error
		if d, err = time.ParseDuration(body.Duration); err != nil || d <= 0 {
			q.leaseError(w, "extend", ErrBadDuration)
			return
		}
	}
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	ctx = audit.WithActor(ctx, body.Agent)
	until, err := q.Extend(ctx, r.PathValue("lease"), d)
	if err != nil {
		q.leaseError(w, "extend", err)
		return
	}
	httpjson.Write(w, http.StatusOK, map[string]time.Time{"expires_at": until})
}

func (q *Queues) handleReroute(w http.ResponseWriter, r *http.Request) {
	var body Reroute
	if !httpjson.DecodeOrFail(w, r, maxBody, &body, false) {
		return
	}
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	queue, err := q.Reroute(ctx, r.PathValue("lease"), body)
	if err != nil {
		q.leaseError(w, "reroute", err)
		return
	}
	httpjson.Write(w, http.StatusOK, map[string]string{"queue": queue})
}

func (q *Queues) handleGet(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	v, err := q.Get(ctx, r.PathValue("id"))
	switch {
	case errors.Is(err, natsjs.ErrUnknownRequest):
		httpjson.Fail(w, http.StatusNotFound, "no existe una solicitud con ese id")
	case err != nil:
		q.log.Error("get request", "id", r.PathValue("id"), "err", err)
		httpjson.Fail(w, http.StatusServiceUnavailable, "no se pudo leer la solicitud; intente de nuevo")
	default:
		httpjson.Write(w, http.StatusOK, v)
	}
}
