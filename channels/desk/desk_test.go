package desk_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/desk"
	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/channels/natsjs/natstest"
)

// units is a two-unit directory: the desk's contract with the real IPN list is tested in cmd/caud.
type units struct{}

func (units) Canonical(s string) (string, bool) {
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "ESCOM":
		return "ESCOM", true
	case "CECYT 9", "CECYT9":
		return "CECyT 9", true
	}
	return "", false
}

func (units) Suggest(s string, _ int) []string {
	if strings.HasPrefix(strings.ToUpper(s), "ESC") {
		return []string{"ESCOM"}
	}
	return nil
}

func newEnvOnce(t testing.TB) *natstest.Env { return natstest.Start(t, natsjs.Topology{}) }

func newDesk(t testing.TB) (*desk.Desk, *natstest.Env) {
	t.Helper()
	env := natstest.Start(t, natsjs.Topology{})
	d, err := desk.New(desk.Options{Sink: natsjs.NewSink(env.Handles, natsjs.SinkOptions{}), Units: units{}, Idempotency: env.Requests, MaxBodyBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	return d, env
}

func post(t *testing.T, h http.Handler, body string) (int, map[string]any) {
	t.Helper()
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, httptest.NewRequest(http.MethodPost, "/api/v1/requests", strings.NewReader(body)))
	var out map[string]any
	if rr.Body.Len() > 0 {
		if err := json.Unmarshal(rr.Body.Bytes(), &out); err != nil {
			t.Fatalf("answer is not JSON: %q", rr.Body.String())
		}
	}
	return rr.Code, out
}

func inboundCount(t *testing.T, env *natstest.Env) uint64 {
	t.Helper()
	info, err := env.Inbound.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func TestDeskAcceptsScriptFieldsAndPublishes(t *testing.T) {
	d, env := newDesk(t)
	code, out := post(t, d, `{"channel":"phone","unit":"escom","role":"docente","extension":"ext. 52034","name":"Ana Ruiz","email":"aruiz@ipn.mx","phone":"55 5729 6000","description":"No puedo entrar a mi correo institucional"}`)
	if code != http.StatusCreated {
		t.Fatalf("code = %d, body %v", code, out)
	}
	id, _ := out["id"].(string)
	m, err := env.Inbound.GetMsg(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	var req channels.Request
	if err := json.Unmarshal(m.Data, &req); err != nil {
		t.Fatal(err)
	}
	if req.ID != id || m.Subject != "cau.inbound.desk" || req.Channel != "phone" {
		t.Fatalf("published %s %+v, answered id %s", m.Subject, req, id)
	}
	want := channels.Requester{Name: "Ana Ruiz", Email: "aruiz@ipn.mx", Phone: "55 5729 6000", Unit: "ESCOM", Role: "docente", Extension: "52034"}
	if req.Requester != want {
		t.Errorf("requester = %+v, want %+v", req.Requester, want)
	}
	if req.Text != "No puedo entrar a mi correo institucional" {
		t.Errorf("text %q", req.Text)
	}
}

func TestDeskFieldErrorsInSpanish(t *testing.T) {
	d, env := newDesk(t)
	cases := []struct {
		name, body string
		code       int
		field      string
		contains   string
	}{
		{"malformed", `{"channel":"phone",`, 400, "", "JSON mal formado"},
		{"unknown field", `{"channel":"phone","description":"x","color":"red"}`, 400, "", "campo desconocido"},
		{"missing description", `{"channel":"phone"}`, 400, "description", "obligatoria"},
		{"blank description", `{"channel":"phone","description":"   "}`, 400, "description", "obligatoria"},
		{"missing channel", `{"description":"x"}`, 400, "channel", "phone"},
		{"bad channel", `{"channel":"fax","description":"x"}`, 400, "channel", "fax"},
		{"bad role", `{"channel":"phone","role":"jefe","description":"x"}`, 400, "role", "docente"},
		{"bad extension", `{"channel":"phone","extension":"12","description":"x"}`, 400, "extension", "dígitos"},
		{"bad email", `{"channel":"phone","email":"ana@","description":"x"}`, 400, "email", "Correo"},
		{"unknown unit", `{"channel":"phone","unit":"ESCON","description":"x"}`, 400, "unit", "¿Quiso decir ESCOM?"},
		{"oversized", `{"channel":"phone","description":"` + strings.Repeat("a", 5000) + `"}`, 413, "", "excede"},
		{"empty body", ``, 400, "", "vacío"},
		{"array", `[1,2]`, 400, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out := post(t, d, c.body)
			if code != c.code {
				t.Fatalf("code = %d, want %d (%v)", code, c.code, out)
			}
			msg, _ := out["error"].(string)
			if c.field != "" {
				fields, _ := out["fields"].(map[string]any)
				msg, _ = fields[c.field].(string)
			}
			if msg == "" || !strings.Contains(msg, c.contains) {
				t.Fatalf("message %q does not contain %q (%v)", msg, c.contains, out)
			}
		})
	}
	if n := inboundCount(t, env); n != 0 {
		t.Fatalf("%d requests published from bad input", n)
	}
}

func TestDeskIdempotencyKeyGivesOneRequest(t *testing.T) {
	d, env := newDesk(t)
	body := `{"channel":"in_person","description":"Solicito alta de extensión telefónica","idempotency_key":"folio-papel-0001"}`
	code1, out1 := post(t, d, body)
	code2, out2 := post(t, d, body)
	if code1 != http.StatusCreated || code2 != http.StatusOK {
		t.Fatalf("codes %d, %d", code1, code2)
	}
	if out1["id"] != out2["id"] {
		t.Fatalf("ids differ: %v %v", out1["id"], out2["id"])
	}
	// Concurrent repeats too.
	var wg sync.WaitGroup
	ids := make(chan any, 8)
	for range 8 {
		wg.Go(func() {
			_, out := post(t, d, body)
			ids <- out["id"]
		})
	}
	wg.Wait()
	close(ids)
	for id := range ids {
		if id != out1["id"] {
			t.Fatalf("concurrent repeat got id %v, want %v", id, out1["id"])
		}
	}
	if n := inboundCount(t, env); n != 1 {
		t.Fatalf("stream holds %d requests, want 1", n)
	}
	// The same key with another description is refused, not silently merged.
	code, out := post(t, d, `{"channel":"in_person","description":"otra cosa","idempotency_key":"folio-papel-0001"}`)
	if code != http.StatusConflict {
		t.Fatalf("reused key: code %d %v", code, out)
	}
}

func TestDeskRepublishesWhenFirstAttemptStoppedBeforeAck(t *testing.T) {
	d, env := newDesk(t)
	// Simulate a crash between recording the key and the publish: the record exists, unpublished.
	sub := desk.Submission{Channel: "phone", Description: "Sin tono en la extensión", IdempotencyKey: "k-crash"}
	if fe := d.Validate(&sub); len(fe.Fields) > 0 {
		t.Fatal(fe.Fields)
	}
	crashed, err := desk.New(desk.Options{Sink: failingSink{}, Idempotency: env.Requests})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := crashed.Submit(context.Background(), sub); err == nil {
		t.Fatal("failing sink reported success")
	}
	if n := inboundCount(t, env); n != 0 {
		t.Fatalf("%d published", n)
	}
	b, _ := json.Marshal(sub)
	code, out := post(t, d, string(b))
	if code != http.StatusCreated && code != http.StatusOK {
		t.Fatalf("retry code %d %v", code, out)
	}
	if n := inboundCount(t, env); n != 1 {
		t.Fatalf("after retry stream holds %d, want 1", n)
	}
	m, _ := env.Inbound.GetMsg(context.Background(), 1)
	if !bytes.Contains(m.Data, []byte(out["id"].(string))) {
		t.Fatalf("published request is not the answered id %v", out["id"])
	}
}

type failingSink struct{}

func (failingSink) Publish(context.Context, channels.Submission) (channels.Receipt, error) {
	return channels.Receipt{}, channels.ErrNotReady
}

func (failingSink) Archive(context.Context, string, string, io.Reader) (*channels.Object, error) {
	return nil, channels.ErrNotReady
}

// While the idempotency bucket has no leader (its node was lost and nats-server elects another),
// the desk answers without waiting for the election and stays exact: a key recorded before is
// read from a replica (the same id again; another submission refused), and a key first seen now
// is decided by the inbound stream's Nats-Msg-Id (the request JetStream kept answers every
// repeat, concurrent ones too; another submission with the key is refused). When the bucket is
// back, the key still gives the same request.
func TestDeskWithoutIdempotencyLeader(t *testing.T) {
	env := natstest.Start(t, natsjs.Topology{})
	d, err := desk.New(desk.Options{Sink: natsjs.NewSink(env.Handles, natsjs.SinkOptions{}), Units: units{},
		Idempotency: env.Requests, ClaimTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	before := `{"channel":"phone","description":"No tengo acceso al SAES","idempotency_key":"antes-1"}`
	code, first := post(t, d, before)
	if code != http.StatusCreated {
		t.Fatalf("before: %d %v", code, first)
	}
	restore := natstest.Leaderless(t, env.JS, "KV_"+natsjs.KVRequests)
	if code, out := post(t, d, before); code != http.StatusOK || out["id"] != first["id"] {
		t.Fatalf("recorded key without a bucket leader: %d %v, want 200 %v", code, out, first["id"])
	}
	if code, out := post(t, d, `{"channel":"phone","description":"Otra cosa","idempotency_key":"antes-1"}`); code != http.StatusConflict {
		t.Fatalf("recorded key reused without a bucket leader: %d %v", code, out)
	}

	fresh := `{"channel":"in_person","description":"Cambio de contraseña del correo","idempotency_key":"durante-1"}`
	code, out := post(t, d, fresh)
	if code != http.StatusCreated {
		t.Fatalf("new key without a bucket leader: %d %v", code, out)
	}
	want := out["id"]
	var wg sync.WaitGroup
	got := make(chan any, 6)
	for range 6 {
		wg.Go(func() {
			code, out := post(t, d, fresh)
			if code != http.StatusOK {
				t.Errorf("repeat: %d %v", code, out)
			}
			got <- out["id"]
		})
	}
	wg.Wait()
	close(got)
	for id := range got {
		if id != want {
			t.Fatalf("repeat answered %v, want %v", id, want)
		}
	}
	if code, out := post(t, d, `{"channel":"in_person","description":"Otra solicitud","idempotency_key":"durante-1"}`); code != http.StatusConflict {
		t.Fatalf("new key reused without a bucket leader: %d %v", code, out)
	}

	restore()
	if code, out := post(t, d, fresh); code != http.StatusOK || out["id"] != want {
		t.Fatalf("after the bucket is back: %d %v, want 200 %v", code, out, want)
	}
	if code, out := post(t, d, `{"channel":"in_person","description":"Otra solicitud","idempotency_key":"durante-1"}`); code != http.StatusConflict {
		t.Fatalf("reused after the bucket is back: %d %v", code, out)
	}
	if n := inboundCount(t, env); n != 2 {
		t.Fatalf("CAU_INBOUND holds %d requests for 2 keys", n)
	}
}
