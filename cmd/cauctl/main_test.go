package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

const testToken = "s3cret"

// sent is what the fake server saw of one call.
type sent struct {
	Method, Path, Auth, ContentType string
	Body                            map[string]any
}

// fakeCAU is an in-process caud HTTP API: it answers each "METHOD /path" from the routes the test
// gives, records what the client sent, and, like caud with a token configured, answers 401 on /api/
// without "Authorization: Bearer s3cret".
type fakeCAU struct {
	t   *testing.T
	srv *httptest.Server

	mu    sync.Mutex
	calls []sent
}

func newFake(t *testing.T, routes map[string]http.HandlerFunc) *fakeCAU {
	t.Helper()
	f := &fakeCAU{t: t}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		s := sent{Method: r.Method, Path: r.URL.EscapedPath(), Auth: r.Header.Get("Authorization"), ContentType: r.Header.Get("Content-Type")}
		if len(raw) > 0 {
			if err := json.Unmarshal(raw, &s.Body); err != nil {
				t.Errorf("%s %s: body is not a JSON object: %v: %q", r.Method, r.URL.Path, err, raw)
			}
		}
		f.mu.Lock()
		f.calls = append(f.calls, s)
		f.mu.Unlock()
		if strings.HasPrefix(r.URL.Path, "/api/") && s.Auth != "Bearer "+testToken {
			writeJSON(w, http.StatusUnauthorized, `{"error":"token inválido o ausente"}`)
			return
		}
		h, ok := routes[r.Method+" "+r.URL.EscapedPath()]
		if !ok {
			writeJSON(w, http.StatusNotFound, `{"error":"not found"}`)
			return
		}
		h(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

func reply(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { writeJSON(w, status, body) }
}

// run runs cauctl against the fake with CAU_TOKEN set, and returns the exit code and both outputs.
func (f *fakeCAU) run(args ...string) (int, string, string) {
	return f.runEnv(map[string]string{"CAU_TOKEN": testToken}, "", args...)
}

func (f *fakeCAU) runEnv(env map[string]string, stdin string, args ...string) (int, string, string) {
	f.t.Helper()
	if _, ok := env["CAU_SERVER"]; !ok {
		env["CAU_SERVER"] = f.srv.URL
	}
	var stdout, stderr bytes.Buffer
	code := run(args, strings.NewReader(stdin), &stdout, &stderr, func(k string) string { return env[k] })
	return code, stdout.String(), stderr.String()
}

// only returns the one call the fake received, failing the test if there was not exactly one.
func (f *fakeCAU) only() sent {
	f.t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) != 1 {
		f.t.Fatalf("server got %d calls, want 1: %+v", len(f.calls), f.calls)
	}
	return f.calls[0]
}

func (f *fakeCAU) none() {
	f.t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) != 0 {
		f.t.Fatalf("server got calls, want none (usage error): %+v", f.calls)
	}
}

func wantCode(t *testing.T, got, want int, stdout, stderr string) {
	t.Helper()
	if got != want {
		t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", got, want, stdout, stderr)
	}
}

func wantContains(t *testing.T, what, out string, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if !strings.Contains(out, s) {
			t.Errorf("%s lacks %q:\n%s", what, s, out)
		}
	}
}

func wantCall(t *testing.T, c sent, method, path string) {
	t.Helper()
	if c.Method != method || c.Path != path {
		t.Errorf("call %s %s, want %s %s", c.Method, c.Path, method, path)
	}
	if c.Auth != "Bearer "+testToken {
		t.Errorf("Authorization %q, want bearer token", c.Auth)
	}
	if c.Body != nil && c.ContentType != "application/json" {
		t.Errorf("Content-Type %q with a JSON body", c.ContentType)
	}
}

func wantBody(t *testing.T, c sent, want map[string]any) {
	t.Helper()
	got, _ := json.Marshal(c.Body)
	exp, _ := json.Marshal(want)
	if string(got) != string(exp) {
		t.Errorf("body %s, want %s", got, exp)
	}
}

const queuesBody = `{"queues":[
 {"name":"sai","pending":3,"in_progress":1,"oldest_age_seconds":185.2},
 {"name":"informativo","pending":12,"in_progress":0,"oldest_age_seconds":7530},
 {"name":"aclaracion","pending":0,"in_progress":2,"oldest_age_seconds":0},
 {"name":"no_competente","pending":1,"in_progress":0,"oldest_age_seconds":12.5}]}`

// tableRow returns the whitespace-separated cells of the line starting with first.
func tableRow(t *testing.T, out, first string) []string {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == first {
			return f
		}
	}
	t.Fatalf("no row %q in:\n%s", first, out)
	return nil
}

func TestQueuesTable(t *testing.T) {
	f := newFake(t, map[string]http.HandlerFunc{"GET /api/v1/queues": reply(200, queuesBody)})
	code, out, errOut := f.run("queues")
	wantCode(t, code, exitOK, out, errOut)
	wantCall(t, f.only(), "GET", "/api/v1/queues")

	lines := strings.Split(out, "\n")
	if h := strings.Join(strings.Fields(lines[0]), " "); h != "COLA PENDIENTES EN CURSO MÁS ANTIGUA" {
		t.Errorf("header %q", lines[0])
	}
	// Columns line up although the header has accents: "EN CURSO" starts where the counts do.
	col := strings.Index(lines[0], "EN CURSO")
	for _, l := range lines[1:5] {
		if len(l) <= col || l[col-1] != ' ' || l[col] == ' ' {
			t.Errorf("row %q not aligned to the header at byte %d", l, col)
		}
	}
	for first, want := range map[string]string{
		"sai":           "sai 3 1 3 min",
		"informativo":   "informativo 12 0 2 h 5 min",
		"aclaracion":    "aclaracion 0 2 —",
		"no_competente": "no_competente 1 0 12 s",
	} {
		if got := strings.Join(tableRow(t, out, first), " "); got != want {
			t.Errorf("row %q, want %q", got, want)
		}
	}
}

func TestQueuesJSONPassesServerAnswerThrough(t *testing.T) {
	f := newFake(t, map[string]http.HandlerFunc{"GET /api/v1/queues": reply(200, queuesBody)})
	// Global flags are accepted after the command too.
	code, out, errOut := f.run("queues", "--json")
	wantCode(t, code, exitOK, out, errOut)
	var got, want any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("--json output is not JSON: %v\n%s", err, out)
	}
	json.Unmarshal([]byte(queuesBody), &want)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("--json output %v, want the server's %v", got, want)
	}
}

func TestServerFlagAndBareHostPort(t *testing.T) {
	f := newFake(t, map[string]http.HandlerFunc{"GET /api/v1/queues": reply(200, queuesBody)})
	hostport := strings.TrimPrefix(f.srv.URL, "http://")
	env := map[string]string{"CAU_TOKEN": testToken, "CAU_SERVER": "http://127.0.0.1:1"}
	code, out, errOut := f.runEnv(env, "", "--server", hostport, "queues")
	wantCode(t, code, exitOK, out, errOut)
	wantCall(t, f.only(), "GET", "/api/v1/queues")
}

func TestStatus(t *testing.T) {
	since := time.Now().Add(-5*time.Minute - 10*time.Second).UTC().Format(time.RFC3339)
	ready := `{"ready":true,"checks":[{"name":"nats","ok":true,"detail":"connected","since":""}]}`
	notReady := `{"ready":false,"checks":[{"name":"nats","ok":true,"detail":"connected","since":""},
	  {"name":"imap:cau","ok":false,"detail":"login failed: AUTHENTICATIONFAILED","since":"` + since + `"}]}`

	t.Run("ready", func(t *testing.T) {
		f := newFake(t, map[string]http.HandlerFunc{
			"GET /readyz":        reply(200, ready),
			"GET /api/v1/queues": reply(200, queuesBody),
		})
		code, out, errOut := f.run("status")
		wantCode(t, code, exitOK, out, errOut)
		wantContains(t, "stdout", out, ": listo", "VERIFICACIÓN", "nats", "ok", "COLA", "informativo")
		if row := tableRow(t, out, "sai"); strings.Join(row, " ") != "sai 3 1 3 min" {
			t.Errorf("queue row %q", row)
		}
	})
	t.Run("not ready exits 1", func(t *testing.T) {
		f := newFake(t, map[string]http.HandlerFunc{
			"GET /readyz":        reply(503, notReady),
			"GET /api/v1/queues": reply(200, queuesBody),
		})
		code, out, errOut := f.run("status")
		wantCode(t, code, exitErr, out, errOut)
		wantContains(t, "stdout", out, "NO LISTO", "FALLA", "login failed: AUTHENTICATIONFAILED", "hace 5 min")
		if row := tableRow(t, out, "imap:cau"); row[1] != "FALLA" {
			t.Errorf("imap row %q", row)
		}
	})
	t.Run("json", func(t *testing.T) {
		f := newFake(t, map[string]http.HandlerFunc{
			"GET /readyz":        reply(503, notReady),
			"GET /api/v1/queues": reply(200, queuesBody),
		})
		code, out, errOut := f.run("--json", "status")
		wantCode(t, code, exitErr, out, errOut)
		var got struct {
			Readyz Readiness `json:"readyz"`
			Queues Queues    `json:"queues"`
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("not JSON: %v\n%s", err, out)
		}
		if got.Readyz.Ready || len(got.Readyz.Checks) != 2 || len(got.Queues.Queues) != 4 {
			t.Errorf("json status %+v", got)
		}
	})
}

const claimBody = `{"lease":"L-01JD7","expires_at":"%s","item":{
 "request":{"id":"01JD7Q3Z9X","channel":"phone","received_at":"2025-10-14T16:03:11Z","source":{},
  "requester":{"name":"Mtra. Laura Gómez","email":"lgomez@ipn.mx","phone":"5557296000","handle":null,
   "unit":"ESCOM","role":"docente","extension":"52034"},
  "subject":"Sin acceso al correo","text":"No puedo entrar a mi correo institucional.\nMarca contraseña incorrecta.","auto":{"auto_submitted":false}},
 "triage":{"outcome":"sai","kind":"falla","service":{"id":"CORREO-01","name":"Correo institucional","group":"Mesa de correo","area":"CORREO"},
  "tests":["Verificar que la cuenta no esté bloqueada","Probar el acceso desde webmail"],
  "questions":["¿Desde cuándo ocurre?"],
  "confidence":0.85,"explanation":"términos: correo institucional (2.0), contraseña (1.0); falla: «no puedo»",
  "catalog_version":"2025.10-1+3fa2c1d9","area":"CORREO","by":"engine"},
 "triaged_at":"2025-10-14T16:03:12Z"}}`

func TestClaim(t *testing.T) {
	expires := time.Now().Add(15*time.Minute + 30*time.Second).UTC().Format(time.RFC3339)
	f := newFake(t, map[string]http.HandlerFunc{"POST /api/v1/queues/sai/claim": reply(200, fmt.Sprintf(claimBody, expires))})
	code, out, errOut := f.run("claim", "sai", "--agent", "ana")
	wantCode(t, code, exitOK, out, errOut)
	c := f.only()
	wantCall(t, c, "POST", "/api/v1/queues/sai/claim")
	wantBody(t, c, map[string]any{"agent": "ana"})
	wantContains(t, "claim output", out,
		"Asignación:", "L-01JD7", "(en 15 min)",
		"Mtra. Laura Gómez <lgomez@ipn.mx>", "5557296000",
		"Unidad:", "ESCOM", "Tipo:", "docente", "Ext.:", "52034",
		"Sin acceso al correo",
		"  No puedo entrar a mi correo institucional.\n  Marca contraseña incorrecta.\n",
		"sai (servicio del catálogo SAI)", "falla",
		"CORREO-01 — Correo institucional", "Grupo:", "Mesa de correo", "Área:", "CORREO",
		"  [ ] Verificar que la cuenta no esté bloqueada\n  [ ] Probar el acceso desde webmail\n",
		"  1. ¿Desde cuándo ocurre?",
		"85 %", "términos: correo institucional", "cauctl done L-01JD7 --folio",
	)
	// Labels align on runes, not bytes: the values after "Área:" and "Grupo:" start in one column.
	col := func(prefix string) int {
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, prefix) {
				return len([]rune(l)) - len([]rune(strings.TrimLeft(strings.TrimPrefix(l, prefix), " ")))
			}
		}
		t.Fatalf("no line %q", prefix)
		return 0
	}
	if col("Área:") != col("Grupo:") {
		t.Errorf("values not aligned: Área at %d, Grupo at %d", col("Área:"), col("Grupo:"))
	}
}

func TestClaimOrientationAndNoAgent(t *testing.T) {
	body := `{"lease":"L2","expires_at":"2025-10-14T16:18:00Z","item":{"request":{"id":"R2","channel":"email","received_at":"2025-10-14T16:03:11Z",
	 "requester":{"handle":null},"text":"¿Cuándo sale la beca?"},
	 "triage":{"outcome":"no_competente","orientation":{"target":"BECAS","office":"Dirección de Becas","message":"Le ofrecemos una disculpa; su trámite lo atiende la Dirección de Becas."},
	 "confidence":0.7,"explanation":"becas"},"triaged_at":""}}`
	f := newFake(t, map[string]http.HandlerFunc{"POST /api/v1/queues/no_competente/claim": reply(200, body)})
	code, out, errOut := f.run("claim", "no_competente")
	wantCode(t, code, exitOK, out, errOut)
	wantBody(t, f.only(), map[string]any{})
	wantContains(t, "claim output", out, "no competente (orientar al solicitante)",
		"Dirección de Becas (BECAS)", "Le ofrecemos una disculpa", "70 %", "(sin datos)")
}

func TestClaimEmptyQueueExits3(t *testing.T) {
	f := newFake(t, map[string]http.HandlerFunc{"POST /api/v1/queues/aclaracion/claim": func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}})
	for _, args := range [][]string{{"claim", "aclaracion"}, {"--json", "claim", "aclaracion"}} {
		code, out, errOut := f.run(args...)
		wantCode(t, code, exitEmpty, out, errOut)
		if out != "" {
			t.Errorf("%v: stdout %q on an empty queue, want nothing (scripts loop on it)", args, out)
		}
	}
}

func TestClaimUsage(t *testing.T) {
	f := newFake(t, nil)
	for _, args := range [][]string{{"claim"}, {"claim", "soporte"}, {"claim", "sai", "extra"}, {"claim", "sai", "--agente", "x"}} {
		code, out, errOut := f.run(args...)
		wantCode(t, code, exitUsage, out, errOut)
	}
	f.none()
	_, _, errOut := f.run("claim", "soporte")
	wantContains(t, "stderr", errOut, "cola desconocida", "sai, informativo, aclaracion, no_competente")
}

func TestDone(t *testing.T) {
	f := newFake(t, map[string]http.HandlerFunc{"POST /api/v1/leases/L-01JD7/done": reply(200, `{"state":"done"}`)})
	code, out, errOut := f.run("done", "L-01JD7", "--folio", "SAI-2025-001234")
	wantCode(t, code, exitOK, out, errOut)
	c := f.only()
	wantCall(t, c, "POST", "/api/v1/leases/L-01JD7/done")
	wantBody(t, c, map[string]any{"folio": "SAI-2025-001234"})
	wantContains(t, "stdout", out, "L-01JD7", "SAI-2025-001234", "terminada")
}

func TestDoneWithoutFolioSendsNoFolio(t *testing.T) {
	f := newFake(t, map[string]http.HandlerFunc{"POST /api/v1/leases/L1/done": reply(200, `{"state":"done"}`)})
	code, out, errOut := f.run("--json", "done", "L1")
	wantCode(t, code, exitOK, out, errOut)
	wantBody(t, f.only(), map[string]any{})
	if strings.TrimSpace(out) != "{\n  \"state\": \"done\"\n}" {
		t.Errorf("--json done: %q", out)
	}
}

func TestDoneSinFolio(t *testing.T) {
	f := newFake(t, map[string]http.HandlerFunc{"POST /api/v1/leases/L1/done": reply(200, `{"state":"done"}`)})
	code, out, errOut := f.run("done", "L1", "--sin-folio", "duplicado de SAI-2025-001200")
	wantCode(t, code, exitOK, out, errOut)
	wantBody(t, f.only(), map[string]any{"no_folio_reason": "duplicado de SAI-2025-001200"})
	code, out, errOut = f.run("done", "L1", "--folio", "F", "--sin-folio", "x")
	wantCode(t, code, exitUsage, out, errOut)
}

// TestDoneFolioRequired shows the server's refusal of a folio-less sai item with the flags to use.
func TestDoneFolioRequired(t *testing.T) {
	f := newFake(t, map[string]http.HandlerFunc{"POST /api/v1/leases/L1/done": reply(400,
		`{"error":"Un elemento de la cola sai se termina con el folio con que se registró en el SAI.","fields":{"folio":"Indique el folio del SAI."}}`)})
	code, out, errOut := f.run("done", "L1")
	wantCode(t, code, exitErr, out, errOut)
	wantContains(t, "stderr", errOut, "folio con que se registró en el SAI", "--folio")
}

func TestLeaseFinishedOrUnknown(t *testing.T) {
	f := newFake(t, map[string]http.HandlerFunc{
		"POST /api/v1/leases/L1/done":    reply(409, `{"error":"La asignación ya se terminó el 14/10/2025 10:03; no hace falta hacer nada más."}`),
		"POST /api/v1/leases/L2/release": reply(404, `{"error":"No existe una asignación con ese identificador."}`),
	})
	code, out, errOut := f.run("done", "L1", "--folio", "F")
	wantCode(t, code, exitErr, out, errOut)
	wantContains(t, "stderr", errOut, "ya se terminó")
	if strings.Contains(errOut, "expiró") {
		t.Errorf("a finished lease is reported expired: %s", errOut)
	}
	code, out, errOut = f.run("release", "L2")
	wantCode(t, code, exitErr, out, errOut)
	wantContains(t, "stderr", errOut, "No existe una asignación")
}

func TestLeaseIDIsEscaped(t *testing.T) {
	f := newFake(t, map[string]http.HandlerFunc{"POST /api/v1/leases/a%2Fb/release": reply(200, `{"state":"queued"}`)})
	code, out, errOut := f.run("release", "a/b")
	wantCode(t, code, exitOK, out, errOut)
	wantCall(t, f.only(), "POST", "/api/v1/leases/a%2Fb/release")
}

func TestRelease(t *testing.T) {
	f := newFake(t, map[string]http.HandlerFunc{"POST /api/v1/leases/L1/release": reply(200, `{"state":"queued"}`)})
	code, out, errOut := f.run("release", "L1")
	wantCode(t, code, exitOK, out, errOut)
	wantCall(t, f.only(), "POST", "/api/v1/leases/L1/release")
	wantContains(t, "stdout", out, "Liberada", "L1", "volvió a su cola", "en cola")
}

func TestExtend(t *testing.T) {
	expires := time.Now().Add(15*time.Minute + 30*time.Second).UTC().Format(time.RFC3339)
	f := newFake(t, map[string]http.HandlerFunc{"POST /api/v1/leases/L1/extend": func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, `{"expires_at":"`+expires+`"}`)
	}})
	code, out, errOut := f.run("extend", "L1", "--for", "15m")
	wantCode(t, code, exitOK, out, errOut)
	c := f.only()
	wantCall(t, c, "POST", "/api/v1/leases/L1/extend")
	d, err := time.ParseDuration(fmt.Sprint(c.Body["duration"]))
	if err != nil || d != 15*time.Minute {
		t.Errorf("duration sent %v (%v), want 15m as a Go duration", c.Body["duration"], err)
	}
	wantContains(t, "stdout", out, "Extendida", "(en 15 min)")

	for _, bad := range []string{"quince", "-5m"} {
		code, out, errOut = f.run("extend", "L1", "--for", bad)
		wantCode(t, code, exitUsage, out, errOut)
	}
}

func TestReroute(t *testing.T) {
	f := newFake(t, map[string]http.HandlerFunc{"POST /api/v1/leases/L1/reroute": reply(200, `{"queue":"sai"}`)})
	code, out, errOut := f.run("reroute", "L1", "--outcome", "sai", "--service", "RED-03", "--kind", "servicio", "--note", "es alta de nodo")
	wantCode(t, code, exitOK, out, errOut)
	c := f.only()
	wantCall(t, c, "POST", "/api/v1/leases/L1/reroute")
	wantBody(t, c, map[string]any{"outcome": "sai", "service": "RED-03", "kind": "servicio", "note": "es alta de nodo"})
	wantContains(t, "stdout", out, "Reencauzada", "cola sai")
}

func TestRerouteUsage(t *testing.T) {
	f := newFake(t, nil)
	for _, args := range [][]string{
		{"reroute", "L1"},
		{"reroute", "L1", "--outcome", "SAI-ish"},
		{"reroute", "L1", "--outcome", "sai"},
		{"reroute", "L1", "--outcome", "no_competente"},
		{"reroute", "L1", "--outcome", "informativo", "--kind", "incidente"},
		{"reroute", "--outcome", "informativo"},
	} {
		code, out, errOut := f.run(args...)
		wantCode(t, code, exitUsage, out, errOut)
	}
	f.none()
}

func TestLeaseGone(t *testing.T) {
	gone := reply(410, `{"error":"lease expired"}`)
	f := newFake(t, map[string]http.HandlerFunc{
		"POST /api/v1/leases/L9/done":    gone,
		"POST /api/v1/leases/L9/release": gone,
		"POST /api/v1/leases/L9/extend":  gone,
		"POST /api/v1/leases/L9/reroute": gone,
	})
	for _, args := range [][]string{
		{"done", "L9", "--folio", "F"}, {"release", "L9"}, {"extend", "L9"},
		{"reroute", "L9", "--outcome", "informativo"},
	} {
		code, out, errOut := f.run(args...)
		wantCode(t, code, exitErr, out, errOut)
		wantContains(t, args[0]+" stderr", errOut, "la asignación L9 expiró;", "cauctl claim", "lease expired")
		// Only done warns about registering twice in the SAI: the agent may already have done so.
		if warned := strings.Contains(errOut, "no lo registre de nuevo"); warned != (args[0] == "done") {
			t.Errorf("%s: SAI duplicate warning shown=%v", args[0], warned)
		}
	}
}

const showBody = `{"request":{"id":"01JD7Q3Z9X","channel":"in_person","received_at":"2025-10-14T16:03:11Z",
 "requester":{"name":"Juan Pérez","handle":null,"unit":"ESIME Zacatenco","role":"administrativo","extension":"54321"},
 "text":"Solicita alta de nodo de red en el laboratorio."},
 "triage":null,"state":"received","queue":"","folio":"","updated_at":"2025-10-14T16:03:11Z"}`

func TestShow(t *testing.T) {
	f := newFake(t, map[string]http.HandlerFunc{
		"GET /api/v1/requests/01JD7Q3Z9X": reply(200, showBody),
		"GET /api/v1/requests/done1": reply(200, `{"request":{"id":"done1","channel":"email","text":"x","requester":{"handle":null}},
		 "triage":{"outcome":"informativo","kind":"servicio","concept":"CAU_INFORMATIVO_04A","confidence":0.6,"explanation":"sin servicio"},
		 "state":"done","queue":"informativo","folio":"SAI-2025-000042"}`),
	})
	code, out, errOut := f.run("show", "01JD7Q3Z9X")
	wantCode(t, code, exitOK, out, errOut)
	wantCall(t, f.only(), "GET", "/api/v1/requests/01JD7Q3Z9X")
	wantContains(t, "stdout", out, "Estado:", "recibida", "presencial", "Juan Pérez", "ESIME Zacatenco",
		"administrativo", "54321", "alta de nodo", "Triaje:", "pendiente")

	code, out, errOut = f.run("show", "done1")
	wantCode(t, code, exitOK, out, errOut)
	wantContains(t, "stdout", out, "terminada", "Cola:", "informativo", "SAI-2025-000042",
		"informativo (registrar como CAU_INFORMATIVO_04A)", "60 %")

	code, out, errOut = f.run("show", "nope")
	wantCode(t, code, exitErr, out, errOut)
	wantContains(t, "stderr", errOut, "no existe la solicitud nope")
}

func TestSubmit(t *testing.T) {
	f := newFake(t, map[string]http.HandlerFunc{"POST /api/v1/requests": reply(201, `{"id":"01JD7Q3Z9X"}`)})
	code, out, errOut := f.run("submit", "--channel", "phone", "--unit", "ESCOM", "--role", "docente", "--ext", "52034",
		"--name", "Laura Gómez", "--email", "lgomez@ipn.mx", "--phone", "5557296000",
		"--description", "  No puedo entrar al correo institucional.  ", "--key", "k-1", "--confirm")
	wantCode(t, code, exitOK, out, errOut)
	c := f.only()
	wantCall(t, c, "POST", "/api/v1/requests")
	wantBody(t, c, map[string]any{
		"channel": "phone", "unit": "ESCOM", "role": "docente", "extension": "52034",
		"name": "Laura Gómez", "email": "lgomez@ipn.mx", "phone": "5557296000",
		"description": "No puedo entrar al correo institucional.", "idempotency_key": "k-1", "confirm": true,
	})
	wantContains(t, "stdout", out, "Solicitud registrada: 01JD7Q3Z9X")
}

func TestSubmitDescriptionFromStdinAndRepeatedKey(t *testing.T) {
	f := newFake(t, map[string]http.HandlerFunc{"POST /api/v1/requests": reply(200, `{"id":"01JD7Q3Z9X"}`)})
	env := map[string]string{"CAU_TOKEN": testToken}
	code, out, errOut := f.runEnv(env, "La impresora del\nlaboratorio no imprime.\n",
		"submit", "--channel", "presencial", "--description", "-")
	wantCode(t, code, exitOK, out, errOut)
	c := f.only()
	if c.Body["description"] != "La impresora del\nlaboratorio no imprime." || c.Body["channel"] != "in_person" {
		t.Errorf("body %v", c.Body)
	}
	if k, _ := c.Body["idempotency_key"].(string); k == "" {
		t.Errorf("no idempotency key sent without --key")
	}
	if c.Body["confirm"] != false {
		t.Errorf("confirm %v, want false", c.Body["confirm"])
	}
	wantContains(t, "stdout", out, "ya estaba registrada", "01JD7Q3Z9X")
}

func TestSubmitFieldErrors(t *testing.T) {
	bad := `{"error":"la solicitud tiene datos inválidos","fields":{"unit":"Unidad desconocida; ¿quiso decir ESCOM?","extension":"La extensión debe tener 5 dígitos"},"suggestions":{"unit":["ESCOM","ESCA Tepepan"]}}`
	f := newFake(t, map[string]http.HandlerFunc{"POST /api/v1/requests": reply(400, bad)})
	code, out, errOut := f.run("submit", "--channel", "phone", "--unit", "ESCOMM", "--ext", "52", "--description", "sin red")
	wantCode(t, code, exitErr, out, errOut)
	wantContains(t, "stderr", errOut,
		"la solicitud tiene datos inválidos",
		"--unit (unidad): Unidad desconocida; ¿quiso decir ESCOM?",
		"sugerencias: ESCOM, ESCA Tepepan",
		"--ext (extensión): La extensión debe tener 5 dígitos")
	if out != "" {
		t.Errorf("stdout %q on error without --json", out)
	}

	code, out, _ = f.run("--json", "submit", "--channel", "phone", "--unit", "ESCOMM", "--description", "sin red")
	wantCode(t, code, exitErr, out, "")
	var eb struct{ Fields map[string]string }
	if err := json.Unmarshal([]byte(out), &eb); err != nil || eb.Fields["unit"] == "" {
		t.Errorf("--json error body on stdout: %v %q", err, out)
	}
}

func TestSubmitUsage(t *testing.T) {
	f := newFake(t, nil)
	for _, args := range [][]string{
		{"submit", "--description", "x"},
		{"submit", "--channel", "email", "--description", "x"},
		{"submit", "--channel", "phone"},
		{"submit", "--channel", "phone", "--description", "   "},
		{"submit", "--channel", "phone", "--description", "x", "--role", "jefe"},
	} {
		code, out, errOut := f.run(args...)
		wantCode(t, code, exitUsage, out, errOut)
	}
	f.none()
}

func TestUnauthorized(t *testing.T) {
	f := newFake(t, map[string]http.HandlerFunc{"GET /api/v1/queues": reply(200, queuesBody)})
	code, out, errOut := f.runEnv(map[string]string{}, "", "queues")
	wantCode(t, code, exitErr, out, errOut)
	wantContains(t, "stderr", errOut, "CAU_TOKEN", "token inválido o ausente")
	if c := f.only(); c.Auth != "" {
		t.Errorf("Authorization %q sent without CAU_TOKEN", c.Auth)
	}

	code, out, errOut = f.runEnv(map[string]string{"CAU_TOKEN": "wrong"}, "", "queues")
	wantCode(t, code, exitErr, out, errOut)
	wantContains(t, "stderr", errOut, "rechazó el token")
}

func TestServerErrorNotJSON(t *testing.T) {
	f := newFake(t, map[string]http.HandlerFunc{"GET /api/v1/queues": func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "upstream connect error", http.StatusBadGateway)
	}})
	code, out, errOut := f.run("queues")
	wantCode(t, code, exitErr, out, errOut)
	wantContains(t, "stderr", errOut, "502", "upstream connect error")
}

func TestConnectionRefused(t *testing.T) {
	f := newFake(t, nil)
	url := f.srv.URL
	f.srv.Close()
	code, out, errOut := f.runEnv(map[string]string{"CAU_SERVER": url}, "", "queues")
	wantCode(t, code, exitErr, out, errOut)
	wantContains(t, "stderr", errOut, "no se pudo conectar con caud en "+url)
}

func TestTimeout(t *testing.T) {
	unblock := make(chan struct{})
	f := newFake(t, map[string]http.HandlerFunc{"GET /api/v1/queues": func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-unblock:
		case <-r.Context().Done():
		}
	}})
	defer close(unblock)
	code, out, errOut := f.run("--timeout", "50ms", "queues")
	wantCode(t, code, exitErr, out, errOut)
	wantContains(t, "stderr", errOut, "no respondió en 50ms")
}

func TestUsageErrors(t *testing.T) {
	f := newFake(t, nil)
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{nil, exitUsage, "Uso: cauctl"},
		{[]string{"frobnicate"}, exitUsage, "comando desconocido"},
		{[]string{"--frob", "queues"}, exitUsage, "opción desconocida -frob"},
		{[]string{"queues", "extra"}, exitUsage, "sobran argumentos"},
		{[]string{"show"}, exitUsage, "faltan argumentos"},
		{[]string{"--server", "ftp://x", "queues"}, exitUsage, "--server inválido"},
		{[]string{"done", "L1", "--folio"}, exitUsage, "necesita un valor"},
	} {
		code, out, errOut := f.run(tc.args...)
		wantCode(t, code, tc.code, out, errOut)
		wantContains(t, fmt.Sprint(tc.args), errOut, tc.msg)
	}
	f.none()

	for _, args := range [][]string{{"help"}, {"-h"}, {"claim", "-h"}} {
		code, out, errOut := f.run(args...)
		wantCode(t, code, exitOK, out, errOut)
		wantContains(t, fmt.Sprint(args), out, "Uso: cauctl")
		if n := strings.Count(out, "Uso: cauctl"); n != 1 {
			t.Errorf("%v: usage printed %d times", args, n)
		}
	}
	_, out, _ := f.run("claim", "-h")
	wantContains(t, "claim -h", out, "--agent VALOR", "--server VALOR", "--timeout DURACIÓN")
	f.none()
}

func TestHumanAge(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0 s"},
		{12500 * time.Millisecond, "12 s"},
		{3*time.Minute + 5*time.Second, "3 min"},
		{2 * time.Hour, "2 h"},
		{2*time.Hour + 5*time.Minute + 30*time.Second, "2 h 5 min"},
		{26 * time.Hour, "1 d 2 h"},
		{-time.Second, "0 s"},
	} {
		if got := humanAge(tc.d); got != tc.want {
			t.Errorf("humanAge(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}
