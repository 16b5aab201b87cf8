package main

import (
	"encoding/json"
	"fmt"
	"runtime"
	"time"

	"github.com/ipn-cgsi/caud/triage"
)

// cmdTriageBench measures the engine offline: the time to build it from the catalog (training its
// learned model), the heap it keeps, and Decide's latency per request (p50, p90, p99) over the
// requests of labelled sets.
func (a *app) cmdTriageBench(args []string) int {
	fl := a.flags("triage bench", "ARCHIVO.jsonl… [--catalog ARCHIVO] [--model MODELO] [--rounds N]")
	path := fl.String("catalog", "", "catálogo YAML (predeterminado: el incluido en cauctl)")
	modelPath := fl.String("model", "", "modelo aprendido de las correcciones (cauctl triage learn)")
	rounds := fl.Int("rounds", 20, "veces que se decide cada solicitud")
	pos, code, ok := a.parse(fl, args, 1, false)
	if !ok {
		return code
	}
	var in []triage.Input
	for _, p := range pos {
		ex, ok := a.examples(p)
		if !ok {
			return exitErr
		}
		for _, x := range ex {
			in = append(in, triage.Input{Subject: x.Subject, Text: x.Body, Channel: x.Channel})
		}
	}
	c, ok := a.catalog(*path)
	if !ok {
		return exitErr
	}
	m, ok := a.model(*modelPath)
	if !ok {
		return exitErr
	}
	e, r := triage.Bench(c, m, in, *rounds)
	if a.json {
		raw, _ := json.Marshal(r)
		a.writeJSON(raw)
		return exitOK
	}
	w := a.stdout
	fmt.Fprintf(w, "catálogo              %s (%d servicios)\n", e.Version(), len(c.Services()))
	fmt.Fprintf(w, "máquina               %d CPU, GOMAXPROCS %d, %s/%s\n", runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(w, "entrenamiento         %s (%d textos; %d rasgos aprendidos, %d de ellos n-gramas)\n", r.Train.Round(time.Millisecond), r.Trained, r.Features, r.Grams)
	fmt.Fprintf(w, "memoria del motor     %.1f MiB\n", r.HeapMiB)
	fmt.Fprintf(w, "Decide por solicitud  p50 %s, p90 %s, p99 %s, máx. %s, media %s (%d decisiones)\n",
		us(r.P50), us(r.P90), us(r.P99), us(r.Max), us(r.Mean), r.Requests)
	return exitOK
}

func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond)) }
