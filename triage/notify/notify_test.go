package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net"
	netmail "net/mail"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/deadletter"
	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/channels/natsjs/natstest"
	"github.com/ipn-cgsi/caud/triage"
)

// ---- an in-process submission server ----

type received struct {
	From string
	To   []string
	User string
	Data []byte
}

type backend struct {
	mu     sync.Mutex
	msgs   []received
	down   atomic.Bool // answer 421 to MAIL FROM
	reject map[string]bool
	user   string
	pass   string
}

func (b *backend) NewSession(*smtp.Conn) (smtp.Session, error) { return &session{b: b}, nil }

func (b *backend) messages() []received {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]received(nil), b.msgs...)
}

type session struct {
	b    *backend
	user string
	from string
	to   []string
}

func (s *session) AuthMechanisms() []string { return []string{sasl.Plain} }
func (s *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != s.b.user || pass != s.b.pass {
			return errors.New("bad credentials")
		}
		s.user = user
		return nil
	}), nil
}
func (s *session) Reset()        { s.from, s.to = "", nil }
func (s *session) Logout() error { return nil }
func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	if s.b.down.Load() {
		return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Servicio no disponible"}
	}
	if s.b.user != "" && s.user == "" {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	}
	s.from = from
	return nil
}
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if s.b.reject[to] {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user"}
	}
	s.to = append(s.to, to)
	return nil
}
func (s *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.b.mu.Lock()
	s.b.msgs = append(s.b.msgs, received{From: s.from, To: s.to, User: s.user, Data: data})
	s.b.mu.Unlock()
	return nil
}

func startSMTP(t *testing.T, be *backend) (string, int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := newTestServer(be)
	go func() { _ = s.Serve(l) }()
	t.Cleanup(func() { s.Close() })
	addr := l.Addr().(*net.TCPAddr)
	return addr.IP.String(), addr.Port
}

func newTestServer(be *backend) *smtp.Server {
	s := smtp.NewServer(be)
	s.Domain = "localhost"
	s.AllowInsecureAuth = true
	s.ReadTimeout, s.WriteTimeout = 10*time.Second, 10*time.Second
	return s
}

// ---- the notifier under test ----

type harness struct {
	env *natstest.Env
	n   *Notifier
	be  *backend
	reg *prometheus.Registry
}

func start(t *testing.T, be *backend, mod func(*Options)) *harness {
	t.Helper()
	env := natstest.Start(t, natsjs.Topology{})
	if be == nil {
		be = &backend{}
	}
	host, port := startSMTP(t, be)
	reg := prometheus.NewRegistry()
	o := Options{
		JS: env.JS, Triaged: env.Triaged, Requests: env.Requests,
		SMTP:     SMTPOptions{Host: host, Port: port, TLS: "none", From: "Centro de Atención a Usuarios <cau@ipn.mx>", Timeout: 2 * time.Second},
		RetryMin: 50 * time.Millisecond, RetryMax: 300 * time.Millisecond, AckWait: 5 * time.Second,
		Registerer: reg,
	}
	if be.user != "" {
		o.SMTP.Username, o.SMTP.Password = be.user, be.pass
	}
	if mod != nil {
		mod(&o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n, err := New(ctx, o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return &harness{env: env, n: n, be: be, reg: reg}
}

func (h *harness) run(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = h.n.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
}

var ids = channels.NewIDs()

func item(outcome string) triage.Item {
	now := time.Now().UTC()
	id := ids.New(now)
	it := triage.Item{
		Request: channels.Request{
			ID: id, Channel: channels.MediumEmail, ReceivedAt: now.Add(-time.Minute),
			Source:    channels.Source{Mailbox: "cau@ipn.mx", Folder: "INBOX", MessageID: "<req-" + strings.ToLower(id) + "@correo.ipn.mx>"},
			Requester: channels.Requester{Name: "Ana Ruiz Pérez", Email: "aruiz@ipn.mx", Unit: "ESCOM"},
			Subject:   "RE: Contraseña del correo institucional",
			Text:      "Buen día, no puedo entrar a mi correo institucional, dice contraseña incorrecta.",
			Thread:    &channels.Thread{References: []string{"<hilo-1@correo.ipn.mx>"}},
		},
		Triage:    triage.Triage{Outcome: outcome},
		TriagedAt: now,
	}
	switch outcome {
	case triage.OutcomeSAI:
		it.Triage.Service = &triage.Service{ID: "correo-institucional", Name: "Correo institucional", Group: "CORREO"}
	case triage.OutcomeNoCompetente:
		it.Triage.Orientation = &triage.Orientation{Target: "BECAS", Office: "Dirección de Servicios Estudiantiles (becas)",
			Message: "Las becas se tramitan en la Dirección de Servicios Estudiantiles de su unidad."}
	case triage.OutcomeInformativo:
		it.Triage.Concept = triage.ConceptInformativo
	case triage.OutcomeAclaracion:
		it.Triage.Questions = []string{"¿Desde qué equipo intenta entrar?", "¿Qué mensaje de error aparece?"}
	}
	return it
}

func publishItem(t *testing.T, h *harness, it triage.Item, msgID string) {
	t.Helper()
	b, err := json.Marshal(it)
	if err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg(natsjs.SubjectTriagedPrefix + it.Triage.Outcome)
	m.Data = b
	if msgID == "" {
		msgID = "triaged:" + it.Request.ID
	}
	m.Header.Set(jetstream.MsgIDHeader, msgID)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := h.env.JS.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
}

func eventually(t *testing.T, what string, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// settled waits until the notifier is Idle: from then on no further notice can arrive, so counting
// what the SMTP server received is final (a sleep could end before a late duplicate).
func (h *harness) settled(t *testing.T) {
	t.Helper()
	eventually(t, "the notifier idle", 20*time.Second, func() bool {
		ok, err := h.n.Idle(context.Background())
		return err == nil && ok
	})
}

func (h *harness) suppressed(reason string) float64 {
	return testutil.ToFloat64(h.n.m.suppressed.WithLabelValues(reason))
}

// parsed is a received notice, decoded.
type parsed struct {
	h          mail.Header
	rawSubject string
	subject    string
	text, html string
	ctype      string
}

func parse(t *testing.T, data []byte) parsed {
	t.Helper()
	r, err := mail.CreateReader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("parse notice: %v\n%s", err, data)
	}
	p := parsed{h: r.Header, rawSubject: r.Header.Get("Subject")}
	p.subject, _ = r.Header.Subject()
	p.ctype, _, _ = r.Header.ContentType()
	for {
		part, err := r.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("part: %v", err)
		}
		ih, ok := part.Header.(*mail.InlineHeader)
		if !ok {
			t.Fatalf("unexpected attachment")
		}
		ct, params, _ := ih.ContentType()
		if !strings.EqualFold(params["charset"], "utf-8") {
			t.Errorf("%s charset %q, want utf-8", ct, params["charset"])
		}
		b, _ := io.ReadAll(part.Body)
		switch ct {
		case "text/plain":
			p.text = string(b)
		case "text/html":
			p.html = string(b)
		}
	}
	return p
}

// ---- tests ----

func TestEachOutcomeGetsOneThreadedSpanishEmail(t *testing.T) {
	h := start(t, &backend{user: "cau@ipn.mx", pass: "secreto"}, nil)
	h.run(t)
	items := map[string]triage.Item{}
	for _, oc := range triage.Outcomes {
		it := item(oc)
		items[it.Request.ID] = it
		publishItem(t, h, it, "")
	}
	eventually(t, "4 notices", 15*time.Second, func() bool { return len(h.be.messages()) >= 4 })
	h.settled(t)
	msgs := h.be.messages()
	if len(msgs) != 4 {
		t.Fatalf("%d messages, want 4", len(msgs))
	}
	seen := map[string]bool{}
	for _, m := range msgs {
		if m.From != "cau@ipn.mx" || len(m.To) != 1 || m.To[0] != "aruiz@ipn.mx" {
			t.Errorf("envelope %s → %v", m.From, m.To)
		}
		if m.User != "cau@ipn.mx" {
			t.Errorf("not authenticated (AUTH PLAIN): user %q", m.User)
		}
		p := parse(t, m.Data)
		mid, _ := p.h.MessageID()
		// caud.<id>.<kind>@ipn.mx
		parts := strings.SplitN(strings.TrimPrefix(mid, "caud."), ".", 2)
		it, ok := items[parts[0]]
		if !ok || !strings.HasPrefix(mid, "caud.") || !strings.HasSuffix(mid, "@ipn.mx") {
			t.Fatalf("Message-ID %q names no request", mid)
		}
		id := it.Request.ID
		kind := Kind(it.Triage.Outcome)
		if mid != "caud."+id+"."+kind+"@ipn.mx" {
			t.Errorf("Message-ID %q", mid)
		}
		seen[kind] = true
		from, _ := p.h.AddressList("From")
		to, _ := p.h.AddressList("To")
		if len(from) != 1 || from[0].Address != "cau@ipn.mx" || from[0].Name != "Centro de Atención a Usuarios" {
			t.Errorf("From %v", from)
		}
		if len(to) != 1 || to[0].Address != "aruiz@ipn.mx" || to[0].Name != "Ana Ruiz Pérez" {
			t.Errorf("To %v", to)
		}
		if p.subject != "Re: Contraseña del correo institucional" {
			t.Errorf("Subject %q", p.subject)
		}
		if !strings.Contains(p.rawSubject, "=?utf-8?") {
			t.Errorf("Subject not RFC 2047 encoded: %q", p.rawSubject)
		}
		inReply, _ := p.h.MsgIDList("In-Reply-To")
		refs, _ := p.h.MsgIDList("References")
		want := "req-" + strings.ToLower(id) + "@correo.ipn.mx"
		if len(inReply) != 1 || inReply[0] != want {
			t.Errorf("In-Reply-To %v", inReply)
		}
		if len(refs) != 2 || refs[0] != "hilo-1@correo.ipn.mx" || refs[1] != want {
			t.Errorf("References %v", refs)
		}
		if got := p.h.Get("Auto-Submitted"); got != "auto-replied" {
			t.Errorf("Auto-Submitted %q", got)
		}
		if got := p.h.Get("X-Auto-Response-Suppress"); got != "All" {
			t.Errorf("X-Auto-Response-Suppress %q", got)
		}
		if p.ctype != "multipart/alternative" || p.text == "" || p.html == "" {
			t.Errorf("content type %q, text %d bytes, html %d bytes", p.ctype, len(p.text), len(p.html))
		}
		for _, body := range []string{p.text, p.html} {
			if !strings.Contains(body, id) || !strings.Contains(body, "Ana Ruiz Pérez") {
				t.Errorf("%s: body lacks request id or name:\n%s", kind, body)
			}
			var must []string
			switch kind {
			case KindAcuse:
				must = []string{"Recibimos su solicitud", "Correo institucional"}
			case KindNoCompetente:
				must = []string{"no corresponde a los servicios que ofrece la CGSI", "Dirección de Servicios Estudiantiles (becas)",
					"Las becas se tramitan", "Le ofrecemos una disculpa"}
			case KindInformativo:
				must = []string{"CAU_INFORMATIVO_04A", "no está incluido en el catálogo"}
			case KindAclaracion:
				must = []string{"¿Desde qué equipo intenta entrar?", "¿Qué mensaje de error aparece?"}
			}
			for _, s := range must {
				if !strings.Contains(body, s) {
					t.Errorf("%s: body lacks %q:\n%s", kind, s, body)
				}
			}
		}
		// A reply to the notice must be linkable to the request by the IMAP adapter.
		e, err := h.env.Requests.Get(context.Background(), natsjs.MessageIDKey("<"+mid+">").String())
		if err != nil || string(e.Value()) != id {
			t.Errorf("Message-ID not indexed in cau_requests: %v", err)
		}
		if _, err := h.n.kv.Get(context.Background(), SentKey(id, kind)); err != nil {
			t.Errorf("sent record missing: %v", err)
		}
	}
	if len(seen) != 4 {
		t.Errorf("kinds seen %v", seen)
	}
	for _, k := range Kinds {
		if v := testutil.ToFloat64(h.n.m.sent.WithLabelValues(DeliverEmail, k)); v != 1 {
			t.Errorf("sent{email,%s} = %v", k, v)
		}
	}
}

// autoAsAdapter marks mail the way the IMAP adapter does (RFC 3834 Auto-Submitted, Outlook's
// X-Auto-Response-Suppress, Precedence bulk/junk/list, null Return-Path).
func autoAsAdapter(h netmail.Header) bool {
	as := strings.ToLower(strings.TrimSpace(h.Get("Auto-Submitted")))
	prec := strings.ToLower(strings.TrimSpace(h.Get("Precedence")))
	return (as != "" && as != "no") || h.Get("X-Auto-Response-Suppress") != "" ||
		prec == "bulk" || prec == "junk" || prec == "list" || strings.TrimSpace(h.Get("Return-Path")) == "<>"
}

func fixtureItem(t *testing.T, file string) triage.Item {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	m, err := netmail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	from, err := netmail.ParseAddress(m.Header.Get("From"))
	if err != nil {
		t.Fatal(err)
	}
	it := item(triage.OutcomeSAI)
	it.Request.Requester = channels.Requester{Name: from.Name, Email: from.Address}
	it.Request.Source.MessageID = m.Header.Get("Message-ID")
	it.Request.Subject, _ = (&mime.WordDecoder{}).DecodeHeader(m.Header.Get("Subject"))
	it.Request.Auto.AutoSubmitted = autoAsAdapter(m.Header)
	return it
}

func TestSuppression(t *testing.T) {
	h := start(t, nil, func(o *Options) {
		o.MaxPerSenderPerDay = 2
		o.Outcomes = map[string]bool{triage.OutcomeInformativo: false}
	})
	h.run(t)
	var wantSent []string
	want := map[string]float64{}
	suppress := func(reason string, it triage.Item) {
		want[reason]++
		publishItem(t, h, it, "")
	}
	for _, f := range []string{"03-auto-reply-rfc3834.eml", "04-auto-reply-outlook.eml", "05-bounce-dsn.eml"} {
		it := fixtureItem(t, f)
		if !it.Request.Auto.AutoSubmitted {
			t.Fatalf("%s: the adapter would not mark it auto", f)
		}
		suppress(ReasonAutoSubmitted, it)
	}
	// A person writing through a mailing list: a request, but the list is never answered.
	for _, kind := range []string{"list", "bulk"} {
		it := item(triage.OutcomeSAI)
		it.Request.Auto.Bulk = kind
		suppress(ReasonAutoSubmitted, it)
	}
	// Even unmarked, a bounce's sender is never answered.
	bounce := fixtureItem(t, "05-bounce-dsn.eml")
	bounce.Request.Auto.AutoSubmitted = false
	suppress(ReasonNoReplyAddress, bounce)
	for _, a := range []string{"noreply@ipn.mx", "no-reply@facebookmail.com", "postmaster@ipn.mx", "soporte-request@listas.ipn.mx", "bounces+abc=ipn.mx@sendgrid.net", "do_not_reply@sat.gob.mx"} {
		it := item(triage.OutcomeSAI)
		it.Request.Requester.Email = a
		suppress(ReasonNoReplyAddress, it)
	}
	own := item(triage.OutcomeSAI)
	own.Request.Requester.Email = "CAU@ipn.mx"
	suppress(ReasonOwnAddress, own)
	old := item(triage.OutcomeSAI)
	old.Request.ReceivedAt = time.Now().Add(-73 * time.Hour)
	suppress(ReasonTooOld, old)
	phone := item(triage.OutcomeSAI)
	phone.Request.Channel, phone.Request.Source, phone.Request.Thread, phone.Request.Subject = channels.MediumPhone, channels.Source{Agent: "ana"}, nil, ""
	suppress(ReasonNoConfirm, phone)
	suppress(ReasonOutcomeDisabled, item(triage.OutcomeInformativo))
	fu := item(triage.OutcomeAclaracion)
	fu.Request.Thread.FollowupOf = ids.New(time.Now())
	suppress(ReasonFollowup, fu)
	noAddr := item(triage.OutcomeSAI)
	noAddr.Request.Requester.Email = ""
	suppress(ReasonNoAddress, noAddr)

	// Phone with a confirmation asked for, and an address: sent, from the configured From.
	confirmed := phone
	confirmed.Request.ID = ids.New(time.Now())
	confirmed.Request.Confirm = true
	confirmed.Request.Requester.Email = "jpaz@ipn.mx"
	publishItem(t, h, confirmed, "")
	wantSent = append(wantSent, "jpaz@ipn.mx")

	// Daily cap 2: the third request of one sender that day gets nothing.
	for i := range 3 {
		it := item(triage.OutcomeSAI)
		it.Request.Requester.Email = "Mucho@IPN.mx"
		if i < 2 {
			wantSent = append(wantSent, "mucho@ipn.mx")
			publishItem(t, h, it, "")
		} else {
			eventually(t, "first two capped notices", 10*time.Second, func() bool { return len(h.be.messages()) >= 3 })
			suppress(ReasonRateLimited, it)
		}
	}
	total := 0.0
	for _, v := range want {
		total += v
	}
	eventually(t, "every suppression counted", 15*time.Second, func() bool {
		got := 0.0
		for r := range want {
			got += h.suppressed(r)
		}
		return got >= total
	})
	h.settled(t)
	for r, v := range want {
		if got := h.suppressed(r); got != v {
			t.Errorf("suppressed{%s} = %v, want %v", r, got, v)
		}
	}
	var got []string
	for _, m := range h.be.messages() {
		got = append(got, m.To...)
		if m.To[0] == "jpaz@ipn.mx" {
			p := parse(t, m.Data)
			if p.subject != "Solicitud "+confirmed.Request.ID+" recibida en el CAU" || p.h.Get("In-Reply-To") != "" {
				t.Errorf("desk confirmation: subject %q, In-Reply-To %q", p.subject, p.h.Get("In-Reply-To"))
			}
			if from, _ := p.h.AddressList("From"); len(from) != 1 || from[0].Address != "cau@ipn.mx" {
				t.Errorf("desk confirmation From %v", from)
			}
		}
	}
	slices.Sort(got)
	slices.Sort(wantSent)
	if strings.Join(got, ",") != strings.Join(wantSent, ",") {
		t.Errorf("sent to %v, want %v", got, wantSent)
	}
}

func TestRerouteOrRepeatPlansOneNotice(t *testing.T) {
	h := start(t, nil, nil)
	h.run(t)
	it := item(triage.OutcomeSAI)
	publishItem(t, h, it, "")
	eventually(t, "notice", 10*time.Second, func() bool { return len(h.be.messages()) == 1 })
	// The agent re-routes it within sai (another service): no second acuse.
	it.Triage.Service = &triage.Service{ID: "vpn", Name: "VPN"}
	publishItem(t, h, it, "rerouted:lease-1")
	eventually(t, "already planned", 10*time.Second, func() bool { return h.suppressed(ReasonAlreadyPlanned) == 1 })
	// Re-routed to no_competente: that is news for the requester, one notice of that kind.
	it.Triage = item(triage.OutcomeNoCompetente).Triage
	publishItem(t, h, it, "rerouted:lease-2")
	eventually(t, "second kind", 10*time.Second, func() bool { return len(h.be.messages()) == 2 })
	h.settled(t)
	if n := len(h.be.messages()); n != 2 {
		t.Fatalf("%d messages, want 2", n)
	}
}

func TestSMTPOutageDelaysButLosesAndDoublesNothing(t *testing.T) {
	be := &backend{}
	be.down.Store(true)
	h := start(t, be, nil)
	h.run(t)
	want := map[string]bool{}
	for range 5 {
		it := item(triage.OutcomeSAI)
		it.Request.Requester.Email = "u" + strconv.Itoa(len(want)) + "@ipn.mx"
		want[it.Request.Requester.Email] = true
		publishItem(t, h, it, "")
	}
	eventually(t, "failed attempts", 10*time.Second, func() bool {
		return testutil.ToFloat64(h.n.m.failed.WithLabelValues(DeliverEmail, "transient")) >= 10
	})
	if n := len(be.messages()); n != 0 {
		t.Fatalf("%d messages while down", n)
	}
	// Nothing was dead-lettered for an outage.
	if info, _ := h.env.DLQ.Info(context.Background()); info.State.Msgs != 0 {
		t.Fatalf("%d dead letters during an outage", info.State.Msgs)
	}
	be.down.Store(false)
	eventually(t, "every notice after the outage", 15*time.Second, func() bool { return len(be.messages()) >= 5 })
	h.settled(t)
	got := map[string]int{}
	for _, m := range be.messages() {
		got[m.To[0]]++
	}
	if len(got) != 5 {
		t.Fatalf("delivered to %v, want %v", got, want)
	}
	for a, c := range got {
		if !want[a] || c != 1 {
			t.Errorf("%s got %d notices", a, c)
		}
	}
}

// noAck is a delivery whose process dies after sending and before acknowledging.
type noAck struct{ jetstream.Msg }

func (noAck) Ack() error { return nil }

func TestCrashBetweenSendAndAckSendsNothingTwice(t *testing.T) {
	h := start(t, nil, func(o *Options) { o.AckWait = time.Second })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	it := item(triage.OutcomeAclaracion)
	publishItem(t, h, it, "")
	// Plan by hand, then send by hand and "crash" before the ack.
	batch, err := h.n.plan.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		h.n.planMsg(ctx, m)
	}
	batch, err = h.n.send.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var raw []byte
	for m := range batch.Messages() {
		raw = m.Data()
		h.n.sendMsg(ctx, noAck{m})
	}
	if n := len(h.be.messages()); n != 1 {
		t.Fatalf("%d messages after the first send, want 1", n)
	}
	// The same notice published again (a second plan after the dedup window) is not sent either.
	m := nats.NewMsg(SubjectNotifyPrefix + DeliverEmail)
	m.Data = raw
	m.Header.Set(jetstream.MsgIDHeader, "another-id")
	if _, err := h.env.JS.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	// Restart: the unacknowledged delivery comes back after AckWait.
	h.run(t)
	eventually(t, "redeliveries recognised", 10*time.Second, func() bool { return h.suppressed(ReasonAlreadySent) >= 2 })
	if n := len(h.be.messages()); n != 1 {
		t.Fatalf("%d messages after redelivery, want 1", n)
	}
}

func TestRecipientRejectedIsDeadLettered(t *testing.T) {
	be := &backend{reject: map[string]bool{"nadie@ipn.mx": true}}
	h := start(t, be, nil)
	h.run(t)
	it := item(triage.OutcomeSAI)
	it.Request.Requester.Email = "nadie@ipn.mx"
	publishItem(t, h, it, "")
	eventually(t, "dead letter", 10*time.Second, func() bool {
		info, err := h.env.DLQ.Info(context.Background())
		return err == nil && info.State.Msgs == 1
	})
	dl, err := h.env.DLQ.GetLastMsgForSubject(context.Background(), SubjectDLQ)
	if err != nil {
		t.Fatal(err)
	}
	if dl.Header.Get(deadletter.HeaderStage) != "notify" || !strings.Contains(dl.Header.Get(deadletter.HeaderReason), "550") ||
		dl.Header.Get(deadletter.HeaderOrigSubject) != SubjectNotifyPrefix+DeliverEmail {
		t.Errorf("dead letter headers %v", dl.Header)
	}
	if v := testutil.ToFloat64(h.n.m.failed.WithLabelValues(DeliverEmail, "permanent")); v != 1 {
		t.Errorf("failed{email,permanent} = %v", v)
	}
	if _, err := h.n.kv.Get(context.Background(), SentKey(it.Request.ID, KindAcuse)); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("a refused notice recorded as sent: %v", err)
	}
}

func TestMetricsRegistered(t *testing.T) {
	h := start(t, nil, nil)
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, n := range []string{"caud_notify_sent_total", "caud_notify_suppressed_total", "caud_notify_failed_total"} {
		if !names[n] {
			t.Errorf("metric %s not registered", n)
		}
	}
}
