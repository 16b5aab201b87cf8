// Package httpjson holds the few helpers caud's HTTP handlers share: JSON answers, JSON errors in the
// shape clients rely on ({"error":"…","fields":{…}}), and strict decoding of bounded JSON bodies.
package httpjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
)

// Error is the body of every error answer.
type Error struct {
	Error       string              `json:"error"`
	Fields      map[string]string   `json:"fields,omitempty"`
	Suggestions map[string][]string `json:"suggestions,omitempty"`
}

// Write answers status with v as JSON.
func Write(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// Fail answers status with {"error": msg}.
func Fail(w http.ResponseWriter, status int, msg string) {
	Write(w, status, Error{Error: msg})
}

// ErrTooLarge is returned by Decode for a body over the limit; answer it with 413. Its text is
// Spanish, like every message of this package: it reaches agents as is.
var ErrTooLarge = errors.New("el cuerpo es demasiado grande")

// Decode reads at most limit bytes of JSON into v, rejecting unknown fields and trailing data. An
// empty body decodes to the zero value when allowEmpty is set. Error messages are in Spanish, fit to
// show an agent.
func Decode(w http.ResponseWriter, r *http.Request, limit int64, v any, allowEmpty bool) error {
	data, err := ReadBody(w, r, limit)
	if err != nil {
		return err
	}
	return DecodeBytes(data, v, allowEmpty)
}

// ReadBody reads at most limit bytes of the request body; over the limit it returns ErrTooLarge.
func ReadBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, fmt.Errorf("%w: excede el máximo de %s", ErrTooLarge, Size(limit))
		}
		return nil, errors.New("no se pudo leer el cuerpo de la petición; intente de nuevo")
	}
	return data, nil
}

// DecodeBytes decodes one JSON object strictly (see Decode).
func DecodeBytes(data []byte, v any, allowEmpty bool) error {
	if len(bytes.TrimSpace(data)) == 0 {
		if allowEmpty {
			return nil
		}
		return errors.New("el cuerpo está vacío; se esperaba un objeto JSON")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.Is(err, io.ErrUnexpectedEOF):
			return errors.New("JSON mal formado: el objeto está incompleto")
		case errors.As(err, &se):
			return fmt.Errorf("JSON mal formado cerca del carácter %d", se.Offset)
		case errors.As(err, &te) && te.Field == "":
			return errors.New("el cuerpo debe ser un objeto JSON")
		case errors.As(err, &te):
			return fmt.Errorf("el campo %q debe ser %s", te.Field, spanishKind(te.Type))
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return fmt.Errorf("campo desconocido %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
		default:
			return errors.New("JSON inválido")
		}
	}
	if dec.More() {
		return errors.New("JSON inválido: hay datos después del objeto")
	}
	return nil
}

// spanishKind names what a JSON value of Go type t must be, for an agent ("un número").
func spanishKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "texto"
	case reflect.Bool:
		return "verdadero o falso"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint8,
		reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "un número entero"
	case reflect.Float32, reflect.Float64:
		return "un número"
	case reflect.Slice, reflect.Array:
		return "una lista"
	case reflect.Pointer:
		return spanishKind(t.Elem())
	}
	return "un objeto"
}

// Size writes a byte count the way people read it: "1 MiB", "256 KiB", "900 bytes".
func Size(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// APIErrors answers, under prefix, the mux's own plain-text 404 and 405 as JSON errors in Spanish,
// like every other answer of the API; other paths and every matched route pass through untouched.
func APIErrors(prefix string, mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, prefix) {
			mux.ServeHTTP(w, r)
			return
		}
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		probe := &statusProbe{header: http.Header{}}
		h.ServeHTTP(probe, r)
		switch probe.status {
		case http.StatusMethodNotAllowed:
			allow := probe.header.Get("Allow")
			w.Header().Set("Allow", allow)
			Fail(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s no acepta el método %s; use %s", r.URL.Path, r.Method, allow))
		case http.StatusNotFound:
			Fail(w, http.StatusNotFound, "no existe "+r.URL.Path+" en la API")
		default:
			mux.ServeHTTP(w, r) // a redirect (trailing slash, cleaned path): as the mux answers it
		}
	})
}

// statusProbe records the status and headers a handler would answer, discarding the body.
type statusProbe struct {
	header http.Header
	status int
}

func (p *statusProbe) Header() http.Header { return p.header }
func (p *statusProbe) WriteHeader(code int) {
	if p.status == 0 {
		p.status = code
	}
}
func (p *statusProbe) Write(b []byte) (int, error) {
	p.WriteHeader(http.StatusOK)
	return len(b), nil
}

// DecodeOrFail is Decode that answers the error itself (413 or 400) and reports whether to go on.
func DecodeOrFail(w http.ResponseWriter, r *http.Request, limit int64, v any, allowEmpty bool) bool {
	err := Decode(w, r, limit, v, allowEmpty)
	switch {
	case err == nil:
		return true
	case errors.Is(err, ErrTooLarge):
		Fail(w, http.StatusRequestEntityTooLarge, err.Error())
	default:
		Fail(w, http.StatusBadRequest, err.Error())
	}
	return false
}
