package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDLQListAndReplay(t *testing.T) {
	f := newFake(t, map[string]http.HandlerFunc{
		"GET /api/v1/deadletters":    reply(200, `{"deadletters":[{"seq":7,"stage":"triage","reason":"triage engine panic: catálogo dañado","original_subject":"cau.inbound.desk","request_id":"01JD8Y3M2Q4ZK5V6W7X8Y9Z0AB","deliveries":"5","time":"2025-10-14T16:03:11Z"}]}`),
		"GET /api/v1/spool/failures": reply(200, `{"spool_dir":"/var/lib/caud/spool","failures":[{"name":"oficio-12.pdf","failed_at":"2025-10-14T16:05:00Z","code":"encrypted","reason":"El PDF está protegido con contraseña."}]}`),
	})
	code, out, errOut := f.run("dlq", "list")
	wantCode(t, code, 0, out, errOut)
	// One place shows everything that could not be processed: dead letters and failed memo files.
	wantContains(t, "dlq list", out, "SEC", "MOTIVO", "7", "triage", "01JD8Y3M2Q4ZK5V6W7X8Y9Z0AB", "catálogo dañado", "cauctl dlq replay SEC",
		"/var/lib/caud/spool/failed", "oficio-12.pdf", "El PDF está protegido con contraseña.")
	code, out, errOut = f.run("dlq", "list", "--json")
	wantCode(t, code, 0, out, errOut)
	wantContains(t, "dlq list --json", out, `"deadletters"`, `"spool_failures"`, `"oficio-12.pdf"`)

	f = newFake(t, map[string]http.HandlerFunc{
		"POST /api/v1/deadletters/7/replay":  reply(200, `{"replayed_to":"cau.inbound.desk"}`),
		"POST /api/v1/deadletters/99/replay": reply(404, `{"error":"no existe un mensaje fallido con esa secuencia"}`),
	})
	code, out, errOut = f.run("dlq", "replay", "7")
	wantCode(t, code, 0, out, errOut)
	wantContains(t, "dlq replay", out, "Reprocesado", "7")
	code, out, errOut = f.run("dlq", "replay", "99")
	wantCode(t, code, 1, out, errOut)
	wantContains(t, "dlq replay 99", errOut, "no existe un mensaje fallido")
	code, out, errOut = f.run("dlq", "replay", "x")
	wantCode(t, code, 2, out, errOut)
	code, out, errOut = f.run("dlq")
	wantCode(t, code, 2, out, errOut)
}

func TestTriageCorrectionsExport(t *testing.T) {
	line := `{"id":"01JD8Y3M2Q4ZK5V6W7X8Y9Z0AB","channel":"phone","body":"¿cuándo pagan la beca?","outcome":"no_competente","tipo":"-","area":"BECAS","previous":{"outcome":"sai","tipo":"falla","area":"SISTEMAS"}}` + "\n"
	f := newFake(t, map[string]http.HandlerFunc{
		"GET /api/v1/corrections": func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(line)) },
	})
	code, out, errOut := f.run("triage", "corrections")
	wantCode(t, code, 0, out, errOut)
	if out != line {
		t.Fatalf("stdout %q", out)
	}
	path := t.TempDir() + "/c.jsonl"
	code, out, errOut = f.run("triage", "corrections", "--out", path)
	wantCode(t, code, 0, out, errOut)
	// The exported file is what triage eval reads.
	code, out, errOut = f.run("triage", "eval", path)
	wantCode(t, code, 0, out, errOut)
	wantContains(t, "triage eval of corrections", out, "1")
}

func TestMemoUpload(t *testing.T) {
	var gotFile, gotEmail, gotAuth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != "POST" || r.URL.Path != "/api/v1/memos" {
			writeJSON(w, 404, `{"error":"not found"}`)
			return
		}
		gotAuth = r.Header.Get("Authorization")
		file, hdr, err := r.FormFile("file")
		if err != nil {
			writeJSON(w, 400, `{"error":"El archivo está vacío."}`)
			return
		}
		defer file.Close()
		b, _ := io.ReadAll(file)
		gotFile, gotEmail = hdr.Filename+":"+string(b), r.FormValue("email")
		writeJSON(w, 201, `{"id":"01JD8Y3M2Q4ZK5V6W7X8Y9Z0AB"}`)
	}))
	defer srv.Close()
	path := filepath.Join(t.TempDir(), "oficio.png")
	if err := os.WriteFile(path, []byte("PNGDATA"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"CAU_TOKEN": testToken, "CAU_SERVER": srv.URL}
	var stdout, stderr strings.Builder
	code := run([]string{"memo", path, "--email", "jefe@ipn.mx"}, strings.NewReader(""), &stdout, &stderr, func(k string) string { return env[k] })
	wantCode(t, code, 0, stdout.String(), stderr.String())
	wantContains(t, "memo", stdout.String(), "Oficio registrado", "01JD8Y3M2Q4ZK5V6W7X8Y9Z0AB")
	if gotFile != "oficio.png:PNGDATA" || gotEmail != "jefe@ipn.mx" || gotAuth != "Bearer "+testToken {
		t.Fatalf("server got %q %q %q", gotFile, gotEmail, gotAuth)
	}
	code = run([]string{"memo", filepath.Join(t.TempDir(), "no-existe.pdf")}, strings.NewReader(""), &stdout, &stderr, func(k string) string { return env[k] })
	wantCode(t, code, 1, stdout.String(), stderr.String())
}
