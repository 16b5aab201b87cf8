package triage

import "testing"

// The engine's quality must come from the engine and the catalog, not from the default catalog's
// particulars: a terse catalog written by someone else still gives sensible decisions.
func TestSecondCatalogInTheSameSchema(t *testing.T) {
	c, err := LoadCatalogFile("testdata/alt_catalog.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(c)
	cases := []struct {
		text, outcome, kind, service, target string
	}{
		{"No puedo entrar a mi correo, dice que la contraseña del correo es incorrecta", OutcomeSAI, KindFalla, "MAIL-01", ""},
		{"Solicito un nodo de red nuevo para la oficina de la dirección", OutcomeSAI, KindServicio, "NET-01", ""},
		{"La extensión 52034 no tiene tono desde ayer, no funciona", OutcomeSAI, KindFalla, "PHONE-01", ""},
		{"La impresora del laboratorio no enciende", OutcomeSAI, KindFalla, "PC-01", ""},
		{"¿Qué cursos de capacitación hay este semestre y en qué horario?", OutcomeInformativo, KindServicio, "", ""},
		{"¿Cuándo depositan la beca de manutención?", OutcomeNoCompetente, "", "", "BECAS"},
		{"El aire acondicionado del auditorio gotea y hay una fuga de agua", OutcomeNoCompetente, "", "", "MANTENIMIENTO"},
		{"ayuda por favor", OutcomeAclaracion, "", "", ""},
	}
	for _, c := range cases {
		d := e.Decide(Input{Text: c.text})
		if d.Outcome != c.outcome || d.Kind != c.kind {
			t.Errorf("%q: %s/%s, want %s/%s (%s)", c.text, d.Outcome, d.Kind, c.outcome, c.kind, d.Explanation)
			continue
		}
		if c.service != "" && (d.Service == nil || d.Service.ID != c.service || len(d.Tests) == 0 && c.kind == KindFalla) {
			t.Errorf("%q: service %+v tests %v, want %s", c.text, d.Service, d.Tests, c.service)
		}
		if c.target != "" && (d.Orientation == nil || d.Orientation.Target != c.target || d.Orientation.Message == "") {
			t.Errorf("%q: orientation %+v, want %s", c.text, d.Orientation, c.target)
		}
		if c.outcome == OutcomeAclaracion && len(d.Questions) == 0 {
			t.Errorf("%q: no questions", c.text)
		}
		if c.outcome == OutcomeInformativo && d.Concept != ConceptInformativo {
			t.Errorf("%q: concept %q", c.text, d.Concept)
		}
	}
}
