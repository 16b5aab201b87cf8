package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/ipn-cgsi/caud/triage"
)

// offlineCommands are the commands that use the triage package directly and need no server.
func offlineCommands() []command {
	return []command{
		{"catalog check", "ARCHIVO", "validar un catálogo YAML (sin servidor)", (*app).cmdCatalogCheck},
		{"catalog services", "[--catalog ARCHIVO]", "listar los servicios SAI (valores de reroute --service) (sin servidor)", (*app).cmdCatalogServices},
		{"catalog targets", "[--catalog ARCHIVO]", "listar los destinos de orientación (valores de reroute --target) (sin servidor)", (*app).cmdCatalogTargets},
		{"triage explain", "[--catalog ARCHIVO] [--subject ASUNTO] TEXTO…", "explicar la decisión de triaje para un texto (sin servidor)", (*app).cmdTriageExplain},
		{"mail check", "DIR [--expect manifest.jsonl] [--misses]", "leer una carpeta de correos .eml como lo haría el buzón e informar (sin servidor)", (*app).cmdMailCheck},
		{"triage eval", "ARCHIVO.jsonl [--catalog ARCHIVO] [--model MODELO]", "medir el triaje contra ejemplos etiquetados (sin servidor)", (*app).cmdTriageEval},
		{"triage bench", "ARCHIVO.jsonl… [--catalog ARCHIVO] [--model MODELO] [--rounds N]", "medir el motor: entrenamiento, memoria y latencia de Decide (p50, p99) sobre ejemplos (sin servidor)", (*app).cmdTriageBench},
		{"triage learn", "CORRECCIONES.jsonl [--catalog ARCHIVO] [--model ACTUAL] [--guard EJEMPLOS.jsonl] --out MODELO", "aprender de las correcciones de los agentes; se promueve sólo si mejora (sin servidor)", (*app).cmdTriageLearn},
	}
}

// cmdCatalogCheck validates a catalog file and prints its size and version, or every problem with
// its line number (exit 1).
func (a *app) cmdCatalogCheck(args []string) int {
	fs := a.flags("catalog check", "ARCHIVO")
	pos, code, ok := a.parse(fs, args, 1, true)
	if !ok {
		return code
	}
	c, err := triage.LoadCatalogFile(pos[0])
	if err != nil {
		a.catalogError(err)
		return exitErr
	}
	fmt.Fprintf(a.stdout, "catálogo válido: %d servicios, versión %s\n", len(c.Services()), c.Version())
	return exitOK
}

// catalogFor loads the catalog named by --catalog, or the embedded default; it reports false after
// printing why it could not.
func (a *app) catalogFor(name string, args []string) (*triage.Catalog, int, bool) {
	fs := a.flags(name, "[--catalog ARCHIVO]")
	file := fs.String("catalog", "", "catálogo YAML (predeterminado: el integrado en caud; use el mismo que el servidor)")
	if _, code, ok := a.parse(fs, args, 0, true); !ok {
		return nil, code, false
	}
	if *file == "" {
		return triage.DefaultCatalog(), 0, true
	}
	c, err := triage.LoadCatalogFile(*file)
	if err != nil {
		a.catalogError(err)
		return nil, exitErr, false
	}
	return c, 0, true
}

// cmdCatalogServices lists the SAI services: the ids reroute --service takes.
func (a *app) cmdCatalogServices(args []string) int {
	c, code, ok := a.catalogFor("catalog services", args)
	if !ok {
		return code
	}
	if a.json {
		b, _ := json.Marshal(c.Services())
		a.writeJSON(b)
		return exitOK
	}
	fmt.Fprintf(a.stdout, "%-28s %-14s %s\n", "SERVICIO", "GRUPO", "NOMBRE")
	for _, s := range c.Services() {
		fmt.Fprintf(a.stdout, "%-28s %-14s %s\n", s.ID, s.Group, s.Name)
	}
	return exitOK
}

// cmdCatalogTargets lists the orientation targets: the values reroute --target takes.
func (a *app) cmdCatalogTargets(args []string) int {
	c, code, ok := a.catalogFor("catalog targets", args)
	if !ok {
		return code
	}
	if a.json {
		b, _ := json.Marshal(c.Orientations())
		a.writeJSON(b)
		return exitOK
	}
	fmt.Fprintf(a.stdout, "%-16s %s\n", "DESTINO", "OFICINA")
	for _, o := range c.Orientations() {
		fmt.Fprintf(a.stdout, "%-16s %s\n", o.Target, o.Office)
	}
	return exitOK
}

// catalogError prints a catalog error one problem a line, without the Go sentinel prefix.
func (a *app) catalogError(err error) {
	var pe *fs.PathError
	switch {
	case errors.Is(err, fs.ErrNotExist) && errors.As(err, &pe):
		fmt.Fprintf(a.stderr, "error: no existe el archivo %s\n", pe.Path)
		return
	case !errors.Is(err, triage.ErrInvalidCatalog):
		fmt.Fprintf(a.stderr, "error: no se pudo leer el catálogo: %v\n", err)
		return
	}
	msg := strings.TrimPrefix(err.Error(), triage.ErrInvalidCatalog.Error()+": ")
	fmt.Fprintln(a.stderr, "catálogo inválido:")
	for _, l := range strings.Split(msg, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			fmt.Fprintf(a.stderr, "  %s\n", l)
		}
	}
}

// catalog loads --catalog, or the embedded default catalog when it is empty.
func (a *app) catalog(path string) (*triage.Catalog, bool) {
	if path == "" {
		return triage.DefaultCatalog(), true
	}
	c, err := triage.LoadCatalogFile(path)
	if err != nil {
		a.catalogError(err)
		return nil, false
	}
	return c, true
}

// cmdTriageExplain prints the engine's decision for a text, as an agent would see it in claim.
// TEXTO may be "-" to read the text from standard input.
func (a *app) cmdTriageExplain(args []string) int {
	fs := a.flags("triage explain", "[--catalog ARCHIVO] [--model MODELO] [--subject ASUNTO] TEXTO…")
	path := fs.String("catalog", "", "catálogo YAML (predeterminado: el incluido en cauctl)")
	modelPath := fs.String("model", "", "modelo aprendido de las correcciones (cauctl triage learn)")
	subject := fs.String("subject", "", "asunto de la solicitud")
	channel := fs.String("channel", "", "canal (email, phone, …), sólo como pista")
	pos, code, ok := a.parse(fs, args, 1, false)
	if !ok {
		return code
	}
	text := strings.Join(pos, " ")
	if text == "-" {
		b, err := io.ReadAll(a.stdin)
		if err != nil {
			fmt.Fprintf(a.stderr, "error: leer el texto de la entrada estándar: %v\n", err)
			return exitErr
		}
		text = string(b)
	}
	if strings.TrimSpace(text) == "" && strings.TrimSpace(*subject) == "" {
		return a.usageErr("triage explain: el texto está vacío")
	}
	e, ok := a.engine(*path, *modelPath)
	if !ok {
		return exitErr
	}
	t := e.Decide(triage.Input{Subject: *subject, Text: text, Channel: *channel})
	raw, err := json.Marshal(t)
	if err != nil {
		fmt.Fprintf(a.stderr, "error: %v\n", err)
		return exitErr
	}
	if a.json {
		a.writeJSON(raw)
		return exitOK
	}
	// Through the wire shape, so explain shows exactly what an agent sees when claiming.
	var view Triage
	if err := json.Unmarshal(raw, &view); err != nil {
		fmt.Fprintf(a.stderr, "error: %v\n", err)
		return exitErr
	}
	a.printTriage(a.stdout, &view)
	return exitOK
}

// cmdTriageEval runs the engine over labelled examples (JSON Lines) and prints the report.
func (a *app) cmdTriageEval(args []string) int {
	fl := a.flags("triage eval", "ARCHIVO.jsonl [--catalog ARCHIVO] [--model MODELO]")
	path := fl.String("catalog", "", "catálogo YAML (predeterminado: el incluido en cauctl)")
	modelPath := fl.String("model", "", "modelo aprendido de las correcciones (cauctl triage learn)")
	pos, code, ok := a.parse(fl, args, 1, true)
	if !ok {
		return code
	}
	ex, ok := a.examples(pos[0])
	if !ok {
		return exitErr
	}
	e, ok := a.engine(*path, *modelPath)
	if !ok {
		return exitErr
	}
	rep := triage.Evaluate(e, ex)
	if a.json {
		raw, err := json.Marshal(rep)
		if err != nil {
			fmt.Fprintf(a.stderr, "error: %v\n", err)
			return exitErr
		}
		a.writeJSON(raw)
		return exitOK
	}
	rep.Format(a.stdout)
	return exitOK
}

// examples reads a labelled JSON Lines file, reporting errors in Spanish.
func (a *app) examples(path string) ([]triage.Example, bool) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintf(a.stderr, "error: no existe el archivo %s\n", path)
		} else {
			fmt.Fprintf(a.stderr, "error: %v\n", err)
		}
		return nil, false
	}
	defer f.Close()
	ex, err := triage.ReadExamples(f)
	if err != nil {
		fmt.Fprintf(a.stderr, "error: leer los ejemplos de %s: %v\n", path, err)
		return nil, false
	}
	return ex, true
}

// model loads --model; an empty path means none.
func (a *app) model(path string) (*triage.Model, bool) {
	if path == "" {
		return nil, true
	}
	m, err := triage.LoadModelFile(path)
	if err != nil {
		fmt.Fprintf(a.stderr, "error: modelo %s: %v\n", path, err)
		return nil, false
	}
	return m, true
}

// engine builds the engine of --catalog and --model.
func (a *app) engine(catalogPath, modelPath string) (*triage.Engine, bool) {
	c, ok := a.catalog(catalogPath)
	if !ok {
		return nil, false
	}
	m, ok := a.model(modelPath)
	if !ok {
		return nil, false
	}
	return triage.NewEngineWithModel(c, m), true
}

// cmdTriageLearn learns from the agents' corrections (exported with `cauctl triage corrections`),
// compares the new model with the current one on a held-out part of the corrections and on the
// catalog's own examples (and --guard), and writes it to --out only if it is better. Exit 1 when the
// set is refused (contradictory) or the model is not promoted; the report says why.
func (a *app) cmdTriageLearn(args []string) int {
	fl := a.flags("triage learn", "CORRECCIONES.jsonl [--catalog ARCHIVO] [--model ACTUAL] [--guard EJEMPLOS.jsonl] --out MODELO")
	path := fl.String("catalog", "", "catálogo YAML (predeterminado: el incluido en cauctl)")
	current := fl.String("model", "", "modelo vigente, del que parte el nuevo")
	guardPath := fl.String("guard", "", "ejemplos etiquetados que el nuevo modelo no debe empeorar")
	out := fl.String("out", "", "archivo donde escribir el modelo promovido")
	pos, code, ok := a.parse(fl, args, 1, true)
	if !ok {
		return code
	}
	if *out == "" {
		return a.usageErr("triage learn: falta --out MODELO")
	}
	corr, ok := a.examples(pos[0])
	if !ok {
		return exitErr
	}
	var guard []triage.Example
	if *guardPath != "" {
		if guard, ok = a.examples(*guardPath); !ok {
			return exitErr
		}
	}
	c, ok := a.catalog(*path)
	if !ok {
		return exitErr
	}
	cur, ok := a.model(*current)
	if !ok {
		return exitErr
	}
	m, rep, err := triage.Learn(c, cur, corr, guard)
	if a.json {
		raw, _ := json.Marshal(rep)
		a.writeJSON(raw)
	} else {
		a.printLearnReport(rep)
	}
	if err != nil {
		if !a.json {
			fmt.Fprintf(a.stderr, "modelo no promovido: %s\n", rep.Reason)
		}
		return exitErr
	}
	f, err := os.Create(*out)
	if err == nil {
		err = triage.WriteModel(f, m)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		fmt.Fprintf(a.stderr, "error: escribir el modelo en %s: %v\n", *out, err)
		return exitErr
	}
	if !a.json {
		fmt.Fprintf(a.stdout, "Modelo %s escrito en %s. Para usarlo: triage.model: %s (o CAU_TRIAGE_MODEL)\n", m.Version, *out, *out)
	}
	return exitOK
}

func (a *app) printLearnReport(r triage.LearnReport) {
	pct := func(s triage.LearnScore) string {
		if s.Total == 0 {
			return "—"
		}
		return fmt.Sprintf("%.1f %% (%d/%d)", 100*s.Rate, s.Correct, s.Total)
	}
	fmt.Fprintf(a.stdout, "Correcciones leídas:      %d (utilizables %d, ignoradas %d, contradictorias %d)\n", r.Corrections, r.Used, r.Ignored, r.Contradictory)
	for _, c := range r.Conflicts {
		fmt.Fprintf(a.stdout, "  contradicción: %s\n", c)
	}
	fmt.Fprintf(a.stdout, "Entrenamiento / reserva:  %d / %d\n", r.Train, r.HeldOut)
	fmt.Fprintf(a.stdout, "Reserva, antes → después: %s → %s\n", pct(r.Before), pct(r.After))
	fmt.Fprintf(a.stdout, "Ejemplos del catálogo:    %s → %s\n", pct(r.GuardBefore), pct(r.GuardAfter))
	verdict := "no promovido"
	if r.Promoted {
		verdict = "promovido (versión " + r.Version + ")"
	}
	fmt.Fprintf(a.stdout, "Resultado:                %s: %s\n", verdict, r.Reason)
}
