package queue

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/ipn-cgsi/caud/channels/httpjson"
	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/triage/audit"
)

// maxBody bounds the small JSON bodies of the lease endpoints.
const maxBody = 64 << 10

// Register adds the queue, lease and request endpoints of DESIGN.md to mux, each wrapped by auth.
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
	var body struct {
		Agent string `json:"agent"`
	}
	if !httpjson.DecodeOrFail(w, r, maxBody, &body, true) {
		return
	}
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	c, err := q.Claim(ctx, r.PathValue("queue"), body.Agent)
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

func (q *Queues) leaseError(w http.ResponseWriter, op string, err error) {
	switch {
	case errors.Is(err, ErrLeaseGone):
		httpjson.Fail(w, http.StatusGone, "la asignación venció o no existe; el elemento volvió a su cola")
	case errors.Is(err, ErrLeaseTooLong):
		httpjson.Fail(w, http.StatusConflict, "la asignación ya alcanzó su duración máxima; termínela o libérela")
	case errors.Is(err, ErrBadReroute):
		httpjson.Fail(w, http.StatusBadRequest, err.Error())
	default:
		q.log.Error("lease "+op, "err", err)
		httpjson.Fail(w, http.StatusServiceUnavailable, "no se pudo completar la operación; intente de nuevo")
	}
}

func (q *Queues) handleDone(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Folio string `json:"folio"`
		Agent string `json:"agent"`
	}
	if !httpjson.DecodeOrFail(w, r, maxBody, &body, true) {
		return
	}
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	ctx = audit.WithActor(ctx, body.Agent)
	if err := q.Done(ctx, r.PathValue("lease"), body.Folio); err != nil {
		q.leaseError(w, "done", err)
		return
	}
	httpjson.Write(w, http.StatusOK, map[string]string{"state": natsjs.StateDone})
}

func (q *Queues) handleRelease(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Agent string `json:"agent"`
	}
	if !httpjson.DecodeOrFail(w, r, maxBody, &body, true) {
		return
	}
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	ctx = audit.WithActor(ctx, body.Agent)
	if err := q.Release(ctx, r.PathValue("lease")); err != nil {
		q.leaseError(w, "release", err)
		return
	}
	httpjson.Write(w, http.StatusOK, map[string]string{"state": natsjs.StateQueued})
}

func (q *Queues) handleExtend(w http.ResponseWriter, r *http.Request) {
	// A duration is accepted for clients that send one; a lease is always renewed for the configured
	// lease period, which is JetStream's ack wait.
	var body struct {
		Duration string `json:"duration"`
		Agent    string `json:"agent"`
	}
	if !httpjson.DecodeOrFail(w, r, maxBody, &body, true) {
		return
	}
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	ctx = audit.WithActor(ctx, body.Agent)
	until, err := q.Extend(ctx, r.PathValue("lease"))
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
