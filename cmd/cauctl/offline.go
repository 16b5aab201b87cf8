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
		{"triage explain", "[--catalog ARCHIVO] [--subject ASUNTO] TEXTO…", "explicar la decisión de triaje para un texto (sin servidor)", (*app).cmdTriageExplain},
		{"mail check", "DIR [--expect manifest.jsonl] [--misses]", "leer una carpeta de correos .eml como lo haría el buzón e informar (sin servidor)", (*app).cmdMailCheck},
		{"triage eval", "ARCHIVO.jsonl [--catalog ARCHIVO]", "medir el triaje contra ejemplos etiquetados (sin servidor)", (*app).cmdTriageEval},
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
	fs := a.flags("triage explain", "[--catalog ARCHIVO] [--subject ASUNTO] TEXTO…")
	path := fs.String("catalog", "", "catálogo YAML (predeterminado: el incluido en cauctl)")
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
	c, ok := a.catalog(*path)
	if !ok {
		return exitErr
	}
	t := triage.NewEngine(c).Decide(triage.Input{Subject: *subject, Text: text, Channel: *channel})
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
	fl := a.flags("triage eval", "ARCHIVO.jsonl [--catalog ARCHIVO]")
	path := fl.String("catalog", "", "catálogo YAML (predeterminado: el incluido en cauctl)")
	pos, code, ok := a.parse(fl, args, 1, true)
	if !ok {
		return code
	}
	f, err := os.Open(pos[0])
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintf(a.stderr, "error: no existe el archivo %s\n", pos[0])
		} else {
			fmt.Fprintf(a.stderr, "error: %v\n", err)
		}
		return exitErr
	}
	defer f.Close()
	ex, err := triage.ReadExamples(f)
	if err != nil {
		fmt.Fprintf(a.stderr, "error: leer los ejemplos de %s: %v\n", pos[0], err)
		return exitErr
	}
	c, ok := a.catalog(*path)
	if !ok {
		return exitErr
	}
	rep := triage.Evaluate(triage.NewEngine(c), ex)
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
