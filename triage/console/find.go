package console

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/ipn-cgsi/caud/triage/audit"
	"github.com/ipn-cgsi/caud/triage/search"
)

// findData is the search page: the form as sent, its field errors, one page of results.
type findData struct {
	Form     url.Values
	Fields   map[string]string
	Searched bool
	Result   search.Result
	Next     string
	Queues   []string
	States   []string
	Channels []string
}

// findParams are the form fields, named as the search API's parameters.
var findParams = []string{"q", "id", "folio", "email", "handle", "name", "unit", "queue", "state", "channel", "from", "to", "cursor"}

// find searches requests by id, SAI folio, requester, unit, queue, state, channel and date range.
func (c *Console) find(w http.ResponseWriter, r *http.Request, s *req) {
	d := findData{Form: url.Values{}, Fields: map[string]string{},
		Queues:   []string{"sai", "informativo", "aclaracion", "no_competente"},
		States:   []string{"received", "queued", "claimed", "done", "dead"},
		Channels: []string{"email", "memo", "facebook", "x", "phone", "in_person"}}
	in := r.URL.Query()
	for _, k := range findParams {
		if v := in.Get(k); v != "" {
			d.Form.Set(k, v)
		}
	}
	status := http.StatusOK
	if len(d.Form) > 0 {
		d.Searched = true
		q, err := search.ParseQuery(d.Form)
		var qe *search.QueryError
		switch {
		case errors.As(err, &qe):
			d.Fields = qe.Fields
			status = http.StatusBadRequest
		case err != nil:
			d.Fields["q"] = err.Error()
			status = http.StatusBadRequest
		default:
			ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
			defer cancel()
			res, err := c.o.Search.Search(ctx, q)
			switch {
			case errors.Is(err, search.ErrNotReady):
				c.render(w, r, s, http.StatusServiceUnavailable, "buscar", page{Title: "Buscar solicitudes", Nav: "buscar",
					Error: "El índice de búsqueda aún se está cargando; intente en unos segundos.", Data: d})
				return
			case err != nil:
				c.log.Error("console search", "err", err)
				c.render(w, r, s, http.StatusServiceUnavailable, "buscar", page{Title: "Buscar solicitudes", Nav: "buscar",
					Error: "No se pudo buscar en este momento; intente de nuevo.", Data: d})
				return
			}
			d.Result = res
			if res.Next != "" {
				next := url.Values{}
				for k, v := range d.Form {
					next[k] = v
				}
				next.Set("cursor", res.Next)
				d.Next = "/buscar?" + next.Encode()
			}
		}
	}
	c.render(w, r, s, status, "buscar", page{Title: "Buscar solicitudes", Nav: "buscar", Data: d})
}

// historyLabels are the Spanish names of the audit event types.
var historyLabels = map[string]string{
	audit.Received: "Recibida", audit.Triaged: "Triada", audit.Claimed: "Tomada", audit.Extended: "Asignación extendida",
	audit.Released: "Liberada", audit.Expired: "Asignación vencida", audit.Rerouted: "Reencauzada", audit.Done: "Terminada",
	audit.Dead: "Fallida", audit.Notified: "Aviso enviado",
}

func (c *Console) history(ctx context.Context, id string) ([]audit.Event, string) {
	if c.o.Trail == nil {
		return nil, ""
	}
	ev, err := c.o.Trail.History(ctx, id)
	if err != nil && !errors.Is(err, audit.ErrUnknownRequest) {
		c.log.Warn("console history", "request", id, "err", err)
		return nil, "No se pudo leer el historial; recargue la página en unos segundos."
	}
	return ev, ""
}
