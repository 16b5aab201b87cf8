package triage

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
)

func TestDecideRequiredCases(t *testing.T) {
	e := NewEngine(DefaultCatalog())

	got := e.Decide(Input{Text: "Docente de ESCOM, ext. 52034: no puedo entrar a mi correo institucional", Channel: "phone"})
	if got.Outcome != OutcomeSAI || got.Kind != KindFalla || got.Area != "CORREO" ||
		got.Service == nil || got.Service.Area != "CORREO" || got.Service.Group == "" || len(got.Tests) == 0 {
		t.Errorf("mail falla: %+v", got)
	}

	got = e.Decide(Input{Text: "¿Cuándo sale la convocatoria de becas institucionales? No me han depositado mi beca", Channel: "facebook"})
	if got.Outcome != OutcomeNoCompetente || got.Kind != "" || got.Area != "BECAS" || got.Orientation == nil ||
		got.Orientation.Target != "BECAS" || got.Orientation.Office == "" || got.Orientation.Message == "" {
		t.Errorf("becas: %+v", got)
	}

	got = e.Decide(Input{Text: "¿Qué cursos de capacitación en informática ofrece la CGSI este semestre?", Channel: "email"})
	if got.Outcome != OutcomeInformativo || got.Concept != ConceptInformativo || got.Service != nil || got.Kind == "" {
		t.Errorf("informativo: %+v", got)
	}

	got = e.Decide(Input{Text: "ayuda por favor", Channel: "facebook"})
	if got.Outcome != OutcomeAclaracion || len(got.Questions) == 0 || got.Kind != "" {
		t.Errorf("aclaracion: %+v", got)
	}
}

func TestDecideFields(t *testing.T) {
	e := NewEngine(DefaultCatalog())
	for _, ex := range readExamplesFile(t, "testdata/requests.jsonl") {
		got := e.Decide(Input{Subject: ex.Subject, Text: ex.Body, Channel: ex.Channel})
		checkTriage(t, e, got)
		if t.Failed() {
			t.Fatalf("%s: %+v", ex.ID, got)
		}
	}
}

// checkTriage asserts the invariants every decision must satisfy.
func checkTriage(t testing.TB, e *Engine, got Triage) {
	t.Helper()
	if !slices.Contains(Outcomes, got.Outcome) {
		t.Errorf("unknown outcome %q", got.Outcome)
	}
	if got.By != "engine" || got.CatalogVersion != e.Catalog().Version() || got.Explanation == "" {
		t.Errorf("missing by/version/explanation: %+v", got)
	}
	if got.Confidence < 0 || got.Confidence > 1 {
		t.Errorf("confidence %v out of range", got.Confidence)
	}
	switch got.Outcome {
	case OutcomeSAI:
		if got.Service == nil || got.Area != got.Service.Area || (got.Kind != KindFalla && got.Kind != KindServicio) {
			t.Errorf("sai without service/area/kind: %+v", got)
		}
		if got.Kind == KindFalla && len(got.Tests) == 0 {
			t.Errorf("falla without tests: %+v", got)
		}
	case OutcomeInformativo:
		if got.Concept != ConceptInformativo || (got.Kind != KindFalla && got.Kind != KindServicio) {
			t.Errorf("informativo without concept/kind: %+v", got)
		}
	case OutcomeNoCompetente:
		if got.Orientation == nil || got.Area != got.Orientation.Target || got.Kind != "" {
			t.Errorf("no_competente without orientation: %+v", got)
		}
	case OutcomeAclaracion:
		if len(got.Questions) == 0 || got.Kind != "" {
			t.Errorf("aclaracion without questions: %+v", got)
		}
	}
}

func TestDecideExplanation(t *testing.T) {
	e := NewEngine(DefaultCatalog())
	got := e.Decide(Input{Subject: "Cuenta de correo", Text: "Solicito la creación de una cuenta de correo institucional para personal nuevo"})
	for _, want := range []string{"correo institucional", "→ CORREO", "\"solicito\"", "→ servicio"} {
		if !strings.Contains(got.Explanation, want) {
			t.Errorf("explanation %q lacks %q", got.Explanation, want)
		}
	}
}

func TestDecideNoCompetenteNeedsClearEvidence(t *testing.T) {
	e := NewEngine(DefaultCatalog())
	// IT vocabulary must keep a request inside CGSI even with words of other offices around.
	for _, text := range []string{
		"No puedo entrar al correo institucional para ver el aviso de la beca.",
		"La computadora del área de nómina no enciende desde ayer.",
		"El wifi de la biblioteca no funciona, no hay señal.",
	} {
		if got := e.Decide(Input{Text: text}); got.Outcome != OutcomeSAI {
			t.Errorf("%q: got %s (%s)", text, got.Outcome, got.Explanation)
		}
	}
}

func TestDecideTypoAndAccents(t *testing.T) {
	e := NewEngine(DefaultCatalog())
	got := e.Decide(Input{Text: "NO PUEDO ENTRAR A MI CORREO INSTITUCIONAL, LA CONTRASENA NO SIRVE"})
	if got.Area != "CORREO" {
		t.Errorf("upper case without accents: %+v", got)
	}
	got = e.Decide(Input{Text: "la impresroa de la oficina no imprime nada desde el lunes"})
	if got.Area != "EQUIPO" {
		t.Errorf("typo: %+v", got)
	}
}

func TestCleanBody(t *testing.T) {
	body := "La impresora no imprime.\n\nSaludos\nIng. Juan\nJefe de Becas y Nómina\n\n> El lunes escribió:\n> beca beca"
	if got := cleanBody(body); strings.Contains(got, "Nómina") || strings.Contains(got, "beca") || !strings.Contains(got, "impresora") {
		t.Errorf("cleanBody kept the signature or quote: %q", got)
	}
	body = "Hola\n\nel wifi no funciona\n\nLic. Ana Pérez\nDepartamento de Capital Humano\nExt. 5000"
	if got := cleanBody(body); strings.Contains(got, "Capital") {
		t.Errorf("cleanBody kept the signature block: %q", got)
	}
	memo := "INSTITUTO POLITÉCNICO NACIONAL\nDIRECCIÓN DE BECAS\n\nP R E S E N T E\n\nSolicito una extensión telefónica.\n\nA T E N T A M E N T E\nDIRECTORA"
	if got := cleanBody(memo); strings.Contains(got, "BECAS") || strings.Contains(got, "DIRECTORA") {
		t.Errorf("cleanBody kept the letterhead: %q", got)
	}
}

func TestDecideConcurrent(t *testing.T) {
	e := NewEngine(DefaultCatalog())
	ex := readExamplesFile(t, "testdata/requests.jsonl")
	want := make([]Triage, len(ex))
	for i, x := range ex {
		want[i] = e.Decide(Input{Subject: x.Subject, Text: x.Body})
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, x := range ex {
				got := e.Decide(Input{Subject: x.Subject, Text: x.Body})
				if got.Outcome != want[i].Outcome || got.Explanation != want[i].Explanation {
					t.Errorf("%s: concurrent decision differs", x.ID)
				}
			}
		}()
	}
	wg.Wait()
}

func TestDefaultCatalog(t *testing.T) {
	c, err := ParseCatalog(DefaultCatalogYAML(), "default_catalog.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^\S+\+[0-9a-f]{8}$`).MatchString(c.Version()) {
		t.Errorf("version %q", c.Version())
	}
	if first, second := DefaultCatalog(), DefaultCatalog(); first != second {
		t.Error("default catalog parsed more than once")
	}
	areas := map[string]bool{}
	for _, s := range c.Services() {
		areas[s.Area] = true
		if s2, ok := c.Service(s.ID); !ok || s2 != s {
			t.Errorf("Service(%q) = %+v, %v", s.ID, s2, ok)
		}
		if len(c.Tests(s.ID)) == 0 {
			t.Errorf("service %s has no tests", s.ID)
		}
	}
	for _, a := range c.Areas() {
		if !areas[a] {
			t.Errorf("no service for area %s", a)
		}
	}
	for _, tg := range c.Targets() {
		if o, ok := c.Orientation(tg); !ok || o.Office == "" || o.Message == "" {
			t.Errorf("orientation %s: %+v %v", tg, o, ok)
		}
	}
	if _, ok := c.Service("nope"); ok || c.Tests("nope") != nil {
		t.Error("unknown service found")
	}
}

func TestEmbeddedCatalogIsValid(t *testing.T) {
	// DefaultCatalog panics on a broken embedded file; this makes that a test failure instead.
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("embedded catalog: %v", r)
		}
	}()
	_ = DefaultCatalog()
}

func TestVersionChangesWithBytes(t *testing.T) {
	a, err := ParseCatalog(DefaultCatalogYAML(), "a.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b, err := ParseCatalog(append(DefaultCatalogYAML(), []byte("\n# edited\n")...), "b.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if a.Version() == b.Version() || !strings.HasPrefix(b.Version(), "2026.11-1+") {
		t.Errorf("versions %q and %q", a.Version(), b.Version())
	}
}

var (
	synthAreas   = []string{"A1", "A2", "A3", "A4", "A5", "A6", "A7"}
	synthTargets = []string{"T1", "T2", "T3"}
)

// syntheticCatalog builds a valid catalog with n services, for scaling benchmarks and tests.
func syntheticCatalog(n int) []byte {
	var b strings.Builder
	b.WriteString("version: synth\nkind:\n  falla: [no funciona, error]\n  servicio: [solicito]\nquestions:\n  generic: [\"¿Qué necesita?\"]\n")
	b.WriteString("services:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "  - id: s%d\n    name: Servicio %d\n    area: %s\n    group: Grupo %d\n", i, i, synthAreas[i%len(synthAreas)], i%17)
		fmt.Fprintf(&b, "    keywords: [palabra%d: 3, termino%d, \"frase compuesta %d\", correo: 0.5, red]\n", i, i, i)
		fmt.Fprintf(&b, "    phrases: [\"no funciona el servicio numero %d\"]\n    tests: [\"Reiniciar %d\"]\n", i, i)
	}
	b.WriteString("informativo:\n  keywords: [folio, capacitación]\nout_of_scope:\n")
	for _, tg := range synthTargets {
		fmt.Fprintf(&b, "  - target: %s\n    office: Oficina %s\n    message: Disculpe.\n    keywords: [tramite %s]\n", tg, tg, strings.ToLower(tg))
	}
	return []byte(b.String())
}

func TestSyntheticCatalog(t *testing.T) {
	c, err := ParseCatalog(syntheticCatalog(500), "synth.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(c)
	got := e.Decide(Input{Subject: "palabra321", Text: "no funciona el termino321 de la frase compuesta 321"})
	if got.Service == nil || got.Service.ID != "s321" || got.Kind != KindFalla {
		t.Fatalf("%+v", got)
	}
	checkTriage(t, e, got)
}
