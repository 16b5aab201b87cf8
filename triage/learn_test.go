package triage

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// zeltia is a system the default catalog has never heard of; agents keep re-routing its reports
// to SISTEMAS.
var zeltiaTexts = []string{
	"la plataforma Zeltia no abre desde la mañana",
	"Zeltia me marca error al timbrar",
	"no puedo timbrar en Zeltia",
	"el timbrado de Zeltia se queda cargando",
	"Zeltia no me deja entrar con mi usuario",
	"en Zeltia sale pantalla en blanco al timbrar la constancia",
	"ya no carga Zeltia en ninguna computadora de la oficina",
	"Zeltia rechaza el timbrado de los recibos",
	"el módulo de timbrado de Zeltia está caído",
	"no entra Zeltia, dice sesión inválida",
	"Zeltia truena al generar el timbrado",
	"otra vez Zeltia sin servicio para timbrar",
	"Zeltia tarda horas en timbrar",
	"no se puede timbrar nada en Zeltia hoy",
	"Zeltia se cierra solo cuando intento timbrar",
}

func corrections(texts []string, outcome, tipo, area string) []Example {
	var out []Example
	for i, t := range texts {
		out = append(out, Example{ID: fmt.Sprintf("c%d", i), Channel: "phone", Body: t, Outcome: outcome, Tipo: tipo, Area: area})
	}
	return out
}

func TestLearnTeachesANewPhrasing(t *testing.T) {
	c := DefaultCatalog()
	probe := "oigan, ¿por qué no puedo timbrar en Zeltia?"
	before := NewEngine(c).Decide(Input{Text: probe})
	if before.Outcome == OutcomeSAI && before.Area == "SISTEMAS" {
		t.Fatalf("the default engine already knows Zeltia: %+v", before)
	}
	m, rep, err := Learn(c, nil, corrections(zeltiaTexts, OutcomeSAI, KindFalla, "SISTEMAS"), nil)
	if err != nil {
		t.Fatalf("%v (%+v)", err, rep)
	}
	if !rep.Promoted || rep.After.Rate <= rep.Before.Rate || rep.HeldOut == 0 || rep.Train == 0 {
		t.Errorf("report %+v", rep)
	}
	e := NewEngineWithModel(c, m)
	after := e.Decide(Input{Text: probe})
	if after.Outcome != OutcomeSAI || after.Area != "SISTEMAS" || after.Kind != KindFalla {
		t.Fatalf("after learning: %+v", after)
	}
	if !strings.HasSuffix(after.CatalogVersion, "+m."+m.Version) || !strings.HasPrefix(after.CatalogVersion, c.Version()) {
		t.Errorf("catalog_version %q does not name model %s", after.CatalogVersion, m.Version)
	}
	// What the engine knew stays: the public fixtures are still decided as before.
	r := Evaluate(e, readExamplesFile(t, "testdata/requests.jsonl"))
	if r.OutcomeAccuracy < 1 || r.AreaAccuracy < 1 || r.KindAccuracy < 1 {
		t.Errorf("fixtures after learning: outcome %.3f area %.3f kind %.3f", r.OutcomeAccuracy, r.AreaAccuracy, r.KindAccuracy)
	}

	// The model survives a round trip through its file, and a tampered file is refused.
	var b bytes.Buffer
	if err := WriteModel(&b, m); err != nil {
		t.Fatal(err)
	}
	m2, err := ReadModel(bytes.NewReader(b.Bytes()))
	if err != nil || m2.Version != m.Version || len(m2.Examples) != len(m.Examples) {
		t.Fatalf("round trip: %v %+v", err, m2)
	}
	bad := strings.Replace(b.String(), "Zeltia", "Zelta", 1)
	if _, err := ReadModel(strings.NewReader(bad)); !errors.Is(err, ErrInvalidModel) {
		t.Errorf("tampered model: %v", err)
	}
}

func TestLearnRefusesContradictoryCorrections(t *testing.T) {
	c := DefaultCatalog()
	set := corrections(zeltiaTexts, OutcomeSAI, KindFalla, "SISTEMAS")
	// The same texts, re-routed by another agent to a different area.
	set = append(set, corrections(zeltiaTexts[:8], OutcomeSAI, KindFalla, "EQUIPO")...)
	m, rep, err := Learn(c, nil, set, nil)
	if !errors.Is(err, ErrContradictory) || m != nil || rep.Promoted {
		t.Fatalf("err %v model %v report %+v", err, m, rep)
	}
	if rep.Contradictory != 8 || len(rep.Conflicts) == 0 || !strings.Contains(rep.Conflicts[0], "SISTEMAS") {
		t.Errorf("report %+v", rep)
	}
}

// A consistent but wrong set (mail problems re-routed to scholarships) must not degrade the engine.
func TestLearnDoesNotPromoteAPoisonedSet(t *testing.T) {
	c := DefaultCatalog()
	var texts []string
	for _, s := range []string{"no puedo entrar a mi correo institucional", "mi buzón de correo está lleno",
		"no me llegan los correos", "olvidé la contraseña de mi correo", "el correo me rebota los mensajes",
		"outlook no sincroniza mi correo", "no puedo enviar correos", "mi cuenta de correo está bloqueada"} {
		texts = append(texts, s, s+" desde ayer", "buenas, "+s, s+", ¿qué hago?", "hola, "+s+" desde el lunes",
			"oigan, "+s, s+" otra vez", "buen día: "+s+", ¿me ayudan?")
	}
	m, rep, err := Learn(c, nil, corrections(texts, OutcomeNoCompetente, "-", "BECAS"), nil)
	if !errors.Is(err, ErrNotPromoted) || m != nil || rep.Promoted {
		t.Fatalf("err %v model %v report %+v", err, m, rep)
	}
	// Refused either because the candidate still does not learn the wrong label on the held-out
	// corrections (the catalog's evidence outweighs them) or because it would lose on the
	// catalog's own examples.
	if rep.After.Rate > rep.Before.Rate && rep.GuardAfter.Rate >= rep.GuardBefore.Rate-guardTolerance {
		t.Errorf("refused for no stated reason: held out %+v → %+v, guard %+v → %+v", rep.Before, rep.After, rep.GuardBefore, rep.GuardAfter)
	}
	if !strings.Contains(rep.Reason, "no mejora") && !strings.Contains(rep.Reason, "empeora") {
		t.Errorf("reason %q", rep.Reason)
	}
}

func TestLearnIgnoresUnknownLabels(t *testing.T) {
	set := append(corrections(zeltiaTexts, OutcomeSAI, KindFalla, "SISTEMAS"),
		Example{Body: "hola", Outcome: OutcomeAclaracion}, Example{Body: "x y z", Outcome: OutcomeSAI, Area: "NOEXISTE"})
	_, rep, err := Learn(DefaultCatalog(), nil, set, nil)
	if err != nil || rep.Ignored != 2 || rep.Used != len(zeltiaTexts) {
		t.Fatalf("%v %+v", err, rep)
	}
}
