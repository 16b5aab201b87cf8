package queue_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/triage"
	"github.com/ipn-cgsi/caud/triage/queue"
)

// call posts body to path on the queues' API and returns the status and the decoded error text.
func call(t *testing.T, srv *httptest.Server, path, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(srv.URL+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Error  string            `json:"error"`
		Fields map[string]string `json:"fields"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	msg := out.Error
	for _, v := range out.Fields {
		msg += " " + v
	}
	return resp.StatusCode, msg
}

func apiServer(t *testing.T, q *queue.Queues) *httptest.Server {
	mux := http.NewServeMux()
	q.Register(mux, func(h http.Handler) http.Handler { return h })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestLeaseErrorsSayWhatIsTrue(t *testing.T) {
	f := setup(t, 3*time.Second)
	ctx := context.Background()
	srv := apiServer(t, f.q)
	claim := func(queueName string) *queue.Claim {
		t.Helper()
		f.enqueue(t, queueName, "no hay red en el laboratorio")
		c, err := f.q.Claim(ctx, queueName, "ana")
		if err != nil || c == nil {
			t.Fatal(c, err)
		}
		return c
	}
	done, released, rerouted, expired := claim("sai"), claim("informativo"), claim("aclaracion"), claim("no_competente")
	if err := f.q.Done(ctx, done.Lease, "SAI-1", ""); err != nil {
		t.Fatal(err)
	}
	if err := f.q.Release(ctx, released.Lease); err != nil {
		t.Fatal(err)
	}
	if _, err := f.q.Reroute(ctx, rerouted.Lease, queue.Reroute{Outcome: "informativo", Kind: "servicio"}); err != nil {
		t.Fatal(err)
	}
	// The ULID of a lease that never existed.
	unknown := strings.Replace(done.Lease, done.Lease[len(done.Lease)-4:], "ZZZZ", 1)
	cases := []struct {
		name, lease string
		status      int
		says        string
	}{
		{"malformed", "not-a-lease", http.StatusBadRequest, "no es un identificador de asignación"},
		{"malformed with dots", "a.b.c", http.StatusBadRequest, "no es un identificador"},
		{"unknown", unknown, http.StatusNotFound, "No existe una asignación"},
		{"done", done.Lease, http.StatusConflict, "ya se terminó"},
		{"released", released.Lease, http.StatusConflict, "ya se liberó"},
		{"rerouted", rerouted.Lease, http.StatusConflict, "ya se reencauzó el"},
	}
	for _, c := range cases {
		for _, op := range []string{"done", "release", "extend"} {
			body := `{}`
			if op == "done" {
				body = `{"folio":"SAI-2"}`
			}
			code, msg := call(t, srv, "/api/v1/leases/"+c.lease+"/"+op, body)
			if code != c.status || !strings.Contains(msg, c.says) {
				t.Errorf("%s %s: %d %q, want %d %q", c.name, op, code, msg, c.status, c.says)
			}
		}
	}
	if _, msg := call(t, srv, "/api/v1/leases/"+rerouted.Lease+"/done", `{}`); !strings.Contains(msg, "cola informativo") {
		t.Errorf("rerouted lease does not name the new queue: %q", msg)
	}
	// Expired: once its 3 s lease ends, the item is pending again and the lease answers 410.
	waitStat(t, f.q, "no_competente", func(s queue.Stat) bool { return s.InProgress == 0 })
	if code, msg := call(t, srv, "/api/v1/leases/"+expired.Lease+"/extend", `{}`); code != http.StatusGone ||
		!strings.Contains(msg, "venció") || !strings.Contains(msg, "volvió a su cola no_competente") {
		t.Fatalf("expired: %d %q", code, msg)
	}
	// A done on an sai item without folio names the field.
	c := claim("sai")
	code, msg := call(t, srv, "/api/v1/leases/"+c.Lease+"/done", `{}`)
	if code != http.StatusBadRequest || !strings.Contains(msg, "folio del SAI") || !strings.Contains(msg, "no_folio_reason") {
		t.Fatalf("done without folio: %d %q", code, msg)
	}
	if code, msg := call(t, srv, "/api/v1/leases/"+c.Lease+"/done", `{"no_folio_reason":"duplicado del folio SAI-9"}`); code != http.StatusOK {
		t.Fatalf("done with a reason: %d %q", code, msg)
	}
	if code, msg := call(t, srv, "/api/v1/leases/"+c.Lease+"/extend", `{"duration":"-5m"}`); code != http.StatusBadRequest || !strings.Contains(msg, "duración") {
		t.Fatalf("bad duration: %d %q", code, msg)
	}
}

func TestReleasedAndExpiredItemsAreNotInProgress(t *testing.T) {
	f := setup(t, 3*time.Second)
	ctx := context.Background()
	for range 3 {
		f.enqueue(t, "sai", "falla de correo")
	}
	a, _ := f.q.Claim(ctx, "sai", "ana")
	b, _ := f.q.Claim(ctx, "sai", "luis")
	if _, err := f.q.Claim(ctx, "sai", "eva"); err != nil {
		t.Fatal(err)
	}
	if s := stat(t, f.q, "sai"); s.Pending != 0 || s.InProgress != 3 {
		t.Fatalf("three claimed: %+v", s)
	}
	if err := f.q.Release(ctx, a.Lease); err != nil {
		t.Fatal(err)
	}
	if s := stat(t, f.q, "sai"); s.Pending != 1 || s.InProgress != 2 {
		t.Fatalf("after a release: %+v", s)
	}
	// A restarted process (a new Queues over the same JetStream) counts the same.
	q2, err := queue.New(ctx, f.env.Handles, f.env.Conn, queue.Options{Lease: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if s := stat(t, q2, "sai"); s.Pending != 1 || s.InProgress != 2 {
		t.Fatalf("after a restart: %+v", s)
	}
	// Leases that lapse (the agents vanished) are pending again, not in progress.
	if _, err := f.q.Extend(ctx, b.Lease, 0); err != nil {
		t.Fatal(err)
	}
	waitStat(t, q2, "sai", func(s queue.Stat) bool { return s.InProgress == 0 && s.Pending == 3 })
}

func waitStat(t *testing.T, q *queue.Queues, name string, ok func(queue.Stat) bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		s := stat(t, q, name)
		if ok(s) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue %s: %+v", name, s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestExtendForLongerThanALeaseIsHonoured(t *testing.T) {
	const lease = 3 * time.Second
	f := setup(t, lease)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = f.q.Run(ctx) }()
	id := f.enqueue(t, "aclaracion", "ayuda")
	c, err := f.q.Claim(ctx, "aclaracion", "ana")
	if err != nil || c == nil {
		t.Fatal(c, err)
	}
	until, err := f.q.Extend(ctx, c.Lease, 4*lease)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(until); d < 3*lease || d > 4*lease {
		t.Fatalf("extended until %s (in %s), want about %s", until, d, 4*lease)
	}
	// Three ack waits later nobody else got the item: the renewals kept it.
	end := time.Now().Add(3 * lease)
	for time.Now().Before(end) {
		if other, err := f.q.Claim(ctx, "aclaracion", "luis"); err != nil || other != nil {
			t.Fatalf("extended lease handed out again: %v %v", other, err)
		}
		if s := stat(t, f.q, "aclaracion"); s.InProgress != 1 || s.Pending != 0 {
			t.Fatalf("while extended: %+v", s)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err := f.q.Done(ctx, c.Lease, "", ""); err != nil {
		t.Fatalf("done after the renewals: %v", err)
	}
	v, err := f.q.Get(ctx, id)
	if err != nil || v.State != natsjs.StateDone {
		t.Fatalf("state %+v %v", v, err)
	}
	// Past MaxLease is refused.
	f2 := setup(t, lease)
	f2.enqueue(t, "sai", "x")
	c2, _ := f2.q.Claim(ctx, "sai", "")
	if _, err := f2.q.Extend(ctx, c2.Lease, 9*time.Hour); !errors.Is(err, queue.ErrLeaseTooLong) {
		t.Fatalf("9 h extend: %v", err)
	}
}

// TestClaimBeforeTheWorkersIndexEntry claims an item whose index entry the triage worker has not
// written yet: the claim is recorded at once (no waiting) and the worker's late create-only write
// cannot overwrite it.
func TestClaimBeforeTheWorkersIndexEntry(t *testing.T) {
	f := setup(t, time.Minute)
	ctx := context.Background()
	now := time.Now().UTC()
	id := f.ids.New(now)
	b, _ := json.Marshal(triage.Item{
		Request: channels.Request{ID: id, Channel: "phone", ReceivedAt: now, Text: "x"},
		Triage:  triage.Triage{Outcome: "aclaracion"}, TriagedAt: now,
	})
	m := nats.NewMsg(natsjs.SubjectTriagedPrefix + "aclaracion")
	m.Data = b
	ack, err := f.env.JS.PublishMsg(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	c, err := f.q.Claim(ctx, "aclaracion", "ana")
	if err != nil || c == nil {
		t.Fatal(c, err)
	}
	v, err := f.q.Get(ctx, id)
	if err != nil || v.State != natsjs.StateClaimed {
		t.Fatalf("after claim: %+v %v", v, err)
	}
	_, err = f.env.JS.PublishMsg(ctx, natsjs.StateMsg(id, natsjs.RequestState{State: natsjs.StateQueued, Queue: "aclaracion", TriagedSeq: ack.Sequence}))
	if !natsjs.IsConflict(err) {
		t.Fatalf("worker's late entry: %v, want a conflict", err)
	}
	if v, _ := f.q.Get(ctx, id); v.State != natsjs.StateClaimed {
		t.Fatalf("claimed state overwritten: %+v", v)
	}
	if err := f.q.Done(ctx, c.Lease, "", ""); err != nil {
		t.Fatal(err)
	}
	if v, _ := f.q.Get(ctx, id); v.State != natsjs.StateDone {
		t.Fatalf("after done: %+v", v)
	}
}
