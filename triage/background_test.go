package triage

import (
	"strings"
	"testing"
)

// A terse catalog written by another institution knows "impresora" and "tóner" but not the other
// words people use about printers; the engine's background knowledge of help-desk Spanish relates
// them, so the request still reaches the printing service. The default catalog, which knows those
// words itself, gets no background evidence.
func TestBackgroundRelatesWordsATerseCatalogLacks(t *testing.T) {
	a := backgroundAssociations()
	related := func(u, v string) bool {
		for _, nb := range a[stem(u)] {
			if nb.stem == stem(v) {
				return true
			}
		}
		return false
	}
	if !related("impresora", "atasca") && !related("impresora", "hojas") && !related("impresora", "escanea") {
		t.Fatalf("no background association of impresora: %v", a[stem("impresora")])
	}
	if len(a[stem("horas")]) > 0 || len(a[stem("mañana")]) > 0 {
		t.Errorf("words of every request are associated: horas %v, mañana %v", a[stem("horas")], a[stem("mañana")])
	}

	y := strings.NewReplacer("id: correo", "id: impresion", "name: Correo electrónico institucional", "name: Impresoras",
		"area: CORREO", "area: IMPRESION", "[correo: 3, buzón]", "[impresora: 3, toner]").Replace(smallCatalog)
	c, err := ParseCatalog([]byte(y), "terse.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(c)
	if len(e.bg) == 0 {
		t.Fatal("no background evidence for a terse catalog")
	}
	var reached bool
	for _, w := range []string{"atasca", "hojas", "escanea", "multifuncional", "cartucho"} {
		if ps := e.bg[stem(w)]; len(ps) > 0 && e.docs[ps[0].doc].area == "IMPRESION" {
			reached = true
		}
	}
	if !reached {
		t.Error("no printer word reaches the printing service through the background")
	}
	if d := NewEngine(DefaultCatalog()); len(d.bg) > len(e.bg) {
		t.Errorf("the default catalog gets more background (%d stems) than a terse one (%d)", len(d.bg), len(e.bg))
	}
}
