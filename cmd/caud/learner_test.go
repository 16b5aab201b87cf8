package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/triage"
)

// nubarraReports are reports about the Wi-Fi network as the institute's staff call it, by its
// name, which the default catalog has never heard of.
func nubarraReports() []string {
	var out []string
	for _, where := range []string{"en el salón 3", "en la dirección", "en el laboratorio"} {
		for _, f := range []string{"Nubarra no jala %s", "se cae Nubarra a cada rato %s", "Nubarra no aparece %s",
			"Nubarra está bien lenta %s", "no me deja entrar a Nubarra %s"} {
			out = append(out, fmt.Sprintf(f, where))
		}
	}
	return out
}

const nubarraProbe = "buenas, Nubarra no jala otra vez"

type modelStatus struct {
	Engine  string
	Current *struct {
		Version     string
		Corrections int
	}
	Last *struct {
		Result, Reason, Candidate string
		Report                    triage.LearnReport
	} `json:"last_attempt"`
}

// claimThe claims the next item of queue as agent ana; it must be request id. It returns the lease.
func claimThe(t *testing.T, base, queue, id string) string {
	t.Helper()
	code, b := call(t, "POST", base+"/api/v1/queues/"+queue+"/claim", `{"agent":"ana"}`)
	var claim struct {
		Lease string
		Item  struct{ Request struct{ ID string } }
	}
	if err := json.Unmarshal(b, &claim); code != 200 || err != nil || claim.Item.Request.ID != id {
		t.Fatalf("claim %s from %s: %d %s", id, queue, code, b)
	}
	return claim.Lease
}

func getModel(t *testing.T, base string) modelStatus {
	t.Helper()
	code, b := call(t, "GET", base+"/api/v1/triage/model", "")
	if code != 200 {
		t.Fatalf("GET /api/v1/triage/model: %d %s", code, b)
	}
	var st modelStatus
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// The closed loop through the daemon: requests about an unknown system are triaged wrong, agents
// re-route them to WIFI through the queue API (recorded on CAU_CORRECTIONS), caud retrains by
// itself, compares and promotes, and the next such request is triaged right, naming the model.
func TestAgentsCorrectionsTeachTheDaemon(t *testing.T) {
	t.Setenv("CAU_TRIAGE_LEARN_INTERVAL", "1s")
	t.Setenv("CAU_TRIAGE_LEARN_MIN_NEW", "10")
	app, base := startApp(t)
	if d := app.catalog.Engine().Decide(triage.Input{Text: nubarraProbe}); d.Area == "WIFI" {
		t.Fatalf("the default engine already knows Nubarra: %+v", d)
	}
	for i, text := range nubarraReports() {
		code, id := submit(t, base, fmt.Sprintf(`{"channel":"phone","description":%q}`, text))
		if code != 201 {
			t.Fatalf("submit %d: %d", i, code)
		}
		v := waitQueued(t, base, id)
		lease := claimThe(t, base, v.Queue, id)
		code, b := call(t, "POST", base+"/api/v1/leases/"+lease+"/reroute",
			`{"outcome":"sai","service":"red-inalambrica","kind":"falla","agent":"ana","note":"Nubarra es la red Wi-Fi"}`)
		if code != 200 {
			t.Fatalf("reroute: %d %s", code, b)
		}
		// The agent registers the corrected request in the SAI, emptying the queue for the next.
		lease = claimThe(t, base, "sai", id)
		if code, b = call(t, "POST", base+"/api/v1/leases/"+lease+"/done", fmt.Sprintf(`{"folio":"SAI-2026-%06d"}`, i)); code != 200 {
			t.Fatalf("done: %d %s", code, b)
		}
	}
	deadline := time.Now().Add(90 * time.Second)
	var st modelStatus
	for st = getModel(t, base); st.Current == nil || !strings.HasSuffix(st.Engine, "+m."+st.Current.Version); st = getModel(t, base) {
		if time.Now().After(deadline) {
			t.Fatalf("no model promoted: %+v", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st.Last == nil || st.Last.Result != "promoted" || st.Last.Report.HeldOut == 0 || st.Last.Report.After.Rate <= st.Last.Report.Before.Rate {
		t.Errorf("last attempt %+v", st.Last)
	}
	_, id := submit(t, base, fmt.Sprintf(`{"channel":"phone","description":%q}`, nubarraProbe))
	v := waitQueued(t, base, id)
	if v.Queue != "sai" || v.Triage.Service == nil || v.Triage.Service.Area != "WIFI" {
		t.Fatalf("after learning: %+v %+v", v, v.Triage)
	}
	_, b := call(t, "GET", base+"/api/v1/requests/"+id, "")
	var raw struct {
		Triage struct {
			CatalogVersion string `json:"catalog_version"`
		}
	}
	_ = json.Unmarshal(b, &raw)
	if !strings.HasSuffix(raw.Triage.CatalogVersion, "+m."+st.Current.Version) {
		t.Errorf("catalog_version %q does not name model %s", raw.Triage.CatalogVersion, st.Current.Version)
	}
	_, b = call(t, "GET", base+"/readyz", "")
	if !strings.Contains(string(b), "triage model") || !strings.Contains(string(b), st.Current.Version) {
		t.Errorf("/readyz does not show the model in force: %s", b)
	}
}

// A contradictory correction set is refused: the engine keeps its model, and the refusal with its
// reason is what the model endpoint and /readyz show.
func TestDaemonRefusesContradictoryCorrections(t *testing.T) {
	app, base := startApp(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	put := func(texts []string, area string) {
		for i, s := range texts {
			b, _ := json.Marshal(map[string]any{"id": fmt.Sprintf("%s-%d", area, i), "channel": "phone", "body": s,
				"outcome": "sai", "tipo": "falla", "area": area, "agent": "ana", "at": time.Now()})
			if _, err := app.h.JS.Publish(ctx, natsjs.SubjectCorrections, b); err != nil {
				t.Fatal(err)
			}
		}
	}
	put(nubarraReports(), "WIFI")
	put(nubarraReports()[:8], "EQUIPO")
	before := getModel(t, base).Engine
	code, b := call(t, "POST", base+"/api/v1/triage/model/retrain", "")
	if code != 200 || !strings.Contains(string(b), `"result":"refused_contradictory"`) || !strings.Contains(string(b), "contradictorias") {
		t.Fatalf("retrain: %d %s", code, b)
	}
	st := getModel(t, base)
	if st.Current != nil || st.Engine != before || st.Last == nil || st.Last.Result != "refused_contradictory" {
		t.Errorf("status after a refused set: %+v", st)
	}
	_, b = call(t, "GET", base+"/readyz", "")
	if !strings.Contains(string(b), "rechazado") {
		t.Errorf("/readyz does not report the refusal: %s", b)
	}
}
