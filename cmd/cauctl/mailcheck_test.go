package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// mailDir writes mails into a fresh folder (one sub-folder deep, as a corpus is laid out) with a
// manifest beside it, and returns the folder and the manifest path.
func mailDir(t *testing.T, mails map[string]string, manifest string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	for name, body := range mails {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	m := filepath.Join(dir, "manifest.jsonl")
	if err := os.WriteFile(m, []byte(manifest), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, m
}

var checkMails = map[string]string{
	"a/mbox.eml":   "From x@ipn.mx Tue Oct 14 09:12:01 2025\nFrom: Ana <ana@ipn.mx>\nSubject: Sin red\n\nNo hay red en el edificio 2.\n",
	"a/bounce.eml": "From: MAILER-DAEMON@mx.ipn.mx\nSubject: Undelivered Mail Returned to Sender\n\nUser unknown.\n",
	"a/list.eml":   "From: Luis <luis@ipn.mx>\nList-Id: <docentes.ipn.mx>\nSubject: Aula virtual\n\nEl aula virtual no carga.\n",
	"a/empty.eml":  "\n",
}

const checkManifest = `{"file": "a/mbox.eml", "expect_subject": "Sin red", "expect_text_contains": ["edificio 2"]}
{"file": "a/bounce.eml", "expect_kind": "bounce"}
{"file": "a/list.eml", "expect_subject": "Otro asunto", "expect_kind": "ham"}
`

func TestMailCheckReportsEachFileAndSummary(t *testing.T) {
	dir, manifest := mailDir(t, checkMails, checkManifest)
	code, out, errOut := runOffline(t, "", "mail", "check", "--expect", manifest, dir)
	wantCode(t, code, exitOK, out, errOut)
	wantContains(t, "stdout", out,
		"a/mbox.eml\n  asunto:     Sin red\n  texto:      No hay red en el edificio 2.\n  defectos:   mbox_from_line\n  resultado:  solicitud\n",
		"a/bounce.eml", "resultado:  suprimido (mailer_daemon)",
		"a/list.eml", "masivo:     list (sin respuesta automática)", `diferencia: asunto: se esperaba "Otro asunto"`,
		"a/empty.eml", "resultado:  cuarentena (",
		"Resumen: 4 archivos", "solicitudes:              2 (50.0 %)", "ilegibles 1 (25.0 %)",
		"asuntos como el manifiesto:          1/2 (50.0 %)", "textos como el manifiesto:           1/1 (100.0 %)",
		"rebotes y respuestas automáticas suprimidos: 1/1 (100.0 %)")
}

func TestMailCheckMissesAndJSON(t *testing.T) {
	dir, manifest := mailDir(t, checkMails, checkManifest)
	code, out, errOut := runOffline(t, "", "mail", "check", "--misses", "--expect", manifest, dir)
	wantCode(t, code, exitOK, out, errOut)
	if strings.Contains(out, "a/mbox.eml") || !strings.Contains(out, "a/list.eml") || !strings.Contains(out, "a/empty.eml") {
		t.Errorf("--misses shows the wrong files:\n%s", out)
	}

	code, out, errOut = runOffline(t, "", "--json", "mail", "check", "--expect", manifest, dir)
	wantCode(t, code, exitOK, out, errOut)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 {
		t.Fatalf("%d JSON lines, want 4 files and the summary:\n%s", len(lines), out)
	}
	var r mailResult
	if err := json.Unmarshal([]byte(lines[2]), &r); err != nil || r.File != "a/list.eml" || r.Bulk != "list" || r.SubjectOK == nil || *r.SubjectOK {
		t.Errorf("line %s: %+v %v", lines[2], r, err)
	}
	var sum struct {
		Summary mailSummary `json:"summary"`
	}
	if err := json.Unmarshal([]byte(lines[4]), &sum); err != nil || sum.Summary.Files != 4 || sum.Summary.Suppressed != 1 {
		t.Errorf("summary %s: %v", lines[4], err)
	}
}

func TestMailCheckUsage(t *testing.T) {
	code, out, errOut := runOffline(t, "", "mail", "check")
	wantCode(t, code, exitUsage, out, errOut)
	code, out, errOut = runOffline(t, "", "mail", "check", t.TempDir())
	wantCode(t, code, exitErr, out, errOut)
	wantContains(t, "stderr", errOut, "no hay archivos .eml")
}

// TestShowMailDefects: an agent sees what the mail reader repaired, that list mail gets no
// automatic answer, and that the text holds a forward.
func TestShowMailDefects(t *testing.T) {
	f := newFake(t, map[string]http.HandlerFunc{
		"GET /api/v1/requests/m1": reply(200, `{"request":{"id":"m1","channel":"email","text":"El aula virtual no carga.",
		 "requester":{"handle":null,"email":"luis@ipn.mx"},"forwarded":true,
		 "auto":{"auto_submitted":false,"bulk":"list","list_id":"<docentes.ipn.mx>"},
		 "defects":[{"code":"undeclared_8bit","text":"texto con acentos sin juego de caracteres declarado; se detectó de los bytes"}]},
		 "triage":null,"state":"received"}`),
	})
	code, out, errOut := f.run("show", "m1")
	wantCode(t, code, exitOK, out, errOut)
	wantContains(t, "stdout", out, "lista de correo: no se responde automáticamente", "mensaje reenviado",
		"Defectos del correo", "texto con acentos sin juego de caracteres declarado")
}
