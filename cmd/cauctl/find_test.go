package main

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

const historyBody = `{"request":{"id":"01JD7Q3Z9XAAAAAAAAAAAAAAAA","channel":"email","received_at":"2025-10-14T16:03:11Z","text":"x","requester":{"handle":null}},
 "triage":{"outcome":"sai","kind":"falla","confidence":0.82},"state":"done","queue":"informativo","folio":"SAI-9",
 "history":[
  {"id":"received:1","request_id":"01JD7Q3Z9XAAAAAAAAAAAAAAAA","type":"received","at":"2025-10-14T16:03:11Z","channel":"email","source":"imap://cau@ipn.mx/INBOX"},
  {"id":"triaged:1","type":"triaged","at":"2025-10-14T16:03:12Z","outcome":"sai","kind":"falla","service":"correo-acceso","group":"Correo","confidence":0.82},
  {"id":"claimed:L1","type":"claimed","at":"2025-10-14T16:10:00Z","agent":"ana","queue":"sai","expires_at":"2025-10-14T16:25:00Z"},
  {"id":"extended:L1:x","type":"extended","at":"2025-10-14T16:20:00Z","agent":"ana","expires_at":"2025-10-14T16:35:00Z"},
  {"id":"rerouted:L1","type":"rerouted","at":"2025-10-14T16:30:00Z","agent":"ana","from":"sai","to":"informativo","note":"pide información"},
  {"id":"claimed:L2","type":"claimed","at":"2025-10-14T16:40:00Z","queue":"informativo"},
  {"id":"expired:L2","type":"expired","at":"2025-10-14T16:55:00Z","queue":"informativo"},
  {"id":"claimed:L3","type":"claimed","at":"2025-10-14T17:00:00Z","agent":"beto","queue":"informativo"},
  {"id":"done:L3","type":"done","at":"2025-10-14T17:05:00Z","agent":"beto","folio":"SAI-9"},
  {"id":"done:L0","type":"done","at":"2025-10-14T17:05:30Z","agent":"ana","note":"duplicado de SAI-8"},
  {"id":"notified:x:informativo","type":"notified","at":"2025-10-14T17:06:00Z","notice":"informativo","channel":"email","recipient":"ana@ipn.mx"},
  {"id":"dead:4","type":"dead","at":"2025-10-14T17:07:00Z","stage":"notify","reason":"smtp 550"}
 ]}`

func TestShowHistory(t *testing.T) {
	f := newFake(t, map[string]http.HandlerFunc{"GET /api/v1/requests/01JD7Q3Z9XAAAAAAAAAAAAAAAA": reply(200, historyBody)})
	code, out, errOut := f.run("show", "01JD7Q3Z9XAAAAAAAAAAAAAAAA")
	wantCode(t, code, exitOK, out, errOut)
	wantContains(t, "stdout", out, "Historial:",
		"Recibida por correo electrónico (imap://cau@ipn.mx/INBOX)",
		"Triaje automático: sai (servicio del catálogo SAI); servicio correo-acceso, grupo Correo; falla; confianza 82 %",
		"Tomada por ana de la cola sai, hasta las",
		"Asignación extendida por ana, hasta las",
		"Reencauzada por ana: sai → informativo: «pide información»",
		"Tomada por un agente sin nombre de la cola informativo",
		"Venció la asignación de un agente sin nombre; volvió a la cola informativo",
		"Terminada por beto con folio SAI SAI-9",
		"Terminada por ana sin folio SAI: «duplicado de SAI-8»",
		"Aviso al solicitante enviado (informativo) por correo a ana@ipn.mx",
		"No se pudo procesar (etapa notify): smtp 550")
	if i, j := strings.Index(out, "Recibida por"), strings.Index(out, "Terminada por"); i < 0 || j < i {
		t.Errorf("history out of order:\n%s", out)
	}
}

func TestFind(t *testing.T) {
	var got url.Values
	f := newFake(t, map[string]http.HandlerFunc{"GET /api/v1/requests": func(w http.ResponseWriter, r *http.Request) {
		got = r.URL.Query()
		writeJSON(w, 200, `{"requests":[
		  {"id":"01JD7Q3Z9XAAAAAAAAAAAAAAAA","channel":"email","received_at":"2025-10-14T16:03:11Z","name":"Ana López","email":"ana@ipn.mx","unit":"ESCOM","state":"done","queue":"sai","folio":"SAI-9"},
		  {"id":"01JD7Q3Z9XBBBBBBBBBBBBBBBB","channel":"x","received_at":"2025-10-14T15:03:11Z","handle":"cau_fan","state":"received"}],
		  "next":"01JD7Q3Z9XBBBBBBBBBBBBBBBB"}`)
	}})
	code, out, errOut := f.run("find", "correo", "ESCOM", "--state", "done", "--from", "2025-10-01", "--limit", "2")
	wantCode(t, code, exitOK, out, errOut)
	if got.Get("q") != "correo ESCOM" || got.Get("state") != "done" || got.Get("limit") != "2" || !strings.HasPrefix(got.Get("from"), "2025-10-01T00:00:00") {
		t.Errorf("query sent: %v", got)
	}
	wantContains(t, "stdout", out, "SOLICITUD", "RECIBIDA", "01JD7Q3Z9XAAAAAAAAAAAAAAAA", "Ana López <ana@ipn.mx>", "ESCOM", "terminada", "SAI-9",
		"@cau_fan", "recibida", "Hay más resultados: repita la búsqueda con --limit 2 --cursor 01JD7Q3Z9XBBBBBBBBBBBBBBBB")

	code, out, errOut = f.run("find", "--json", "--folio", "SAI-9")
	wantCode(t, code, exitOK, out, errOut)
	wantContains(t, "stdout", out, `"requests": [`, `"next": "01JD7Q3Z9XBBBBBBBBBBBBBBBB"`)
}

func TestFindRefusesBadCriteriaBeforeCalling(t *testing.T) {
	f := newFake(t, nil)
	code, out, errOut := f.run("find", "--state", "perdida", "--from", "ayer", "--limit", "0")
	wantCode(t, code, exitUsage, out, errOut)
	f.none()
	wantContains(t, "stderr", errOut, "búsqueda inválida", "--state:", "use received", "--from:", "AAAA-MM-DD", "--limit:")
}

func TestFindNothing(t *testing.T) {
	f := newFake(t, map[string]http.HandlerFunc{"GET /api/v1/requests": reply(200, `{"requests":[]}`)})
	code, out, errOut := f.run("find", "--email", "nadie@ipn.mx")
	wantCode(t, code, exitOK, out, errOut)
	wantContains(t, "stdout", out, "Ninguna solicitud coincide")
}

// TestLeaseActionsNameTheAgent: --agent (or CAU_AGENT) is sent with done, release, extend and
// reroute, so the history says who acted.
func TestLeaseActionsNameTheAgent(t *testing.T) {
	ok := reply(200, `{"state":"done","queue":"informativo","expires_at":"2025-10-14T16:25:00Z"}`)
	f := newFake(t, map[string]http.HandlerFunc{
		"POST /api/v1/leases/L1/done": ok, "POST /api/v1/leases/L1/release": ok,
		"POST /api/v1/leases/L1/extend": ok, "POST /api/v1/leases/L1/reroute": ok,
	})
	for _, args := range [][]string{
		{"done", "L1", "--folio", "SAI-1", "--agent", "ana"},
		{"release", "L1", "--agent", "ana"},
		{"extend", "L1", "--agent", "ana"},
		{"reroute", "L1", "--outcome", "informativo", "--agent", "ana"},
	} {
		code, out, errOut := f.run(args...)
		wantCode(t, code, exitOK, out, errOut)
	}
	code, out, errOut := f.runEnv(map[string]string{"CAU_TOKEN": testToken, "CAU_AGENT": "beto"}, "", "release", "L1")
	wantCode(t, code, exitOK, out, errOut)
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, c := range f.calls {
		want := "ana"
		if i == 4 {
			want = "beto"
		}
		if c.Body["agent"] != want {
			t.Errorf("%s %s: agent %v, want %s", c.Method, c.Path, c.Body["agent"], want)
		}
	}
}
