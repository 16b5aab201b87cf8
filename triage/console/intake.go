package console

import (
	"errors"
	"net/http"
	"strings"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/desk"
	"github.com/ipn-cgsi/caud/config"
	"github.com/ipn-cgsi/caud/triage"
)

// intakeData is the phone / in-person form (Script de atención, FO-CAU-01-01).
type intakeData struct {
	Greeting string
	Agent    string
	Units    []config.Unit
	Form     desk.Submission
	Fields   map[string]string
	Suggest  []string
	Preview  *previewData
}

// previewData is the live triage preview: what to tell, test and ask during the call.
type previewData struct {
	Empty  bool
	Triage triage.Triage
}

func (c *Console) greeting() string {
	switch h := c.o.Now().In(c.loc).Hour(); {
	case h < 12:
		return "buenos días"
	case h < 19:
		return "buenas tardes"
	default:
		return "buenas noches"
	}
}

func (c *Console) intakeForm(s *req, f desk.Submission) *intakeData {
	d := &intakeData{Greeting: c.greeting(), Agent: s.User.Label(), Form: f, Fields: map[string]string{}}
	if c.o.Units != nil {
		d.Units = c.o.Units.All()
	}
	return d
}

func (c *Console) intakePage(w http.ResponseWriter, r *http.Request, s *req) {
	d := c.intakeForm(s, desk.Submission{Channel: channels.MediumPhone, IdempotencyKey: randomToken()})
	d.Preview = &previewData{Empty: true}
	c.render(w, r, s, http.StatusOK, "telefono", page{Title: "Atención telefónica y presencial", Nav: "telefono", Data: d})
}

func submissionOf(r *http.Request) desk.Submission {
	return desk.Submission{
		Channel: r.PostFormValue("medio"), Unit: r.PostFormValue("unidad"), Role: r.PostFormValue("tipo_usuario"),
		Extension: r.PostFormValue("extension"), Name: r.PostFormValue("nombre"), Email: r.PostFormValue("correo"),
		Phone: r.PostFormValue("telefono"), Description: r.PostFormValue("descripcion"),
		IdempotencyKey: r.PostFormValue("clave"), Confirm: r.PostFormValue("confirmar") == "si",
	}
}

// formField maps the desk channel's field names to the form's.
var formField = map[string]string{
	"channel": "medio", "unit": "unidad", "role": "tipo_usuario", "extension": "extension", "name": "nombre",
	"email": "correo", "phone": "telefono", "description": "descripcion", "idempotency_key": "clave",
}

func (c *Console) decide(f desk.Submission) *previewData {
	text := strings.TrimSpace(f.Description)
	if text == "" {
		return &previewData{Empty: true}
	}
	return &previewData{Triage: c.o.Engine().Decide(triage.Input{Text: text, Channel: f.Channel})}
}

func (c *Console) intake(w http.ResponseWriter, r *http.Request, s *req) {
	r.Body = http.MaxBytesReader(w, r.Body, 256<<10)
	f := submissionOf(r)
	if f.IdempotencyKey == "" {
		f.IdempotencyKey = randomToken()
	}
	fe := c.o.Desk.Validate(&f)
	d := c.intakeForm(s, f)
	d.Preview = c.decide(f)
	if len(fe.Fields) > 0 {
		for k, v := range fe.Fields {
			if n, ok := formField[k]; ok {
				k = n
			}
			d.Fields[k] = spanishChannels(v)
		}
		d.Suggest = fe.Suggestions["unit"]
		c.render(w, r, s, http.StatusBadRequest, "telefono", page{Title: "Atención telefónica y presencial", Nav: "telefono", Data: d})
		return
	}
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	res, err := c.o.Desk.Submit(ctx, f)
	switch {
	case errors.Is(err, desk.ErrKeyReused):
		f.IdempotencyKey = randomToken()
		d.Form = f
		c.render(w, r, s, http.StatusConflict, "telefono", page{Title: "Atención telefónica y presencial", Nav: "telefono",
			Error: "Este formulario ya se envió con otros datos; revise y vuelva a enviar.", Data: d})
		return
	case err != nil:
		c.log.Error("console intake", "err", err)
		c.render(w, r, s, http.StatusServiceUnavailable, "telefono", page{Title: "Atención telefónica y presencial", Nav: "telefono",
			Error: "No se pudo registrar la solicitud en este momento; vuelva a enviar (no se duplicará).", Data: d})
		return
	}
	c.log.Info("console intake", "user", s.User.Name, "request", res.ID, "repeated", res.Repeated)
	http.Redirect(w, r, "/solicitudes/"+res.ID+"?aviso=registrada", http.StatusSeeOther)
}

// spanishChannels rewords the desk channel's messages that name the wire values.
func spanishChannels(msg string) string {
	if strings.Contains(msg, "phone") {
		return "Indique el medio: teléfono o en persona."
	}
	return msg
}

// preview answers the live triage preview as an HTML fragment.
func (c *Console) preview(w http.ResponseWriter, r *http.Request, s *req) {
	r.Body = http.MaxBytesReader(w, r.Body, 256<<10)
	f := submissionOf(r)
	t := c.pages["telefono"]
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := t.ExecuteTemplate(w, "vista", c.decide(f)); err != nil {
		c.log.Error("console preview", "err", err)
	}
}
