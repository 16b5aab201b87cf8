package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ipn-cgsi/caud/triage"
)

// runOffline runs cauctl with no server reachable: the offline commands must not need one.
func runOffline(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	f := &fakeCAU{t: t}
	return f.runEnv(map[string]string{"CAU_SERVER": "http://127.0.0.1:1"}, stdin, args...)
}

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCatalogCheckValid(t *testing.T) {
	p := writeFile(t, "catalog.yaml", triage.DefaultCatalogYAML())
	c, err := triage.LoadCatalogFile(p)
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runOffline(t, "", "catalog", "check", p)
	wantCode(t, code, exitOK, out, errOut)
	want := fmt.Sprintf("catálogo válido: %d servicios, versión %s\n", len(c.Services()), c.Version())
	if out != want {
		t.Errorf("stdout %q, want %q", out, want)
	}
}

func TestCatalogCheckInvalid(t *testing.T) {
	p := writeFile(t, "roto.yaml", []byte("version: x\nservices:\n  - id: a\n    bogus: 1\n"))
	code, out, errOut := runOffline(t, "", "catalog", "check", p)
	wantCode(t, code, exitErr, out, errOut)
	// Errors name the file and the line, without Go's sentinel prefix.
	wantContains(t, "stderr", errOut, "catálogo inválido", "roto.yaml:4:")
	if strings.Contains(errOut, triage.ErrInvalidCatalog.Error()) {
		t.Errorf("stderr shows the Go sentinel: %s", errOut)
	}

	code, out, errOut = runOffline(t, "", "catalog", "check", filepath.Join(t.TempDir(), "no.yaml"))
	wantCode(t, code, exitErr, out, errOut)
	wantContains(t, "stderr", errOut, "no existe el archivo")

	for _, args := range [][]string{{"catalog"}, {"catalog", "check"}, {"catalog", "lint", p}} {
		code, out, errOut = runOffline(t, "", args...)
		wantCode(t, code, exitUsage, out, errOut)
	}
}

func TestTriageExplain(t *testing.T) {
	text := "No puedo entrar a mi correo institucional, me marca contraseña incorrecta"
	want := triage.NewEngine(triage.DefaultCatalog()).Decide(triage.Input{Text: text})

	// Words given as separate arguments are one text, as typed in a shell without quotes.
	code, out, errOut := runOffline(t, "", append([]string{"triage", "explain"}, strings.Fields(text)...)...)
	wantCode(t, code, exitOK, out, errOut)
	wantContains(t, "stdout", out, label(outcomeLabels, want.Outcome), "Confianza:", want.Explanation, want.CatalogVersion)
	if want.Service != nil {
		wantContains(t, "stdout", out, want.Service.ID, want.Service.Group)
	}
	for _, test := range want.Tests {
		wantContains(t, "stdout", out, "[ ] "+test)
	}

	code, out, errOut = runOffline(t, text, "--json", "triage", "explain", "-")
	wantCode(t, code, exitOK, out, errOut)
	var got triage.Triage
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("--json: %v\n%s", err, out)
	}
	if got.Outcome != want.Outcome || got.Explanation != want.Explanation || got.CatalogVersion != want.CatalogVersion {
		t.Errorf("--json from stdin decided %+v, want %+v", got, want)
	}
}

func TestTriageExplainCatalogAndUsage(t *testing.T) {
	p := writeFile(t, "catalog.yaml", triage.DefaultCatalogYAML())
	c, _ := triage.LoadCatalogFile(p)
	code, out, errOut := runOffline(t, "", "triage", "explain", "--catalog", p, "la red no funciona")
	wantCode(t, code, exitOK, out, errOut)
	wantContains(t, "stdout", out, c.Version())

	bad := writeFile(t, "roto.yaml", []byte("version: [\n"))
	code, out, errOut = runOffline(t, "", "triage", "explain", "--catalog", bad, "la red no funciona")
	wantCode(t, code, exitErr, out, errOut)
	wantContains(t, "stderr", errOut, "roto.yaml:")

	code, out, errOut = runOffline(t, "", "triage", "explain")
	wantCode(t, code, exitUsage, out, errOut)
	code, out, errOut = runOffline(t, "  ", "triage", "explain", "-")
	wantCode(t, code, exitUsage, out, errOut)
}

const examplesJSONL = `{"id":"E1","channel":"email","subject":"Sin correo","body":"No puedo entrar a mi correo institucional, marca contraseña incorrecta","outcome":"sai","tipo":"falla","area":"CORREO"}

{"id":"E2","channel":"facebook","subject":"","body":"¿Cuándo pagan la beca de este semestre?","outcome":"no_competente","tipo":"-","area":"BECAS"}
{"id":"E3","channel":"email","subject":"RE:","body":"Sigue igual.","outcome":"aclaracion","tipo":"-","area":"-"}
`

func TestTriageEval(t *testing.T) {
	p := writeFile(t, "ejemplos.jsonl", []byte(examplesJSONL))
	ex, err := triage.ReadExamples(strings.NewReader(examplesJSONL))
	if err != nil {
		t.Fatal(err)
	}
	rep := triage.Evaluate(triage.NewEngine(triage.DefaultCatalog()), ex)
	var want strings.Builder
	rep.Format(&want)

	code, out, errOut := runOffline(t, "", "triage", "eval", p)
	wantCode(t, code, exitOK, out, errOut)
	if out != want.String() {
		t.Errorf("report:\n%s\nwant:\n%s", out, want.String())
	}

	code, out, errOut = runOffline(t, "", "--json", "triage", "eval", p)
	wantCode(t, code, exitOK, out, errOut)
	var got triage.Report
	if err := json.Unmarshal([]byte(out), &got); err != nil || got.Total != 3 || got.OutcomeCorrect != rep.OutcomeCorrect {
		t.Errorf("--json report %+v (%v), want Total 3 and OutcomeCorrect %d", got, err, rep.OutcomeCorrect)
	}

	// --catalog after the file, as in the usage line.
	cat := writeFile(t, "catalog.yaml", triage.DefaultCatalogYAML())
	code, out, errOut = runOffline(t, "", "triage", "eval", p, "--catalog", cat)
	wantCode(t, code, exitOK, out, errOut)
}

func TestTriageEvalErrors(t *testing.T) {
	bad := writeFile(t, "malo.jsonl", []byte(examplesJSONL+"{no es json\n"))
	code, out, errOut := runOffline(t, "", "triage", "eval", bad)
	wantCode(t, code, exitErr, out, errOut)
	wantContains(t, "stderr", errOut, "malo.jsonl", "line 5")

	code, out, errOut = runOffline(t, "", "triage", "eval", filepath.Join(t.TempDir(), "no.jsonl"))
	wantCode(t, code, exitErr, out, errOut)
	wantContains(t, "stderr", errOut, "no existe el archivo")

	code, out, errOut = runOffline(t, "", "triage", "eval")
	wantCode(t, code, exitUsage, out, errOut)
}

// Agents keep re-routing reports of "Quetzal" (a system the catalog does not know) to SISTEMAS:
// learn promotes a model that then decides them, and eval/explain use it through --model.
func TestTriageLearn(t *testing.T) {
	var b strings.Builder
	for i, s := range []string{"Quetzal no abre desde la mañana", "Quetzal marca error al firmar", "no puedo firmar en Quetzal",
		"la firma de Quetzal se queda cargando", "Quetzal no me deja entrar", "Quetzal sale en blanco al firmar el oficio",
		"ya no carga Quetzal en la oficina", "Quetzal rechaza la firma de los oficios", "el módulo de firma de Quetzal está caído",
		"no entra Quetzal, dice sesión inválida", "Quetzal truena al firmar", "otra vez Quetzal sin servicio para firmar",
		"Quetzal tarda horas en firmar", "no se puede firmar nada en Quetzal hoy", "Quetzal se cierra solo al firmar"} {
		fmt.Fprintf(&b, `{"id":"q%d","channel":"phone","body":%q,"outcome":"sai","tipo":"falla","area":"SISTEMAS"}`+"\n", i, s)
	}
	corr := writeFile(t, "correcciones.jsonl", []byte(b.String()))
	model := filepath.Join(t.TempDir(), "modelo.json")
	code, out, errOut := runOffline(t, "", "triage", "learn", corr, "--out", model)
	wantCode(t, code, exitOK, out, errOut)
	wantContains(t, "stdout", out, "Reserva, antes → después", "promovido (versión", model)

	probe := "¿por qué no puedo firmar en Quetzal?"
	code, out, errOut = runOffline(t, "", "--json", "triage", "explain", "--model", model, probe)
	wantCode(t, code, exitOK, out, errOut)
	var got triage.Triage
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if got.Outcome != triage.OutcomeSAI || got.Area != "SISTEMAS" || !strings.Contains(got.CatalogVersion, "+m.") {
		t.Errorf("with the model: %+v", got)
	}
	code, out, errOut = runOffline(t, "", "triage", "eval", "--model", model, corr)
	wantCode(t, code, exitOK, out, errOut)
	wantContains(t, "stdout", out, "outcome accuracy")

	// The same texts re-routed elsewhere by another agent: refused, nothing written.
	contra := writeFile(t, "contra.jsonl", []byte(b.String()+strings.ReplaceAll(b.String(), "SISTEMAS", "EQUIPO")))
	other := filepath.Join(t.TempDir(), "otro.json")
	code, out, errOut = runOffline(t, "", "triage", "learn", contra, "--out", other)
	wantCode(t, code, exitErr, out, errOut)
	wantContains(t, "stdout", out, "contradicción:")
	wantContains(t, "stderr", errOut, "modelo no promovido", "contradictorias")
	if _, err := os.Stat(other); err == nil {
		t.Error("a refused model was written")
	}
	code, out, errOut = runOffline(t, "", "triage", "learn", corr)
	wantCode(t, code, exitUsage, out, errOut)
}
