package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestHistorySearchAndOriginalsThroughTheAPI: a phone request's life through the real caud (intake,
// triage, queues), then its history, a search that finds it by folio and by name, and the originals
// endpoint, all over HTTP.
func TestHistorySearchAndOriginalsThroughTheAPI(t *testing.T) {
	_, base := startApp(t)
	code, id := submit(t, base, `{"channel":"phone","unit":"ESCOM","role":"docente","name":"Ana Núñez","email":"anunez@ipn.mx","description":"No puedo entrar a mi correo institucional desde ayer"}`)
	if code != 201 {
		t.Fatalf("submit: %d", code)
	}
	v := waitQueued(t, base, id)
	var claim struct{ Lease string }
	deadline := time.Now().Add(15 * time.Second)
	for claim.Lease == "" {
		code, b := call(t, "POST", base+"/api/v1/queues/"+v.Queue+"/claim", `{"agent":"ana.agente"}`)
		if code == 200 {
			_ = json.Unmarshal(b, &claim)
		} else if time.Now().After(deadline) {
			t.Fatalf("claim: %d %s", code, b)
		}
	}
	if code, b := call(t, "POST", base+"/api/v1/leases/"+claim.Lease+"/done", `{"folio":"SAI-2025-7","agent":"Beto Supervisor"}`); code != 200 {
		t.Fatalf("done: %d %s", code, b)
	}
	var h struct {
		History []struct{ Type, Agent, Folio, Channel, Queue string }
	}
	for deadline := time.Now().Add(15 * time.Second); len(h.History) < 4; {
		code, b := call(t, "GET", base+"/api/v1/requests/"+id+"/history", "")
		if code != 200 || json.Unmarshal(b, &h) != nil {
			t.Fatalf("history: %d %s", code, b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("history incomplete: %s", b)
		}
	}
	var types []string
	for _, e := range h.History {
		types = append(types, e.Type)
	}
	if strings.Join(types, ",") != "received,triaged,claimed,done" || h.History[0].Channel != "phone" ||
		h.History[2].Agent != "ana.agente" || h.History[3].Agent != "Beto Supervisor" || h.History[3].Folio != "SAI-2025-7" {
		t.Fatalf("history %+v", h.History)
	}
	code, b := call(t, "GET", base+"/api/v1/requests/"+id, "")
	if code != 200 || !strings.Contains(string(b), `"history":[`) {
		t.Fatalf("request view without history: %d %s", code, b)
	}
	for _, q := range []string{"folio=sai-2025-7", "name=ana+nun", "email=ANUNEZ%40ipn.mx&state=done", "q=escom+correo"} {
		var r struct {
			Requests []struct{ ID, State, Folio string }
		}
		for deadline := time.Now().Add(15 * time.Second); ; {
			code, b := call(t, "GET", base+"/api/v1/requests?"+q, "")
			if code == 200 && json.Unmarshal(b, &r) == nil && len(r.Requests) == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("search %s: %d %s", q, code, b)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if r.Requests[0].ID != id {
			t.Errorf("search %s found %+v", q, r.Requests)
		}
	}
	if code, b := call(t, "GET", base+"/api/v1/requests?state=perdida", ""); code != 400 || !strings.Contains(string(b), `"state"`) {
		t.Errorf("bad search: %d %s", code, b)
	}
	// A phone request has no original to download.
	if code, b := call(t, "GET", base+"/api/v1/requests/"+id+"/original", ""); code != 404 || !strings.Contains(string(b), "no tiene ese archivo") {
		t.Errorf("original of a phone request: %d %s", code, b)
	}
}
