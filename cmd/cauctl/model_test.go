package main

import (
	"net/http"
	"strings"
	"testing"
)

func TestTriageModelShowsTheRefusal(t *testing.T) {
	status := `{"engine":"2026.11-1+abc","current":{"version":"b530d007","object":"model-b530d007.json","corrections":12,"promoted_at":"2026-12-01T10:00:00Z"},
		"last_attempt":{"at":"2026-12-01T11:00:00Z","seq":40,"result":"refused_contradictory","reason":"8 de 15 textos tienen etiquetas contradictorias",
		"report":{"corrections":23,"used":7,"ignored":0,"contradictory":8,"conflicts":["\"zeltia no abre\": sai/SISTEMAS / sai/EQUIPO"]}}}`
	f := newFake(t, map[string]http.HandlerFunc{
		"GET /api/v1/triage/model":          reply(200, status),
		"POST /api/v1/triage/model/retrain": reply(200, `{"result":"refused_contradictory"}`),
	})
	code, out, errOut := f.run("triage", "model", "--retrain")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"b530d007 (12 correcciones", "RECHAZADO (correcciones contradictorias)", "8 de 15 textos", "contradicción: \"zeltia no abre\""} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if n := len(f.calls); n != 2 || f.calls[0].Method != "POST" {
		t.Errorf("calls %+v", f.calls)
	}
}
