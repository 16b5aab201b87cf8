package search_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/channels/natsjs/natstest"
	"github.com/ipn-cgsi/caud/triage/search"
)

// person is a requester of the test corpus.
type person struct {
	name, email, handle, unit, channel, subject string
}

var people = []person{
	{"José López Hernández", "jlopez@ipn.mx", "", "ESCOM", "email", "No puedo entrar al correo"},
	{"Ana María Núñez", "ANA.NUNEZ@ipn.mx", "", "ESIME Zacatenco", "email", "Solicitud de alta en el SAES"},
	{"", "", "@cau_fan", "", "x", ""},
	{"Luis Pérez", "", "", "CIC", "phone", ""},
	{"Ana Lozano", "alozano@gmail.com", "", "ESCOM", "memo", "Oficio: mantenimiento de equipo"},
	{"Beto Ruiz", "", "beto.ruiz", "UPIITA", "facebook", ""},
}

type corpus struct {
	env *natstest.Env
	ids []string // in arrival order
	at  []time.Time
}

// publish sends the people's requests through the real sink, one hour apart (ids follow times).
func publish(t testing.TB, env *natstest.Env, base time.Time) *corpus {
	t.Helper()
	c := &corpus{env: env}
	sink := natsjs.NewSink(env.Handles, natsjs.SinkOptions{})
	gen := channels.NewIDs()
	for i, p := range people {
		at := base.Add(time.Duration(i) * time.Hour).UTC()
		r := &channels.Request{ID: gen.New(at), Channel: p.channel, ReceivedAt: at, Subject: p.subject,
			Text: "texto de la solicitud " + p.name, Requester: channels.Requester{Name: p.name, Email: p.email, Unit: p.unit}}
		if p.handle != "" {
			h := p.handle
			r.Requester.Handle = &h
		}
		if _, err := sink.Publish(context.Background(), channels.Submission{Request: r, Subject: "desk", MsgID: r.ID, Source: "test://"}); err != nil {
			t.Fatal(err)
		}
		c.ids, c.at = append(c.ids, r.ID), append(c.at, at)
	}
	return c
}

func (c *corpus) setState(t testing.TB, i int, st natsjs.RequestState) {
	t.Helper()
	if _, err := natsjs.UpdateState(context.Background(), c.env.Requests, c.ids[i], func(s *natsjs.RequestState) error {
		s.State, s.Queue, s.Folio, s.Agent = st.State, st.Queue, st.Folio, st.Agent
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func start(t testing.TB, env *natstest.Env) *search.Index {
	t.Helper()
	x := search.New(env.Handles, search.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = x.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-x.Ready():
	case <-time.After(30 * time.Second):
		t.Fatal("index not ready")
	}
	return x
}

func ids(r search.Result) []string {
	out := make([]string, len(r.Requests))
	for i, s := range r.Requests {
		out[i] = s.ID
	}
	return out
}

func mustSearch(t *testing.T, x *search.Index, raw string) search.Result {
	t.Helper()
	v, err := url.ParseQuery(raw)
	if err != nil {
		t.Fatal(err)
	}
	q, err := search.ParseQuery(v)
	if err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	r, err := x.Search(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// waitFor polls cond until it holds; the deadline only bounds a failure.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSearchFindsByEveryCriterion(t *testing.T) {
	env := natstest.Start(t, natsjs.Topology{})
	base := time.Date(2025, 10, 14, 15, 0, 0, 0, time.UTC) // 09:00 in Mexico City
	c := publish(t, env, base)
	c.setState(t, 0, natsjs.RequestState{State: natsjs.StateDone, Queue: "sai", Folio: "SAI-2025-0042", Agent: "ana"})
	c.setState(t, 1, natsjs.RequestState{State: natsjs.StateClaimed, Queue: "sai", Agent: "beto"})
	c.setState(t, 3, natsjs.RequestState{State: natsjs.StateQueued, Queue: "no_competente"})
	x := start(t, env)
	id := func(i ...int) []string {
		out := []string{}
		for _, n := range i {
			out = append(out, c.ids[n])
		}
		return out
	}
	for _, tc := range []struct {
		query string
		want  []string // newest first
	}{
		{"", id(5, 4, 3, 2, 1, 0)},
		{"id=" + strings.ToLower(c.ids[2]), id(2)},
		{"folio=sai-2025-0042", id(0)},
		{"email=ana.nunez@IPN.MX", id(1)},
		{"handle=@cau_fan", id(2)},
		{"handle=BETO.RUIZ", id(5)},
		{"name=ana", id(4, 1)},
		{"name=nunez ana", id(1)},
		{"name=jose lop", id(0)},
		{"name=lo", id(4, 0)},
		{"name=pez", []string{}}, // words start with the query, they do not merely contain it
		{"unit=escom", id(4, 0)},
		{"unit=ESIME Zacatenco", id(1)},
		{"queue=sai", id(1, 0)},
		{"state=done", id(0)},
		{"state=received", id(5, 4, 2)},
		{"channel=email", id(1, 0)},
		{"queue=sai&state=claimed", id(1)},
		{"from=" + c.at[2].Format(time.RFC3339) + "&to=" + c.at[4].Format(time.RFC3339), id(3, 2)},
		{"from=2025-10-14&to=2025-10-14", id(5, 4, 3, 2, 1, 0)},
		{"to=2025-10-13", []string{}},
		{"q=saes", id(1)},
		{"q=Oficio equipo", id(4)},
		{"q=sai-2025", id(0)},
		{"q=escom lozano", id(4)},
		{"q=" + c.ids[3][:12], id(3)},
		{"q=solicitud luis", id(3)}, // the start of the text
	} {
		if got := ids(mustSearch(t, x, tc.query)); !slices.Equal(got, tc.want) {
			t.Errorf("%q: got %v, want %v", tc.query, got, tc.want)
		}
	}
	r := mustSearch(t, x, "folio=SAI-2025-0042")
	if s := r.Requests[0]; s.Name != "José López Hernández" || s.Email != "jlopez@ipn.mx" || s.State != "done" || s.Agent != "ana" || s.Channel != "email" || !s.ReceivedAt.Equal(c.at[0]) {
		t.Errorf("summary %+v", s)
	}
}

func TestSearchPagesWithoutGapsOrRepeats(t *testing.T) {
	env := natstest.Start(t, natsjs.Topology{})
	c := publish(t, env, time.Now().Add(-24*time.Hour))
	x := start(t, env)
	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > len(c.ids) {
			t.Fatal("pagination does not end")
		}
		r := mustSearch(t, x, "limit=4&cursor="+cursor)
		got = append(got, ids(r)...)
		if r.Next == "" {
			break
		}
		cursor = r.Next
	}
	want := slices.Clone(c.ids)
	slices.Reverse(want)
	if !slices.Equal(got, want) {
		t.Fatalf("pages %v, want %v", got, want)
	}
	// A filtered search pages too.
	r := mustSearch(t, x, "limit=1&unit=ESCOM")
	if len(r.Requests) != 1 || r.Next == "" {
		t.Fatalf("first page %+v", r)
	}
	r = mustSearch(t, x, "limit=1&unit=ESCOM&cursor="+r.Next)
	if len(r.Requests) != 1 || r.Requests[0].ID != c.ids[0] {
		t.Fatalf("second page %+v", r)
	}
}

// TestSearchFollowsLiveChangesAndRebuilds: a request that arrives after the index loaded, and a
// state change, show up; a second index (another replica, or a restart) rebuilds the same answers
// from JetStream alone.
func TestSearchFollowsLiveChangesAndRebuilds(t *testing.T) {
	env := natstest.Start(t, natsjs.Topology{})
	c := publish(t, env, time.Now().Add(-24*time.Hour))
	x := start(t, env)
	more := publish(t, env, time.Now().Add(-time.Hour))
	waitFor(t, "new requests indexed", func() bool { return len(mustSearch(t, x, "limit=500").Requests) == 2*len(people) })
	more.setState(t, 0, natsjs.RequestState{State: natsjs.StateDone, Queue: "informativo", Folio: "F-77"})
	waitFor(t, "state change indexed", func() bool { return len(mustSearch(t, x, "folio=f-77").Requests) == 1 })
	more.setState(t, 0, natsjs.RequestState{State: natsjs.StateDone, Queue: "informativo", Folio: "F-78"})
	waitFor(t, "folio change indexed", func() bool { return len(mustSearch(t, x, "folio=f-78").Requests) == 1 })
	if r := mustSearch(t, x, "folio=f-77"); len(r.Requests) != 0 {
		t.Errorf("old folio still found: %v", ids(r))
	}
	y := start(t, env)
	for _, q := range []string{"", "email=jlopez@ipn.mx", "folio=F-78", "state=received", "name=ana"} {
		if a, b := ids(mustSearch(t, x, q)), ids(mustSearch(t, y, q)); !slices.Equal(a, b) {
			t.Errorf("%q: live index %v, rebuilt index %v", q, a, b)
		}
	}
	_ = c
}

func TestSearchBoundsMemory(t *testing.T) {
	env := natstest.Start(t, natsjs.Topology{})
	c := publish(t, env, time.Now().Add(-24*time.Hour))
	x := search.New(env.Handles, search.Options{MaxEntries: 3})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = x.Run(ctx) }()
	<-x.Ready()
	r, err := x.Search(ctx, search.Query{})
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(c.ids[3:])
	slices.Reverse(want)
	if !slices.Equal(ids(r), want) {
		t.Fatalf("bounded index holds %v, want the newest %v", ids(r), want)
	}
}

func TestSearchNotReady(t *testing.T) {
	env := natstest.Start(t, natsjs.Topology{})
	x := search.New(env.Handles, search.Options{}) // never run
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := x.Search(ctx, search.Query{}); !errors.Is(err, search.ErrNotReady) {
		t.Fatalf("err %v, want ErrNotReady", err)
	}
}

func TestSearchAPI(t *testing.T) {
	env := natstest.Start(t, natsjs.Topology{})
	c := publish(t, env, time.Now().Add(-24*time.Hour))
	x := start(t, env)
	mux := http.NewServeMux()
	x.Register(mux, func(h http.Handler) http.Handler { return h })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	get := func(q string) (int, map[string]json.RawMessage) {
		resp, err := http.Get(srv.URL + "/api/v1/requests?" + q)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var m map[string]json.RawMessage
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %s", q, b)
		}
		return resp.StatusCode, m
	}
	status, m := get("unit=ESCOM&limit=1")
	var list []search.Summary
	_ = json.Unmarshal(m["requests"], &list)
	if status != 200 || len(list) != 1 || list[0].ID != c.ids[4] || string(m["next"]) != `"`+c.ids[4]+`"` {
		t.Fatalf("search: %d %v", status, m)
	}
	status, m = get("state=perdida&from=ayer&limit=9999&color=rojo&id=123")
	var fields map[string]string
	_ = json.Unmarshal(m["fields"], &fields)
	if status != 400 || len(fields) != 5 || !strings.Contains(fields["state"], "use received") ||
		!strings.Contains(fields["from"], "AAAA-MM-DD") || !strings.Contains(fields["color"], "desconocido") {
		t.Fatalf("bad query: %d %v", status, fields)
	}
}
