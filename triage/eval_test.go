package triage

import (
	"os"
	"strings"
	"testing"
)

func readExamplesFile(t testing.TB, path string) []Example {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ex, err := ReadExamples(f)
	if err != nil {
		t.Fatal(err)
	}
	return ex
}

// Floors sit slightly below what the catalogs achieve, so a regression fails the build.
// requests.jsonl holds the 72 public fixtures (100 %); holdout*.jsonl and tuning/ were used while
// tuning; untuned/ were written before tuning and are never looked at case by case: for them the
// test logs only the aggregate figures (see untuned/README.md for which of them later became tuned).
func TestEvaluate(t *testing.T) {
	campus, err := LoadCatalogFile("testdata/campus_catalog.yaml")
	if err != nil {
		t.Fatal(err)
	}
	sse, err := LoadCatalogFile("testdata/outside/sse_catalog.yaml")
	if err != nil {
		t.Fatal(err)
	}
	town, err := LoadCatalogFile("testdata/outside/municipio_catalog.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		file                     string
		catalog                  *Catalog
		outcome, area, kind, fnc float64
	}{
		{"testdata/requests.jsonl", nil, 1, 1, 1, 0},
		{"testdata/holdout.jsonl", nil, 0.95, 0.95, 0.95, 0},
		{"testdata/holdout2.jsonl", nil, 0.90, 0.90, 0.90, 0},
		{"testdata/holdout3.jsonl", nil, 0.95, 0.95, 0.95, 0},
		{"testdata/tuning/short_chat.jsonl", nil, 0.95, 0.95, 0.95, 0},
		{"testdata/tuning/ipn_areas.jsonl", nil, 0.97, 0.97, 0.90, 0},
		{"testdata/tuning/ipn_kind.jsonl", nil, 0.93, 0.90, 0.90, 0},
		{"testdata/tuning/other_country_chat.jsonl", nil, 0.90, 0.95, 0.95, 0},
		{"testdata/tuning/campus.jsonl", campus, 0.88, 0.93, 0.93, 0.02},
		{"testdata/tuning/place_mentions.jsonl", nil, 0.90, 0.88, 0.95, 0},
		{"testdata/tuning/campus_place_mentions.jsonl", campus, 1, 1, 1, 0},
		{"testdata/untuned/ipn_mixed.jsonl", nil, 0.95, 0.90, 0.93, 0.02},
		{"testdata/untuned/ipn_mixed2.jsonl", nil, 0.92, 0.90, 0.93, 0.02},
		{"testdata/untuned/ipn_mixed3.jsonl", nil, 0.92, 0.86, 0.93, 0.02},
		{"testdata/untuned/ipn_mixed4.jsonl", nil, 0.95, 0.93, 0.92, 0.02},
		{"testdata/untuned/short_chat.jsonl", nil, 0.95, 0.90, 0.93, 0.02},
		{"testdata/untuned/other_country_chat.jsonl", nil, 0.93, 0.93, 0.93, 0.02},
		{"testdata/untuned/campus.jsonl", campus, 0.95, 0.95, 0.90, 0.02},
		{"testdata/untuned/place_mentions.jsonl", nil, 0.80, 0.75, 0.85, 0.15},
		{"testdata/untuned/h10d_own.jsonl", nil, 0.95, 0.93, 0.92, 0.02},
		{"testdata/untuned/h10d_own2.jsonl", nil, 0.95, 0.95, 0.93, 0.02},
		// The tuned halves of the outsiders' sets (outside/README.md).
		{"testdata/outside/ipn_mixed.jsonl", nil, 0.92, 0.92, 0.86, 0.02},
		{"testdata/outside/ipn_short.jsonl", nil, 0.95, 0.95, 0.88, 0.02},
		{"testdata/outside/sse.jsonl", sse, 0.75, 0.75, 0.65, 0.04},
		// Their never-tuned halves, scored once with the final engine of the session that
		// received them (untuned/README.md); the floors sit a little under those figures.
		{"testdata/untuned/outside_ipn_mixed.jsonl", nil, 0.92, 0.90, 0.92, 0.02},
		{"testdata/untuned/outside_ipn_short.jsonl", nil, 0.95, 0.95, 0.93, 0.02},
		{"testdata/untuned/outside_sse.jsonl", sse, 0.80, 0.72, 0.78, 0.04},
		{"testdata/untuned/outside_municipio.jsonl", town, 0.82, 0.78, 0.83, 0.05},
	}
	engines := map[*Catalog]*Engine{nil: NewEngine(DefaultCatalog()), campus: NewEngine(campus), sse: NewEngine(sse), town: NewEngine(town)}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			r := Evaluate(engines[c.catalog], readExamplesFile(t, c.file))
			if strings.Contains(c.file, "/untuned/") {
				r.Misses = nil // aggregate figures only: these sets must stay unseen
			}
			var b strings.Builder
			r.Format(&b)
			t.Log("\n" + b.String())
			if r.OutcomeAccuracy < c.outcome {
				t.Errorf("outcome accuracy %.3f < %.2f", r.OutcomeAccuracy, c.outcome)
			}
			if r.AreaAccuracy < c.area {
				t.Errorf("area accuracy %.3f < %.2f", r.AreaAccuracy, c.area)
			}
			if r.KindAccuracy < c.kind {
				t.Errorf("falla/servicio accuracy %.3f < %.2f", r.KindAccuracy, c.kind)
			}
			if r.FalseNoCompetenteRate > c.fnc {
				t.Errorf("false no_competente rate %.3f > %.2f", r.FalseNoCompetenteRate, c.fnc)
			}
		})
	}
}

func TestReadExamplesError(t *testing.T) {
	_, err := ReadExamples(strings.NewReader("{\"id\":\"a\",\"outcome\":\"sai\"}\n\n{bad\n"))
	if err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Fatalf("want an error naming line 3, got %v", err)
	}
}

func TestEvaluateCounts(t *testing.T) {
	ex := []Example{
		{ID: "1", Body: "¿Cuándo depositan la beca de manutención? No me ha llegado el depósito de la beca.", Outcome: OutcomeSAI, Tipo: KindServicio, Area: "CORREO"},
		{ID: "2", Body: "ayuda por favor", Outcome: OutcomeAclaracion, Tipo: "-", Area: "-"},
	}
	r := Evaluate(NewEngine(DefaultCatalog()), ex)
	if r.Total != 2 || r.OutcomeCorrect != 1 || r.FalseNoCompetente != 1 || r.FalseNoCompetenteBase != 2 {
		t.Fatalf("unexpected counts: %+v", r)
	}
	if r.Confusion[OutcomeSAI][OutcomeNoCompetente] != 1 || len(r.Misses) != 1 || r.Misses[0].ID != "1" {
		t.Fatalf("unexpected confusion or misses: %+v", r)
	}
	if p := r.PerOutcome[OutcomeAclaracion]; p.Precision != 1 || p.Recall != 1 {
		t.Fatalf("aclaracion precision/recall: %+v", p)
	}
}
