package triage

import (
	"math"
	"strings"
	"testing"
)

// TestPlaceMentionWeighsLittle: an orientation target's office named only as the place where
// something fails does not take the request; asked about for itself, it still does.
func TestPlaceMentionWeighsLittle(t *testing.T) {
	campus, err := LoadCatalogFile("testdata/campus_catalog.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		cat           *Catalog
		text          string
		outcome, area string
	}{
		{campus, "la fotocopiadora de la biblioteca no saca copias", OutcomeSAI, "IMPRESION"},
		{campus, "¿Cuántos libros me prestan en la biblioteca?", OutcomeNoCompetente, "BIBLIOTECA"},
		{DefaultCatalog(), "el correo de la dirección de capital humano no recibe mensajes", OutcomeSAI, "CORREO"},
		{DefaultCatalog(), "la página de servicio social marca error", OutcomeSAI, "HOSTING"},
		{DefaultCatalog(), "no me llegó el recibo de sueldo de este mes", OutcomeNoCompetente, "CAPITAL_HUMANO"},
	} {
		d := NewEngine(c.cat).Decide(Input{Text: c.text})
		if d.Outcome != c.outcome || d.Area != c.area {
			t.Errorf("%q: %s/%s, want %s/%s (%s)", c.text, d.Outcome, d.Area, c.outcome, c.area, d.Explanation)
		}
	}
}

func TestPlaceMask(t *testing.T) {
	for _, c := range []struct {
		text  string
		fault bool
		want  string // the words marked, space-separated
	}{
		{"la fotocopiadora de la biblioteca no saca copias", true, "biblioteca"},
		{"la cuenta de correo de la biblioteca", false, ""},
		{"en la biblioteca la red esta lenta", true, "biblioteca"},
		{"en la sala de lectura de la biblioteca central no hay wifi", true, "sala lectura biblioteca"},
		{"necesito el recibo de nomina", false, ""},
	} {
		ws := words(c.text)
		mask := placeMask(ws, c.fault, stopwords)
		got := ""
		for i, m := range mask {
			if m {
				if got != "" {
					got += " "
				}
				got += ws[i]
			}
		}
		if got != c.want {
			t.Errorf("%q: marked %q, want %q", c.text, got, c.want)
		}
	}
}

// TestExplanationNamesTheDecidingClause: with context around it, the explanation an agent reads
// quotes the clause that decided, for a service and for an orientation target alike.
func TestExplanationNamesTheDecidingClause(t *testing.T) {
	e := NewEngine(DefaultCatalog())
	for _, c := range []struct{ text, clause string }{
		{"Buenas tardes. Soy de la biblioteca. Desde ayer la red inalámbrica no funciona en la sala de lectura.", "Desde ayer la red inalámbrica no funciona"},
		{"Buenas tardes, soy alumna de ESCOM. Quisiera saber cuándo depositan la beca de manutención de este mes.", "Quisiera saber cuándo depositan la beca"},
		{"Hola. Trabajo en la dirección desde hace años. No me llega ningún correo a mi cuenta institucional desde el lunes.", "No me llega ningún correo"},
	} {
		d := e.Decide(Input{Text: c.text})
		if !strings.Contains(d.Explanation, "decide la frase «"+c.clause) {
			t.Errorf("%q: the explanation does not name the deciding clause %q: %s", c.text, c.clause, d.Explanation)
		}
	}
}

// TestEvidenceScale: a terse catalog's thresholds are lowered, never below minScale; a catalog
// with many examples per candidate keeps them as written.
func TestEvidenceScale(t *testing.T) {
	if s := NewEngine(DefaultCatalog()).scale; s != 1 {
		t.Errorf("default catalog: scale %.2f, want 1", s)
	}
	for _, c := range []struct {
		texts, docs int
		want        float64
	}{{3000, 18, 1}, {15 * 30, 30, math.Sqrt(0.5)}, {1, 20, minScale}, {0, 0, 1}} {
		if got := evidenceScale(c.texts, c.docs); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("evidenceScale(%d, %d) = %.3f, want %.3f", c.texts, c.docs, got, c.want)
		}
	}
}
