package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/desk"
)

// cmdShow prints one request with its triage and where it stands.
func (a *app) cmdShow(args []string) int {
	fs := a.flags("show", "ID")
	return a.withClient(fs, args, 1, func(ctx context.Context, c *Client, pos []string) int {
		v, err := c.Request(ctx, pos[0])
		if err != nil {
			var ae *APIError
			if errors.As(err, &ae) && ae.Status == 404 && !a.json {
				fmt.Fprintf(a.stderr, "error: no existe la solicitud %s\n", pos[0])
				return exitErr
			}
			return a.fail(err, c, nil, "")
		}
		if a.json {
			a.writeJSON(v.Raw)
			return exitOK
		}
		w := a.stdout
		f := fields{w, labelWidth}
		f.line("Estado", label(stateLabels, v.State))
		f.line("Cola", v.Queue)
		f.line("Folio SAI", v.Folio)
		if v.UpdatedAt != "" {
			f.line("Actualizada", a.whenText(v.UpdatedAt))
		}
		fmt.Fprintln(w)
		a.printRequest(w, &v.Request)
		fmt.Fprintln(w)
		a.printTriage(w, v.Triage)
		if len(v.History) > 0 {
			fmt.Fprintln(w)
			a.printHistory(w, v.History)
		}
		return exitOK
	})
}

// submitFieldLabels names the server's field errors after the flags the agent typed.
var submitFieldLabels = map[string]string{
	"channel":         "--channel",
	"unit":            "--unit (unidad)",
	"role":            "--role (tipo)",
	"extension":       "--ext (extensión)",
	"name":            "--name (nombre)",
	"email":           "--email (correo)",
	"phone":           "--phone (teléfono)",
	"description":     "--description (descripción)",
	"idempotency_key": "--key",
}

// channelAliases accepts the Spanish names agents use for the desk channels.
var channelAliases = map[string]string{
	channels.MediumPhone:    channels.MediumPhone,
	"telefono":              channels.MediumPhone,
	"teléfono":              channels.MediumPhone,
	channels.MediumInPerson: channels.MediumInPerson,
	"presencial":            channels.MediumInPerson,
}

var roles = []string{channels.RoleDocente, channels.RoleAdministrativo, channels.RoleAlumno, channels.RoleOtro}

// cmdSubmit registers a phone or in-person request following the Script de atención. Without --key a
// random idempotency key is sent and shown on a failure, so that a retry cannot create a duplicate.
func (a *app) cmdSubmit(args []string) int {
	fs := a.flags("submit", "--channel phone|in_person --unit U --role R --ext E --name N --email E --phone P --description TEXTO|- [--key CLAVE] [--confirm]")
	var s Submission
	fs.StringVar(&s.Channel, "channel", "", "phone (teléfono) o in_person (presencial)")
	fs.StringVar(&s.Unit, "unit", "", "escuela, centro o unidad, p. ej. ESCOM")
	fs.StringVar(&s.Role, "role", "", "docente, administrativo, alumno u otro")
	fs.StringVar(&s.Extension, "ext", "", "extensión telefónica")
	fs.StringVar(&s.Name, "name", "", "nombre del solicitante")
	fs.StringVar(&s.Email, "email", "", "correo del solicitante")
	fs.StringVar(&s.Phone, "phone", "", "teléfono del solicitante")
	fs.StringVar(&s.Description, "description", "", "descripción del problema; - la lee de la entrada estándar")
	fs.StringVar(&s.IdempotencyKey, "key", "", "clave de idempotencia (repetir con la misma clave no duplica)")
	fs.BoolVar(&s.Confirm, "confirm", false, "enviar confirmación al solicitante")
	if _, code, ok := a.parse(fs, args, 0, true); !ok {
		return code
	}
	ch, known := channelAliases[strings.ToLower(strings.TrimSpace(s.Channel))]
	switch {
	case s.Channel == "":
		return a.usageErr("submit: falta --channel (phone o in_person)")
	case !known:
		return a.usageErr("submit: --channel %q desconocido; use phone o in_person", s.Channel)
	case s.Role != "" && !containsFold(roles, s.Role):
		return a.usageErr("submit: --role %q desconocido; use %s", s.Role, strings.Join(roles, ", "))
	}
	s.Channel = ch
	s.Role = strings.ToLower(s.Role)
	if s.Description == "-" {
		b, err := io.ReadAll(io.LimitReader(a.stdin, utf8.UTFMax*desk.MaxDescription+1))
		if err != nil {
			fmt.Fprintf(a.stderr, "error: leer la descripción de la entrada estándar: %v\n", err)
			return exitErr
		}
		s.Description = string(b)
	}
	// The one limit of a description, the server's, checked before sending.
	if n := utf8.RuneCountInString(s.Description); n > desk.MaxDescription {
		return a.usageErr("submit: la descripción tiene %d caracteres; el máximo es %d", n, desk.MaxDescription)
	}
	s.Description = strings.TrimSpace(s.Description)
	if s.Description == "" {
		return a.usageErr("submit: falta --description (texto, o - para leerla de la entrada estándar)")
	}
	if s.IdempotencyKey == "" {
		s.IdempotencyKey = newKey()
	}
	c, code, ok := a.client()
	if !ok {
		return code
	}
	ctx, cancel := a.ctx()
	defer cancel()
	r, err := c.Submit(ctx, s)
	if err != nil {
		code := a.fail(err, c, submitFieldLabels, "")
		var ae *APIError
		if !errors.As(err, &ae) {
			// The server may have registered it before the failure; the same key makes a retry safe.
			fmt.Fprintf(a.stderr, "Si repite el envío, agregue --key %s para no duplicar la solicitud.\n", s.IdempotencyKey)
		}
		return code
	}
	if a.json {
		a.writeJSON(r.Raw)
		return exitOK
	}
	if r.Created {
		fmt.Fprintf(a.stdout, "Solicitud registrada: %s\n", r.ID)
	} else {
		fmt.Fprintf(a.stdout, "La solicitud ya estaba registrada con esa clave: %s\n", r.ID)
	}
	return exitOK
}

func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}

// newKey returns a random idempotency key.
func newKey() string {
	var b [16]byte
	rand.Read(b[:])
	return "cauctl-" + hex.EncodeToString(b[:])
}
