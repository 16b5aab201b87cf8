package triage

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func benchDecide(b *testing.B, e *Engine, in []Input) {
	b.ReportAllocs()
	b.ResetTimer()
	lat := make([]time.Duration, 0, 1<<16)
	for i := 0; b.Loop(); i++ {
		t0 := time.Now()
		e.Decide(in[i%len(in)])
		if len(lat) < cap(lat) {
			lat = append(lat, time.Since(t0))
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	if n := len(lat); n > 0 {
		b.ReportMetric(float64(lat[n/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[n*99/100].Microseconds()), "p99-µs")
	}
}

func fixtureInputs(b *testing.B) []Input {
	var in []Input
	for _, f := range []string{"testdata/requests.jsonl", "testdata/untuned/ipn_mixed.jsonl", "testdata/untuned/short_chat.jsonl"} {
		for _, x := range readExamplesFile(b, f) {
			in = append(in, Input{Subject: x.Subject, Text: x.Body, Channel: x.Channel})
		}
	}
	return in
}

// BenchmarkDecide runs the default catalog, with its learned component, over the fixtures and
// the never-tuned sets (ns/op, p50 and p99 are per request).
func BenchmarkDecide(b *testing.B) {
	benchDecide(b, NewEngine(DefaultCatalog()), fixtureInputs(b))
}

// BenchmarkDecide500 uses a synthetic catalog of 500 services × 50 examples with the same inputs.
func BenchmarkDecide500(b *testing.B) {
	c, err := ParseCatalog(syntheticCatalogExamples(500, 50), "synth.yaml")
	if err != nil {
		b.Fatal(err)
	}
	in := fixtureInputs(b)
	for i := range in {
		in[i].Subject += " palabra42"
		in[i].Text += "\ntermino420 frase compuesta 7"
	}
	benchDecide(b, NewEngine(c), in)
}

// BenchmarkNewEngine is the cost of loading the default catalog: compiling the matcher and
// training the model on its examples. It also reports the heap the engine keeps.
func BenchmarkNewEngine(b *testing.B) {
	benchNewEngine(b, DefaultCatalog())
}

// BenchmarkNewEngine500x50 trains on a catalog of 500 services with 50 examples each.
func BenchmarkNewEngine500x50(b *testing.B) {
	c, err := ParseCatalog(syntheticCatalogExamples(500, 50), "synth.yaml")
	if err != nil {
		b.Fatal(err)
	}
	benchNewEngine(b, c)
}

func benchNewEngine(b *testing.B, c *Catalog) {
	for b.Loop() {
		NewEngine(c)
	}
	b.StopTimer()
	b.ReportMetric(engineHeapMiB(c), "MiB-engine")
}

// engineHeapMiB is the live heap that one engine for c keeps (after training garbage is collected).
func engineHeapMiB(c *Catalog) float64 {
	_, r := Bench(c, nil, nil, 0)
	return r.HeapMiB
}

// syntheticCatalogExamples is syntheticCatalog with n services of k examples each, written from a
// shared vocabulary so that the model has overlapping features to weigh.
func syntheticCatalogExamples(n, k int) []byte {
	var b strings.Builder
	b.Write(syntheticCatalog(0))
	base := b.String()
	i := strings.Index(base, "services:\n")
	b.Reset()
	b.WriteString(base[:i+len("services:\n")])
	verbs := []string{"no funciona", "marca error en", "solicito alta de", "necesito acceso a", "se cayó", "no abre", "configurar", "instalar"}
	for s := 0; s < n; s++ {
		fmt.Fprintf(&b, "  - id: s%d\n    name: Servicio %d\n    area: %s\n    group: Grupo %d\n", s, s, synthAreas[s%len(synthAreas)], s%17)
		fmt.Fprintf(&b, "    keywords: [palabra%d: 3, termino%d, \"frase compuesta %d\", correo: 0.5, red]\n", s, s, s)
		fmt.Fprintf(&b, "    tests: [\"Reiniciar %d\"]\n    examples:\n", s)
		for j := 0; j < k; j++ {
			fmt.Fprintf(&b, "      - \"el sistema%d %s el modulo%d del area %d, palabra%d y componente%d\"\n",
				s, verbs[j%len(verbs)], j%13, s%31, s, (s*7+j)%997)
		}
	}
	b.WriteString(base[strings.Index(base, "informativo:"):])
	return []byte(b.String())
}
