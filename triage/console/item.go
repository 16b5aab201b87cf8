package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/triage"
	"github.com/ipn-cgsi/caud/triage/audit"
	"github.com/ipn-cgsi/caud/triage/queue"
)

// itemView is a request as the item and request pages show it.
type itemView struct {
	Lease    *queue.Lease
	Request  channels.Request
	Triage   *triage.Triage
	State    string
	Queue    string
	Folio    string
	Reason   string
	Original *originalInfo
	// Form state after a refused action.
	Fields  map[string]string
	Folio2  string
	NoFolio string
	Ticked  map[string]bool
	Re      queue.Reroute
	// Catalog choices for reroute.
	Services []triage.Service
	Targets  []triage.Orientation
	Outcomes []string
	// History is the request's audit trail (request page).
	History    []audit.Event
	HistoryErr string
	HasTrail   bool
}

// errNotFound is a request id that does not exist.
var errNotFound = errors.New("request not found")

func (c *Console) loadRequest(ctx context.Context, id string) (*itemView, error) {
	v, err := c.o.Queues.Get(ctx, id)
	if errors.Is(err, natsjs.ErrUnknownRequest) {
		return nil, errNotFound
	}
	if err != nil {
		return nil, err
	}
	iv := &itemView{State: v.State, Queue: v.Queue, Folio: v.Folio, Reason: v.Reason}
	if err := json.Unmarshal(v.Request, &iv.Request); err != nil {
		return nil, fmt.Errorf("decode request %s: %w", id, err)
	}
	if len(v.Triage) > 0 && string(v.Triage) != "null" {
		var t triage.Triage
		if err := json.Unmarshal(v.Triage, &t); err != nil {
			return nil, fmt.Errorf("decode triage %s: %w", id, err)
		}
		iv.Triage = &t
	}
	return iv, nil
}

func (c *Console) requestError(w http.ResponseWriter, r *http.Request, s *req, err error) {
	if errors.Is(err, errNotFound) {
		c.fail(w, r, s, http.StatusNotFound, "No existe una solicitud con ese identificador.")
		return
	}
	c.log.Error("console request", "err", err)
	c.fail(w, r, s, http.StatusServiceUnavailable, "No se pudo leer la solicitud; intente de nuevo en unos segundos.")
}

func (c *Console) withCatalog(iv *itemView) {
	cat := c.o.Engine().Catalog()
	iv.Services = cat.Services()
	iv.Targets = cat.Orientations()
	iv.Outcomes = triage.Outcomes
}

// claim takes the next item of a queue for the signed-in agent.
func (c *Console) claim(w http.ResponseWriter, r *http.Request, s *req) {
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	cl, err := c.o.Queues.Claim(ctx, r.PathValue("queue"), s.User.Name)
	switch {
	case errors.Is(err, queue.ErrUnknownQueue):
		c.fail(w, r, s, http.StatusNotFound, "Esa cola no existe.")
	case err != nil:
		c.log.Error("console claim", "queue", r.PathValue("queue"), "err", err)
		c.fail(w, r, s, http.StatusServiceUnavailable, "No se pudo tomar un elemento de la cola; intente de nuevo.")
	case cl == nil:
		http.Redirect(w, r, "/tablero?aviso=vacia", http.StatusSeeOther)
	default:
		c.log.Info("console claim", "user", s.User.Name, "queue", r.PathValue("queue"), "lease", cl.Lease)
		http.Redirect(w, r, "/atencion/"+cl.Lease, http.StatusSeeOther)
	}
}

// leased loads a lease the signed-in user may act on, and its item. It answers the request itself
// (stale lease, someone else's, errors) and returns false when the handler must stop.
func (c *Console) leased(w http.ResponseWriter, r *http.Request, s *req) (*itemView, bool) {
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	l, err := c.o.Queues.Lease(ctx, r.PathValue("lease"))
	if isLeaseError(err) {
		c.staleLease(w, r, s, err)
		return nil, false
	}
	if err != nil {
		c.log.Error("console lease", "err", err)
		c.fail(w, r, s, http.StatusServiceUnavailable, "No se pudo leer la asignación; intente de nuevo.")
		return nil, false
	}
	if l.Agent != s.User.Name && !s.User.IsSupervisor() {
		c.fail(w, r, s, http.StatusForbidden, "Este elemento lo está atendiendo otro agente.")
		return nil, false
	}
	iv, err := c.loadRequest(ctx, l.RequestID)
	if err != nil {
		c.requestError(w, r, s, err)
		return nil, false
	}
	iv.Lease = &l
	iv.Original = c.original(ctx, &iv.Request)
	c.withCatalog(iv)
	return iv, true
}

// isLeaseError reports the errors of a lease that can no longer be acted on.
func isLeaseError(err error) bool {
	var le *queue.LeaseError
	return errors.As(err, &le) && !errors.Is(err, queue.ErrFolioRequired) && !errors.Is(err, queue.ErrLeaseTooLong)
}

// staleLease explains, in the agent's words, why a lease cannot be acted on any more.
func (c *Console) staleLease(w http.ResponseWriter, r *http.Request, s *req, err error) {
	status, title, msg := http.StatusGone, "Asignación vencida", notices["vencida"]
	switch {
	case errors.Is(err, queue.ErrLeaseFinished):
		status, title = http.StatusConflict, "Asignación cerrada"
		msg = "Esta asignación ya se cerró (terminada, liberada o reencauzada), quizá desde otra ventana. Tome el siguiente desde el tablero."
	case errors.Is(err, queue.ErrLeaseUnknown), errors.Is(err, queue.ErrLeaseMalformed):
		status, title = http.StatusNotFound, "Asignación desconocida"
		msg = "No existe esa asignación. Tome un elemento desde el tablero."
	}
	c.render(w, r, s, status, "error", page{Title: title, Error: msg})
}

func (c *Console) showItem(w http.ResponseWriter, r *http.Request, s *req, status int, iv *itemView, errMsg string) {
	title := "Atención de solicitud"
	if iv.Request.Subject != "" {
		title = iv.Request.Subject
	}
	c.render(w, r, s, status, "atencion", page{Title: title, Nav: "tablero", Error: errMsg, Data: iv})
}

func (c *Console) item(w http.ResponseWriter, r *http.Request, s *req) {
	iv, ok := c.leased(w, r, s)
	if !ok {
		return
	}
	c.showItem(w, r, s, http.StatusOK, iv, "")
}

// maxFolio bounds an SAI folio.
const maxFolio = 64

func (c *Console) done(w http.ResponseWriter, r *http.Request, s *req) {
	iv, ok := c.leased(w, r, s)
	if !ok {
		return
	}
	folio := strings.TrimSpace(r.PostFormValue("folio"))
	noFolio := strings.TrimSpace(r.PostFormValue("sin_folio"))
	iv.Folio2, iv.NoFolio = folio, noFolio
	iv.Ticked = map[string]bool{}
	for _, t := range r.PostForm["prueba"] {
		iv.Ticked[t] = true
	}
	iv.Fields = map[string]string{}
	switch {
	case folio == "" && noFolio == "" && iv.Lease.Queue == triage.OutcomeSAI:
		iv.Fields["folio"] = "Escriba el folio con que registró la solicitud en el SAI; es obligatorio en la cola SAI (o explique abajo por qué no lo hay)."
	case utf8.RuneCountInString(folio) > maxFolio || strings.ContainsFunc(folio, func(r rune) bool { return r < 0x20 }):
		iv.Fields["folio"] = fmt.Sprintf("El folio debe ser texto de hasta %d caracteres.", maxFolio)
	}
	if len(iv.Fields) > 0 {
		c.showItem(w, r, s, http.StatusBadRequest, iv, "")
		return
	}
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	if utf8.RuneCountInString(noFolio) > maxNote {
		iv.Fields["sin_folio"] = fmt.Sprintf("El motivo excede %d caracteres.", maxNote)
		c.showItem(w, r, s, http.StatusBadRequest, iv, "")
		return
	}
	if err := c.o.Queues.Done(ctx, iv.Lease.ID, folio, noFolio); err != nil {
		c.leaseActionError(w, r, s, iv, "done", err)
		return
	}
	c.log.Info("console done", "user", s.User.Name, "request", iv.Request.ID, "folio", folio, "tests_done", len(iv.Ticked))
	http.Redirect(w, r, "/tablero?aviso=terminado", http.StatusSeeOther)
}

// leaseActionError shows why a lease action failed: a stale lease gets the stale-lease page, a
// refused correction its reason next to the form.
func (c *Console) leaseActionError(w http.ResponseWriter, r *http.Request, s *req, iv *itemView, op string, err error) {
	switch {
	case errors.Is(err, queue.ErrFolioRequired):
		iv.Fields = map[string]string{"folio": "Escriba el folio SAI, o explique abajo por qué no lo hay."}
		c.showItem(w, r, s, http.StatusBadRequest, iv, "")
	case isLeaseError(err):
		c.staleLease(w, r, s, err)
	case errors.Is(err, queue.ErrLeaseTooLong):
		c.showItem(w, r, s, http.StatusConflict, iv, "La asignación ya alcanzó su duración máxima; termínela o libérela.")
	case errors.Is(err, queue.ErrBadReroute):
		msg := strings.TrimPrefix(err.Error(), queue.ErrBadReroute.Error()+": ")
		c.showItem(w, r, s, http.StatusBadRequest, iv, "No se pudo reencauzar: "+msg)
	default:
		c.log.Error("console lease "+op, "err", err)
		c.showItem(w, r, s, http.StatusServiceUnavailable, iv, "No se pudo completar la operación; intente de nuevo.")
	}
}

// leaseAction runs a lease action that takes no form (release, extend) and redirects to next.
func (c *Console) leaseAction(w http.ResponseWriter, r *http.Request, s *req, op string, act func(context.Context, string) error, next func(*itemView) string) {
	iv, ok := c.leased(w, r, s)
	if !ok {
		return
	}
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	if err := act(ctx, iv.Lease.ID); err != nil {
		c.leaseActionError(w, r, s, iv, op, err)
		return
	}
	c.log.Info("console "+op, "user", s.User.Name, "request", iv.Request.ID)
	http.Redirect(w, r, next(iv), http.StatusSeeOther)
}

func (c *Console) release(w http.ResponseWriter, r *http.Request, s *req) {
	c.leaseAction(w, r, s, "release", c.o.Queues.Release, func(*itemView) string { return "/tablero?aviso=liberado" })
}

func (c *Console) extend(w http.ResponseWriter, r *http.Request, s *req) {
	c.leaseAction(w, r, s, "extend", func(ctx context.Context, id string) error {
		_, err := c.o.Queues.Extend(ctx, id, 0)
		return err
	}, func(iv *itemView) string { return "/atencion/" + iv.Lease.ID + "?aviso=extendida" })
}

// maxNote bounds a reroute note.
const maxNote = 2000

func (c *Console) reroute(w http.ResponseWriter, r *http.Request, s *req) {
	iv, ok := c.leased(w, r, s)
	if !ok {
		return
	}
	re := queue.Reroute{
		Outcome: r.PostFormValue("destino"), Kind: r.PostFormValue("tipo"), Note: strings.TrimSpace(r.PostFormValue("nota")),
		Agent: s.User.Name,
	}
	cat := c.o.Engine().Catalog()
	iv.Fields = map[string]string{}
	switch re.Outcome {
	case triage.OutcomeSAI:
		re.Service = r.PostFormValue("servicio")
		if _, ok := cat.Service(re.Service); !ok {
			iv.Fields["servicio"] = "Elija el servicio del catálogo SAI."
		}
	case triage.OutcomeNoCompetente:
		re.Target = r.PostFormValue("orientacion")
		if _, ok := cat.Orientation(re.Target); !ok {
			iv.Fields["orientacion"] = "Elija a qué instancia se orienta al usuario."
		}
	case triage.OutcomeInformativo, triage.OutcomeAclaracion:
	default:
		iv.Fields["destino"] = "Elija la cola de destino."
	}
	switch re.Outcome {
	case triage.OutcomeSAI, triage.OutcomeInformativo:
		if re.Kind != triage.KindFalla && re.Kind != triage.KindServicio {
			iv.Fields["tipo"] = "Indique si es una falla o una petición de servicio."
		}
	default:
		re.Kind = ""
	}
	switch n := utf8.RuneCountInString(re.Note); {
	case n == 0:
		iv.Fields["nota"] = "Explique brevemente por qué corrige el triaje; queda en el historial."
	case n > maxNote:
		iv.Fields["nota"] = fmt.Sprintf("La nota excede %d caracteres.", maxNote)
	}
	iv.Re = re
	if len(iv.Fields) > 0 {
		c.showItem(w, r, s, http.StatusBadRequest, iv, "")
		return
	}
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	if _, err := c.o.Queues.Reroute(ctx, iv.Lease.ID, re); err != nil {
		c.leaseActionError(w, r, s, iv, "reroute", err)
		return
	}
	c.log.Info("console reroute", "user", s.User.Name, "request", iv.Request.ID, "to", re.Outcome)
	http.Redirect(w, r, "/tablero?aviso=reencauzado", http.StatusSeeOther)
}

// request shows a request read-only: what it is, its triage, its state, its original.
func (c *Console) request(w http.ResponseWriter, r *http.Request, s *req) {
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	iv, err := c.loadRequest(ctx, r.PathValue("id"))
	if err != nil {
		c.requestError(w, r, s, err)
		return
	}
	iv.Original = c.original(ctx, &iv.Request)
	iv.History, iv.HistoryErr = c.history(ctx, iv.Request.ID)
	iv.HasTrail = c.o.Trail != nil
	title := "Solicitud " + iv.Request.ID
	c.render(w, r, s, http.StatusOK, "solicitud", page{Title: title, Nav: "buscar", Data: iv})
}
