package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/config"
)

// startApp runs a whole caud in-process: embedded JetStream under t.TempDir(), HTTP on a free port.
func startApp(t testing.TB, extra ...string) (*App, string) {
	t.Helper()
	t.Setenv("CAU_NATS_EMBEDDED_LISTEN", "none")
	t.Setenv("CAU_QUEUES_LEASE", "1m")
	args := append([]string{"--data-dir", t.TempDir(), "--http-listen", "127.0.0.1:0"}, extra...)
	cfg, err := config.Load(args)
	if err != nil {
		t.Fatal(err)
	}
	app := NewApp(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := app.Start(ctx); err != nil {
		_ = app.Stop(ctx)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := app.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return app, "http://" + app.Addr()
}

func call(t testing.TB, method, url, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

type view struct {
	State   string
	Queue   string
	Folio   string
	Request struct {
		ID        string
		Requester struct{ Unit, Role, Extension string }
	}
	Triage *struct {
		Outcome     string
		Kind        string
		Service     *struct{ ID, Name, Group, Area string }
		Concept     string
		Orientation *struct{ Target, Office, Message string }
		Tests       []string
		Questions   []string
		Confidence  float64
		Explanation string
	}
}

func waitQueued(t *testing.T, base, id string) view {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, b := call(t, "GET", base+"/api/v1/requests/"+id, "")
		var v view
		if code == 200 {
			if err := json.Unmarshal(b, &v); err != nil {
				t.Fatal(err)
			}
			if v.State == "queued" {
				return v
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("request %s not queued: %d %s", id, code, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func submit(t *testing.T, base, body string) (int, string) {
	t.Helper()
	code, b := call(t, "POST", base+"/api/v1/requests", body)
	var out struct{ ID string }
	_ = json.Unmarshal(b, &out)
	return code, out.ID
}

// The path a phone request takes, through the real HTTP API, JetStream, the triage worker with the
// default catalog, and the agents' queues.
func TestPhoneRequestsLandInTheirQueues(t *testing.T) {
	_, base := startApp(t)
	code, id := submit(t, base, `{"channel":"phone","unit":"ESCOM","role":"docente","extension":"52034","description":"Docente de ESCOM, ext. 52034: no puedo entrar a mi correo institucional"}`)
	if code != 201 {
		t.Fatalf("submit: %d", code)
	}
	v := waitQueued(t, base, id)
	tr := v.Triage
	if v.Queue != "sai" || tr == nil || tr.Outcome != "sai" || tr.Kind != "falla" || tr.Service == nil || tr.Service.Area != "CORREO" || tr.Service.Group == "" || len(tr.Tests) == 0 || tr.Explanation == "" {
		t.Fatalf("e-mail falla: %+v %+v", v, tr)
	}
	if v.Request.ID != id || v.Request.Requester.Unit != "ESCOM" || v.Request.Requester.Extension != "52034" {
		t.Fatalf("request %+v", v.Request)
	}

	_, id = submit(t, base, `{"channel":"phone","role":"alumno","description":"¿Cuándo sale la convocatoria de becas institucionales? No me han depositado mi beca de este mes."}`)
	v = waitQueued(t, base, id)
	if v.Queue != "no_competente" || v.Triage.Orientation == nil || v.Triage.Orientation.Office == "" || !strings.Contains(strings.ToLower(v.Triage.Orientation.Message), "disculp") {
		t.Fatalf("beca: %+v %+v", v, v.Triage)
	}

	_, id = submit(t, base, `{"channel":"in_person","description":"¿Qué cursos de capacitación en informática ofrece la CGSI este semestre y cuál es el horario?"}`)
	v = waitQueued(t, base, id)
	if v.Queue != "informativo" || v.Triage.Concept != "CAU_INFORMATIVO_04A" {
		t.Fatalf("informativo: %+v %+v", v, v.Triage)
	}

	_, id = submit(t, base, `{"channel":"phone","description":"ayuda por favor"}`)
	v = waitQueued(t, base, id)
	if v.Queue != "aclaracion" || len(v.Triage.Questions) == 0 {
		t.Fatalf("aclaracion: %+v %+v", v, v.Triage)
	}

	// An agent claims the e-mail falla, registers it in the SAI and finishes it.
	code, b := call(t, "POST", base+"/api/v1/queues/sai/claim", `{"agent":"ana"}`)
	if code != 200 {
		t.Fatalf("claim: %d %s", code, b)
	}
	var claim struct {
		Lease string
		Item  struct{ Request struct{ ID string } }
	}
	_ = json.Unmarshal(b, &claim)
	code, b = call(t, "POST", base+"/api/v1/leases/"+claim.Lease+"/done", `{"folio":"SAI-2025-000042"}`)
	if code != 200 {
		t.Fatalf("done: %d %s", code, b)
	}
	code, b = call(t, "GET", base+"/api/v1/requests/"+claim.Item.Request.ID, "")
	var done view
	_ = json.Unmarshal(b, &done)
	if code != 200 || done.State != "done" || done.Folio != "SAI-2025-000042" {
		t.Fatalf("after done: %d %s", code, b)
	}
	if code, _ := call(t, "POST", base+"/api/v1/queues/sai/claim", ""); code != 204 {
		t.Fatalf("empty queue claim: %d", code)
	}
	if code, b := call(t, "POST", base+"/api/v1/leases/"+claim.Lease+"/done", `{"folio":"SAI-2025-000042"}`); code != 409 || !bytes.Contains(b, []byte("ya se terminó")) {
		t.Fatalf("finished lease: %d %s", code, b)
	}
}

func TestIdempotencyKeyGivesOneQueuedItem(t *testing.T) {
	app, base := startApp(t)
	body := `{"channel":"phone","description":"No hay internet en el laboratorio 3 desde ayer","idempotency_key":"llamada-2025-10-14-0007"}`
	code1, id1 := submit(t, base, body)
	code2, id2 := submit(t, base, body)
	if code1 != 201 || code2 != 200 || id1 != id2 {
		t.Fatalf("%d %s, %d %s", code1, id1, code2, id2)
	}
	// Both answers come after JetStream acknowledged whatever was published, so the inbound
	// stream already holds every request the two submissions made: exactly one.
	info, err := app.h.JS.Stream(context.Background(), natsjs.StreamInbound)
	if err != nil {
		t.Fatal(err)
	}
	if n := info.CachedInfo().State.Msgs; n != 1 {
		t.Fatalf("CAU_INBOUND holds %d requests, want 1", n)
	}
	waitQueued(t, base, id1)
	code, b := call(t, "GET", base+"/api/v1/queues", "")
	var q struct {
		Queues []struct {
			Name       string
			Pending    int
			InProgress int `json:"in_progress"`
		}
	}
	if err := json.Unmarshal(b, &q); code != 200 || err != nil {
		t.Fatal(code, err)
	}
	total := 0
	for _, x := range q.Queues {
		total += x.Pending + x.InProgress
	}
	if total != 1 {
		t.Fatalf("%d queued items, want 1: %s", total, b)
	}
}

func TestHTTPSurfaceErrors(t *testing.T) {
	_, base := startApp(t)
	cases := []struct {
		method, path, body string
		code               int
		contains           string
	}{
		{"POST", "/api/v1/requests", `{"channel":"phone"`, 400, "JSON mal formado"},
		{"POST", "/api/v1/requests", `{"channel":"phone","description":"x","foo":1}`, 400, "campo desconocido"},
		{"POST", "/api/v1/requests", `{"channel":"phone"}`, 400, "description"},
		{"POST", "/api/v1/requests", `{"channel":"phone","description":"` + strings.Repeat("x", 2<<20) + `"}`, 413, "excede"},
		{"POST", "/api/v1/requests", `{"channel":"phone","unit":"ESCON","description":"x"}`, 400, "ESCOM"},
		{"POST", "/api/v1/queues/otra/claim", ``, 404, "cola desconocida"},
		{"POST", "/api/v1/leases/nope/done", ``, 400, "no es un identificador de asignación"},
		{"POST", "/api/v1/leases/nope/reroute", `{"outcome":"sai"}`, 400, "no es un identificador de asignación"},
		{"POST", "/api/v1/leases/01JD0000000000000000000000/release", ``, 404, "No existe una asignación"},
		{"GET", "/api/v1/requests/01JD0000000000000000000000", ``, 404, "no existe"},
		{"GET", "/api/v1/requests/../../etc", ``, 404, ""},
		{"GET", "/healthz", ``, 200, "ok"},
	}
	for _, c := range cases {
		code, b := call(t, c.method, base+c.path, c.body)
		if code != c.code || !bytes.Contains(b, []byte(c.contains)) {
			t.Errorf("%s %s: %d %.200s, want %d containing %q", c.method, c.path, code, b, c.code, c.contains)
		}
	}
	code, b := call(t, "GET", base+"/readyz", "")
	if code != 200 || !bytes.Contains(b, []byte(`"ready":true`)) {
		t.Fatalf("readyz %d %s", code, b)
	}
}

func TestTokenProtectsAPI(t *testing.T) {
	t.Setenv("CAU_HTTP_TOKEN", "s3cret")
	_, base := startApp(t)
	if code, _ := call(t, "GET", base+"/api/v1/queues", ""); code != 401 {
		t.Fatalf("no token: %d", code)
	}
	req, _ := http.NewRequest("GET", base+"/api/v1/queues", nil)
	req.Header.Set("Authorization", "Bearer s3cret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("with token: %d", resp.StatusCode)
	}
	if code, _ := call(t, "GET", base+"/metrics", ""); code != 200 {
		t.Fatalf("metrics need no token: %d", code)
	}
}

func TestNonLoopbackWithoutTokenRefusesToStart(t *testing.T) {
	t.Setenv("CAU_NATS_EMBEDDED_LISTEN", "none")
	cfg, err := config.Load([]string{"--data-dir", t.TempDir(), "--http-listen", "0.0.0.0:0"})
	if err != nil {
		t.Fatal(err)
	}
	app := NewApp(cfg, slog.New(slog.DiscardHandler))
	err = app.Start(context.Background())
	_ = app.Stop(context.Background())
	if err == nil || !strings.Contains(err.Error(), "token") {
		t.Fatalf("err = %v", err)
	}
}

func TestMetricsAndQueuesAgreeUnderTraffic(t *testing.T) {
	_, base := startApp(t)
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			desc := []string{"no funciona el wifi en la biblioteca", "ayuda", "¿dónde consulto mi kardex?", "solicito información de los cursos de la CGSI"}[i%4]
			if code, _ := submit(t, base, `{"channel":"phone","description":"`+desc+`"}`); code != 201 {
				t.Errorf("submit %d", code)
			}
		})
	}
	wg.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, b := call(t, "GET", base+"/api/v1/queues", "")
		var q struct {
			Queues []struct {
				Name    string
				Pending int
			}
		}
		_ = json.Unmarshal(b, &q)
		sum := 0
		for _, x := range q.Queues {
			sum += x.Pending
		}
		if sum == 40 {
			_, m := call(t, "GET", base+"/metrics", "")
			for _, x := range q.Queues {
				line := []byte("caud_queue_pending{queue=\"" + x.Name + "\"} " + itoa(x.Pending) + "\n")
				if !bytes.Contains(m, line) {
					t.Fatalf("metrics lack %q", line)
				}
			}
			if !bytes.Contains(m, []byte(`caud_channel_published_total{channel="desk"} 40`)) {
				t.Fatal("published counter disagrees")
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("queues never reached 40: %s", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// The embedded server's client port wants the token caud keeps, private, in the data dir.
func TestEmbeddedNATSRequiresTheToken(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("CAU_NATS_EMBEDDED_LISTEN", "127.0.0.1:0")
	cfg, err := config.Load([]string{"--data-dir", dir, "--http-listen", "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	app := NewApp(cfg, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	defer func() { _ = app.Stop(ctx) }()
	if err := app.Start(ctx); err != nil {
		t.Fatal(err)
	}
	url := app.ns.ClientURL()
	if _, err := nats.Connect(url); !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("connect without a token: %v, want an authorization violation", err)
	}
	if _, err := nats.Connect(url, nats.Token("guess")); !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("connect with a wrong token: %v, want an authorization violation", err)
	}
	path := filepath.Join(dir, "nats.token")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %s, want 0600", fi.Mode().Perm())
	}
	token, _ := os.ReadFile(path)
	nc, err := nats.Connect(url, nats.Token(strings.TrimSpace(string(token))))
	if err != nil {
		t.Fatalf("connect with the token: %v", err)
	}
	nc.Close()
}
