package triage

import (
	"strings"
	"testing"
)

// The learned reading tells a fault from a request where the catalog has no cue at all: a catalog
// whose cues the texts do not use still reads "se apaga sola a cada rato" as a fault and "todavía no tengo
// usuario, ¿cómo lo tramito?" as a request. The sentences are not in kind_examples.txt.
func TestLearnedKindReadsFaultsWithoutCues(t *testing.T) {
	// The catalog's only cues appear in none of the texts.
	y := strings.Replace(smallCatalog, "falla: [no funciona]\n  servicio: [solicito]", "falla: [chisporrotea]\n  servicio: [alta patrimonial]", 1)
	c, err := ParseCatalog([]byte(y), "nocues.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(c)
	cases := []struct{ text, kind string }{
		{"el correo institucional se cierra solo y me saca a cada rato, ya perdí dos borradores", KindFalla},
		{"desde el lunes el buzón del correo rechaza todo lo que me envían", KindFalla},
		{"todavía no tengo correo institucional, ¿cómo lo tramito?", KindServicio},
		{"quisiera saber si me pueden crear un buzón de correo para la jefatura", KindServicio},
	}
	for _, k := range cases {
		if strings.Contains(strings.ToLower(string(kindExamples)), strings.ToLower(k.text)) {
			t.Fatalf("%q is in the training corpus", k.text)
		}
		got := e.Decide(Input{Text: k.text})
		if got.Outcome != OutcomeSAI || got.Kind != k.kind {
			t.Errorf("%q: %s %s, want sai %s (%s)", k.text, got.Outcome, got.Kind, k.kind, got.Explanation)
		}
	}
}

func TestTrainKindReadsItsFormat(t *testing.T) {
	m := trainKind([]byte("# comment\n\nfalla\tse cae la red a cada rato\nfalla\tla red se cae\nservicio\tnecesito una red nueva\nservicio\tnecesito un nodo de red\nbasura sin tabulador\notro\tetiqueta desconocida\n"))
	if m.bias != 0 {
		t.Errorf("bias %v with two examples of each", m.bias)
	}
	if o := m.odds["u:"+stem("cae")]; o <= 0 {
		t.Errorf("'cae' should lean to falla: %v", o)
	}
	if o := m.odds["u:"+stem("necesito")]; o >= 0 {
		t.Errorf("'necesito' should lean to servicio: %v", o)
	}
	if _, ok := m.odds["u:"+stem("basura")]; ok {
		t.Error("a line without a label was learned")
	}
	if m := trainKind(nil); len(m.odds) != 0 {
		t.Errorf("an empty corpus learned %d features", len(m.odds))
	}
}

func FuzzTrainKind(f *testing.F) {
	f.Add([]byte("falla\tno jala\nservicio\tquiero una cuenta\n"))
	f.Add([]byte("#\n\t\n\tfalla\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m := trainKind(data)
		for _, text := range []string{"no jala", "", "¿?"} {
			if l, _ := m.score(text, nil); l != l {
				t.Fatalf("NaN score for %q", text)
			}
		}
	})
}
