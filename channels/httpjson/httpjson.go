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

// ErrTooLarge is returned by Decode for a body over the limit; answer it with 413.
var ErrTooLarge = errors.New("body too large")

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
			return nil, fmt.Errorf("%w: el cuerpo excede %d bytes", ErrTooLarge, limit)
		}
		return nil, fmt.Errorf("no se pudo leer el cuerpo: %v", err)
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
			return fmt.Errorf("JSON mal formado en el byte %d: %v", se.Offset, err)
		case errors.As(err, &te):
			return fmt.Errorf("el campo %q debe ser de tipo %s", te.Field, te.Type)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return fmt.Errorf("campo desconocido %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
		default:
			return fmt.Errorf("JSON inválido: %v", err)
		}
	}
	if dec.More() {
		return errors.New("JSON inválido: hay datos después del objeto")
	}
	return nil
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
