package httpjson

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

type form struct {
	Channel string `json:"channel"`
	Count   int    `json:"count"`
}

// Decoding errors reach agents as they are: Spanish, without Go type names or encoding/json text.
func TestDecodeErrorsAreSpanishWithoutInternals(t *testing.T) {
	for body, want := range map[string]string{
		`"texto"`:            "el cuerpo debe ser un objeto JSON",
		`{"count":"tres"}`:   `el campo "count" debe ser un número entero`,
		`{"channel":5}`:      `el campo "channel" debe ser texto`,
		`{"channel":"a",}`:   "JSON mal formado cerca del carácter",
		`{"channel":"a"`:     "JSON mal formado: el objeto está incompleto",
		`{"otro":1}`:         `campo desconocido "otro"`,
		`{"channel":"a"} {}`: "hay datos después del objeto",
	} {
		var f form
		err := DecodeBytes([]byte(body), &f, false)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", body, err, want)
			continue
		}
		for _, leak := range []string{"invalid character", "httpjson.", "httpjson.form", "json:", "int", "string"} {
			if strings.Contains(err.Error(), leak) {
				t.Errorf("%s: %q leaks %q", body, err, leak)
			}
		}
	}
	r := httptest.NewRequest("POST", "/", strings.NewReader(strings.Repeat("x", 2048)))
	_, err := ReadBody(httptest.NewRecorder(), r, 1024)
	if err == nil || err.Error() != "el cuerpo es demasiado grande: excede el máximo de 1 KiB" {
		t.Errorf("too large: %v", err)
	}
}

// Under /api/ an unknown path or a wrong method answers JSON in Spanish, not the mux's plain text.
func TestAPIErrorsAnswerJSON(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/requests", func(w http.ResponseWriter, r *http.Request) { Write(w, 201, map[string]string{"id": "x"}) })
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {})
	h := APIErrors("/api/", mux)
	for _, c := range []struct {
		method, path string
		status       int
		want         string
	}{
		{"GET", "/api/v1/nada", 404, "no existe /api/v1/nada en la API"},
		{"GET", "/api/v1/requests", 405, "no acepta el método GET; use POST"},
		{"POST", "/api/v1/requests", 201, `"id":"x"`},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(c.method, c.path, nil))
		if rec.Code != c.status || !strings.Contains(rec.Body.String(), c.want) || !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
			t.Errorf("%s %s: %d %s %q", c.method, c.path, rec.Code, rec.Header().Get("Content-Type"), rec.Body.String())
		}
		if c.status >= 400 {
			var e Error
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" {
				t.Errorf("%s %s: not an error object: %s", c.method, c.path, rec.Body.String())
			}
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/nada", nil))
	if rec.Code != 404 || strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
		t.Errorf("outside /api/ the mux answers as usual: %d %s", rec.Code, rec.Header().Get("Content-Type"))
	}
}
