package triage

import (
	"errors"
	"strings"
	"testing"
)

const smallCatalog = `version: "t1"
kind:
  falla: [no funciona]
  servicio: [solicito]
questions:
  generic: ["¿Qué necesita?"]
services:
  - id: correo
    name: Correo electrónico institucional
    area: CORREO
    group: Mesa de Correo
    keywords: [correo: 3, buzón]
    tests: ["Probar en el navegador"]
informativo:
  keywords: [folio]
out_of_scope:
  - target: BECAS
    office: Becas
    message: Disculpe, vaya a Becas.
    keywords: [beca: 4]
`

func TestParseCatalogSmall(t *testing.T) {
	c, err := ParseCatalog([]byte(smallCatalog), "small.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// Keyword weights 3, 1, 1, 4: mean 2.25, so score defaults scale by 2.25/2.33.
	scale := 2.25 / referenceTermWeight
	if th := c.Thresholds(); th.MinScore != defaultMinScore*scale || th.NoCompetenteScore != defaultNoCompetenteScore*scale || th.MinWords != defaultMinWords {
		t.Errorf("defaults not applied: %+v", th)
	}
	e := NewEngine(c)
	got := e.Decide(Input{Text: "el correo no funciona desde ayer, buzón"})
	if got.Outcome != OutcomeSAI || got.Kind != KindFalla || got.Service.ID != "correo" {
		t.Errorf("%+v", got)
	}
}

func TestParseCatalogErrors(t *testing.T) {
	cases := []struct {
		name, yaml string
		want       []string // substrings, each with file and line
	}{
		{"syntax", "version: \"1\"\nkind:\n  falla: [a]\n\tservicio: [b]\n", []string{"bad.yaml:4: found character that cannot start any token"}},
		{"unclosed", "version: \"1\"\nservices:\n  - id: a\n    name: [unclosed\n", []string{"bad.yaml:3: did not find expected"}},
		{"not a mapping", "- a\n- b\n", []string{"bad.yaml:1: the catalog must be a mapping"}},
		{"empty group", strings.Replace(smallCatalog, "group: Mesa de Correo", "group: \"\"", 1),
			[]string{"bad.yaml:11: services[0].group: is empty"}},
		{"unknown key", strings.Replace(smallCatalog, "    tests:", "    grupo: x\n    tests:", 1),
			[]string{"bad.yaml:13: services[0].grupo: unknown key"}},
		{"undeclared area and bad weight", strings.Replace(strings.Replace(smallCatalog, "area: CORREO", "area: MAIL", 1),
			"buzón]", "buzón: 50]", 1) + "areas: [CORREO, RED]\n",
			[]string{"bad.yaml:10: services[0].area: unknown area \"MAIL\" (want one of CORREO RED)", "bad.yaml:12: services[0].keywords[1]: weight 50"}},
		{"area with spaces", strings.Replace(smallCatalog, "area: CORREO", "area: mi correo", 1),
			[]string{"bad.yaml:10: services[0].area: \"mi correo\" is not a name"}},
		{"area that is also a target", strings.Replace(smallCatalog, "area: CORREO", "area: BECAS", 1),
			[]string{"bad.yaml:10: services[0].area: \"BECAS\" is also an orientation target"}},
		{"questions for an unknown area", strings.Replace(smallCatalog, "  generic: [\"¿Qué necesita?\"]", "  generic: [\"¿Qué necesita?\"]\n  areas:\n    RED: [\"¿Qué nodo?\"]", 1),
			[]string{"bad.yaml:8: questions.areas.RED: unknown area (want one of BECAS CORREO)"}},
		{"duplicate id", strings.Replace(smallCatalog, "informativo:", `  - id: correo
    name: Otro
    area: RED
    group: G
    keywords: [red]
informativo:`, 1), []string{"bad.yaml:14: services[1].id: duplicate id \"correo\""}},
		{"target without message", strings.Replace(smallCatalog, "    message: Disculpe, vaya a Becas.\n", "", 1),
			[]string{"bad.yaml:17: out_of_scope[0].message: is empty"}},
		{"threshold out of range", strings.Replace(smallCatalog, "kind:", "thresholds:\n  min_margin: 3\nkind:", 1),
			[]string{"bad.yaml:3: thresholds.min_margin: 3 is out of range"}},
		{"wrong type", strings.Replace(smallCatalog, "  generic: [\"¿Qué necesita?\"]", "  generic: 7", 1),
			[]string{"bad.yaml:6: questions.generic: must be a list"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseCatalog([]byte(c.yaml), "bad.yaml")
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrInvalidCatalog) {
				t.Errorf("error does not wrap ErrInvalidCatalog: %v", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// The catalog owns its vocabulary: another institution's areas, targets and concept load, and the
// catalog reports them in its own order.
func TestCatalogOwnsItsVocabulary(t *testing.T) {
	y := strings.NewReplacer("area: CORREO", "area: CUENTAS", "target: BECAS", "target: BIBLIOTECA",
		"  keywords: [folio]", "  concept: DTI_CONSULTA\n  keywords: [folio: 3]").Replace(smallCatalog)
	c, err := ParseCatalog([]byte(y), "uni.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if a := c.Areas(); len(a) != 1 || a[0] != "CUENTAS" {
		t.Errorf("areas %v", a)
	}
	if tg := c.Targets(); len(tg) != 1 || tg[0] != "BIBLIOTECA" {
		t.Errorf("targets %v", tg)
	}
	if c.Concept() != "DTI_CONSULTA" {
		t.Errorf("concept %q", c.Concept())
	}
	d := NewEngine(c).Decide(Input{Text: "¿en qué va mi folio 3345?"})
	if d.Outcome != OutcomeInformativo || d.Concept != "DTI_CONSULTA" {
		t.Errorf("%+v", d)
	}
	declared, err := ParseCatalog([]byte(y+"areas: [CUENTAS, AULA_VIRTUAL]\n"), "uni.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if a := declared.Areas(); len(a) != 2 || a[1] != "AULA_VIRTUAL" {
		t.Errorf("declared areas %v", a)
	}
	if d := DefaultCatalog(); d.Concept() != ConceptInformativo || len(d.Areas()) != 12 || len(d.Targets()) != 5 {
		t.Errorf("default catalog: %s %v %v", d.Concept(), d.Areas(), d.Targets())
	}
}

func TestLoadCatalogFileNamesFile(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/catalog.yaml"
	writeFile(t, path, strings.Replace(smallCatalog, "group: Mesa de Correo", "group: \"\"", 1))
	_, err := LoadCatalogFile(path)
	if !errors.Is(err, ErrInvalidCatalog) || !strings.Contains(err.Error(), "catalog.yaml:11: services[0].group: is empty") {
		t.Fatalf("got %v", err)
	}
	if _, err := LoadCatalogFile(dir + "/missing.yaml"); err == nil || errors.Is(err, ErrInvalidCatalog) {
		t.Fatalf("missing file: %v", err)
	}
}

// An operator who quotes `term: weight` inside a flow list ("impresora: 4") means the weight: the
// quoted spelling reads like the mapping, so the keyword matches the word alone.
func TestQuotedWeightIsAWeight(t *testing.T) {
	y := strings.NewReplacer("[correo: 3, buzón]", `["correo: 3", "buzón", "bandeja de entrada : 2,5"]`,
		"[beca: 4]", `["beca: 4"]`).Replace(smallCatalog)
	c, err := ParseCatalog([]byte(y), "quoted.yaml")
	if err != nil {
		t.Fatal(err)
	}
	kw := c.f.Services[0].Keywords
	want := []Term{{Text: "correo", Weight: 3}, {Text: "buzón", Weight: 1}, {Text: "bandeja de entrada", Weight: 2.5}}
	for i, w := range want {
		if i >= len(kw) || kw[i].Text != w.Text || kw[i].Weight != w.Weight {
			t.Fatalf("keywords %+v, want %+v", kw, want)
		}
	}
	if o := c.f.OutOfScope[0].Keywords; len(o) != 1 || o[0].Text != "beca" || o[0].Weight != 4 {
		t.Errorf("target keywords %+v", o)
	}
	got := NewEngine(c).Decide(Input{Text: "no me llega nada al correo desde ayer"})
	if got.Outcome != OutcomeSAI || got.Service == nil || got.Service.ID != "correo" {
		t.Errorf("a request naming the quoted keyword: %+v", got)
	}
	if _, err := ParseCatalog([]byte(strings.Replace(smallCatalog, "[beca: 4]", `["beca: 40"]`, 1)), "heavy.yaml"); err == nil {
		t.Error("a quoted weight out of range was accepted")
	}
}
