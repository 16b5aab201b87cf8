package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ipn-cgsi/caud/triage/audit"
)

// printHistory writes who did what to a request, oldest first, one line each, in the agents' words.
func (a *app) printHistory(w io.Writer, h []HistoryEvent) {
	if len(h) == 0 {
		return
	}
	fmt.Fprintln(w, "Historial:")
	for _, e := range h {
		fmt.Fprintf(w, "  %s  %s\n", e.At.In(a.loc).Format("2006-01-02 15:04:05"), a.eventText(e))
	}
}

// eventText says what one event means.
func (a *app) eventText(e HistoryEvent) string {
	who := e.Agent
	if who == "" {
		who = "un agente sin nombre"
	}
	until := ""
	if e.ExpiresAt != nil {
		until = ", hasta las " + e.ExpiresAt.In(a.loc).Format("15:04")
	}
	switch e.Type {
	case audit.Received:
		s := "Recibida por " + label(channelLabels, e.Channel)
		if e.Source != "" {
			s += " (" + e.Source + ")"
		}
		if e.Agent != "" {
			s += "; la capturó " + e.Agent
		}
		return s
	case audit.Replayed:
		return "Reprocesada desde los mensajes fallidos"
	case audit.Triaged:
		s := "Triaje automático: " + label(outcomeLabels, e.Outcome)
		if e.Service != "" {
			s += "; servicio " + e.Service
		}
		if e.Group != "" {
			s += ", grupo " + e.Group
		}
		if e.Kind != "" {
			s += "; " + e.Kind
		}
		if e.Confidence > 0 {
			s += fmt.Sprintf("; confianza %.0f %%", e.Confidence*100)
		}
		return s
	case audit.Claimed:
		return fmt.Sprintf("Tomada por %s de la cola %s%s", who, e.Queue, until)
	case audit.Extended:
		return "Asignación extendida por " + who + until
	case audit.Released:
		return fmt.Sprintf("Liberada por %s; volvió a la cola %s", who, e.Queue)
	case audit.Expired:
		return fmt.Sprintf("Venció la asignación de %s; volvió a la cola %s", who, e.Queue)
	case audit.Rerouted:
		s := fmt.Sprintf("Reencauzada por %s: %s → %s", who, e.From, e.To)
		if e.Service != "" {
			s += " (servicio " + e.Service + ")"
		}
		if e.Target != "" {
			s += " (orientar a " + e.Target + ")"
		}
		if e.Note != "" {
			s += ": «" + e.Note + "»"
		}
		return s
	case audit.Done:
		if e.Folio == "" && e.Note != "" {
			return "Terminada por " + who + " sin folio SAI: «" + e.Note + "»"
		}
		if e.Folio == "" {
			return "Terminada por " + who + " (sin folio SAI)"
		}
		return "Terminada por " + who + " con folio SAI " + e.Folio
	case audit.Dead:
		s := "No se pudo procesar"
		if e.Stage != "" {
			s += " (etapa " + e.Stage + ")"
		}
		if e.Reason != "" {
			s += ": " + e.Reason
		}
		return s + "; quedó en mensajes fallidos"
	case audit.Notified:
		s := "Aviso al solicitante enviado"
		if e.Notice != "" {
			s += " (" + e.Notice + ")"
		}
		if e.Channel != "" {
			s += " por " + label(deliveryLabels, e.Channel)
		}
		if e.Recipient != "" {
			s += " a " + e.Recipient
		}
		return s
	}
	return strings.TrimSpace(e.Type + " " + e.Agent)
}

var deliveryLabels = map[string]string{"email": "correo", "facebook": "Facebook", "x": "X"}

// shortWhen renders an arrival time for a table: the local date and time.
func (a *app) shortWhen(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.In(a.loc).Format("2006-01-02 15:04")
}
