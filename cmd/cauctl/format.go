package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ipn-cgsi/caud/channels"
)

// humanAge renders a duration the way agents say it: "12 s", "3 min", "2 h 5 min", "1 d 4 h".
func humanAge(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	s := int64(d / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%d s", s)
	case s < 3600:
		return fmt.Sprintf("%d min", s/60)
	case s < 86400:
		h, m := s/3600, (s%3600)/60
		if m == 0 {
			return fmt.Sprintf("%d h", h)
		}
		return fmt.Sprintf("%d h %d min", h, m)
	default:
		dd, h := s/86400, (s%86400)/3600
		if h == 0 {
			return fmt.Sprintf("%d d", dd)
		}
		return fmt.Sprintf("%d d %d h", dd, h)
	}
}

func seconds(f float64) time.Duration {
	if math.IsNaN(f) || f < 0 {
		return 0
	}
	return time.Duration(f * float64(time.Second))
}

// when renders a time for an agent in the local zone, with how long ago or from now.
func (a *app) when(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	s := t.In(a.loc).Format("2006-01-02 15:04")
	d := t.Sub(a.now())
	if d >= 0 {
		return fmt.Sprintf("%s (en %s)", s, humanAge(d))
	}
	return fmt.Sprintf("%s (hace %s)", s, humanAge(-d))
}

// whenText is when for a timestamp kept as text; a value that is not RFC 3339 is shown as it came.
func (a *app) whenText(s string) string {
	if s == "" {
		return "—"
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return s
	}
	return a.when(t)
}

var outcomeLabels = map[string]string{
	outcomeSAI:          "sai (servicio del catálogo SAI)",
	outcomeInformativo:  "informativo (registrar como " + conceptInformativo + ")",
	outcomeAclaracion:   "aclaración (preguntar antes de registrar)",
	outcomeNoCompetente: "no competente (orientar al solicitante)",
}

var channelLabels = map[string]string{
	channels.MediumEmail:    "correo electrónico",
	channels.MediumMemo:     "oficio",
	channels.MediumFacebook: "Facebook",
	channels.MediumX:        "X",
	channels.MediumPhone:    "teléfono",
	channels.MediumInPerson: "presencial",
}

var stateLabels = map[string]string{
	"received": "recibida (en espera de triaje)",
	"queued":   "en cola",
	"claimed":  "tomada por un agente",
	"done":     "terminada",
	"dead":     "fallida (en mensajes muertos)",
}

func label(m map[string]string, k string) string {
	if l, ok := m[k]; ok {
		return l
	}
	return k
}

// fields writes aligned "Etiqueta: valor" lines, skipping empty values. Labels are padded by runes,
// not bytes, so "Área" lines up with "Grupo".
type fields struct {
	w     io.Writer
	width int
}

func (f fields) line(name, value string) {
	if strings.TrimSpace(value) == "" {
		return
	}
	name += ":"
	pad := f.width - utf8.RuneCountInString(name)
	if pad < 1 {
		pad = 1
	}
	fmt.Fprintf(f.w, "%s%s%s\n", name, strings.Repeat(" ", pad), value)
}

// block writes a titled, indented multi-line text.
func block(w io.Writer, title, text string) {
	text = strings.TrimSpace(text)
	if text == "" {
		return
	}
	fmt.Fprintf(w, "%s:\n", title)
	for _, l := range strings.Split(text, "\n") {
		fmt.Fprintf(w, "  %s\n", strings.TrimRight(l, " \t\r"))
	}
}

const labelWidth = 14

// printRequest writes what an agent needs to know of a request: who, from where, and what they wrote.
func (a *app) printRequest(w io.Writer, r *channels.Request) {
	f := fields{w, labelWidth}
	f.line("Solicitud", r.ID)
	f.line("Canal", label(channelLabels, r.Channel))
	if !r.ReceivedAt.IsZero() {
		f.line("Recibida", a.when(r.ReceivedAt))
	}
	q := r.Requester
	who := q.Name
	if q.Email != "" {
		if who != "" {
			who += " "
		}
		who += "<" + q.Email + ">"
	}
	if q.Handle != nil && *q.Handle != "" {
		who = strings.TrimSpace(who + " @" + strings.TrimPrefix(*q.Handle, "@"))
	}
	if who == "" {
		who = "(sin datos)"
	}
	f.line("Solicitante", who)
	f.line("Teléfono", q.Phone)
	f.line("Unidad", q.Unit)
	f.line("Perfil", q.Role)
	f.line("Ext.", q.Extension)
	f.line("Asunto", r.Subject)
	if len(r.Attachments) > 0 {
		names := make([]string, len(r.Attachments))
		for i, at := range r.Attachments {
			names[i] = at.Name
		}
		f.line("Adjuntos", strings.Join(names, ", "))
	}
	switch {
	case r.Auto.Bulk == "list":
		f.line("Aviso", "llegó por una lista de correo: no se responde automáticamente")
	case r.Auto.Bulk != "":
		f.line("Aviso", "correo masivo: no se responde automáticamente")
	}
	if r.Forwarded {
		f.line("Reenvío", "el texto incluye un mensaje reenviado; el solicitante es quien lo reenvió")
	}
	if len(r.Defects) > 0 {
		texts := make([]string, len(r.Defects))
		for i, d := range r.Defects {
			texts[i] = d.Text
		}
		block(w, "Defectos del correo (el texto puede estar incompleto)", strings.Join(texts, "\n"))
	}
	block(w, "Texto", r.Text)
}

// printTriage writes the decision the way the agent acts on it: where it goes, which SAI service
// and group, the tests to run (as a checklist), the questions to ask, the orientation to give.
func (a *app) printTriage(w io.Writer, t *Triage) {
	f := fields{w, labelWidth}
	if t == nil {
		f.line("Triaje", "pendiente")
		return
	}
	if t.Outcome == outcomeInformativo && t.Concept != "" {
		// The loaded catalog names its own concept.
		f.line("Triaje", "informativo (registrar como "+t.Concept+")")
	} else {
		f.line("Triaje", label(outcomeLabels, t.Outcome))
	}
	f.line("Tipo", t.Kind)
	if s := t.Service; s != nil {
		name := s.ID
		if s.Name != "" {
			name += " — " + s.Name
		}
		f.line("Servicio", name)
		f.line("Grupo", s.Group)
	}
	f.line("Área", t.Area)
	f.line("Concepto", t.Concept)
	if len(t.Tests) > 0 {
		fmt.Fprintln(w, "Pruebas de diagnóstico:")
		for _, s := range t.Tests {
			fmt.Fprintf(w, "  [ ] %s\n", s)
		}
	}
	if len(t.Questions) > 0 {
		fmt.Fprintln(w, "Preguntas para el solicitante:")
		for i, q := range t.Questions {
			fmt.Fprintf(w, "  %d. %s\n", i+1, q)
		}
	}
	if o := t.Orientation; o != nil {
		dest := o.Office
		if dest == "" {
			dest = o.Target
		} else if o.Target != "" && o.Target != o.Office {
			dest += " (" + o.Target + ")"
		}
		f.line("Orientar a", dest)
		block(w, "Mensaje de orientación", o.Message)
	}
	if len(t.Others) > 0 {
		alts := make([]string, len(t.Others))
		for i, s := range t.Others {
			alts[i] = s.ID
			if s.Name != "" {
				alts[i] += " (" + s.Name + ")"
			}
		}
		f.line("Alternativas", strings.Join(alts, ", "))
	}
	f.line("Confianza", fmt.Sprintf("%.0f %%", t.Confidence*100))
	f.line("Explicación", t.Explanation)
	f.line("Decidió", t.By)
	f.line("Catálogo", t.CatalogVersion)
}

// writeJSON passes a server answer through, indented; scripts get every member the server sent.
func (a *app) writeJSON(raw []byte) {
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		a.stdout.Write(raw)
		if len(raw) == 0 || raw[len(raw)-1] != '\n' {
			fmt.Fprintln(a.stdout)
		}
		return
	}
	buf.WriteByte('\n')
	a.stdout.Write(buf.Bytes())
}
