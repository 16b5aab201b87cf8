package imap

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/deadletter"
)

func TestFixtureMailsBecomeRequests(t *testing.T) {
	env := startNATS(t)
	srv := startMemServer(t, serverOpts{})
	c := dialIMAP(t, srv.Addr)
	manifest := readJSONL[mailManifest](t, "testdata/mail/manifest.jsonl")
	for _, mf := range manifest {
		appendRaw(t, c, "INBOX", fixtureMail(t, "mail", mf.File))
	}
	r := runMailbox(t, env.options(srv.Addr), env.Sink)
	waitFor(t, time.Minute, "30 requests", func() bool { return r.mb.Stats().Published == 30 })
	want := fixtureRequests(t)
	byMID := map[string]mailManifest{}
	for _, mf := range manifest {
		byMID[mf.MessageID] = mf
	}
	reqs := env.inbound(t)
	if len(reqs) != 30 {
		t.Fatalf("%d requests, want 30", len(reqs))
	}
	for _, req := range reqs {
		mf, ok := byMID[req.Source.MessageID]
		if !ok {
			t.Errorf("request for unknown message id %q", req.Source.MessageID)
			continue
		}
		w := want[mf.ID]
		got := joinSplit(Split{Text: req.Text, Signature: req.Signature, Quoted: req.Quoted})
		if squeeze(got) != squeeze(w.Body) {
			t.Errorf("%s: text differs\n got: %q\nwant: %q", mf.ID, got, w.Body)
		}
		if req.Subject != w.Subject || req.Requester.Email != w.FromAddr || req.Requester.Name != w.FromName {
			t.Errorf("%s: subject/requester %q %q %q", mf.ID, req.Subject, req.Requester.Name, req.Requester.Email)
		}
		if req.Channel != "email" || req.Source.Mailbox != testUser || req.Source.Folder != "INBOX" || req.Source.UID == 0 || req.Source.UIDValidity == 0 {
			t.Errorf("%s: source %+v", mf.ID, req.Source)
		}
		if req.Original == nil || req.Original.Object == "" {
			t.Errorf("%s: original not archived", mf.ID)
		}
		if err := req.Validate(); err != nil {
			t.Errorf("%s: %v", mf.ID, err)
		}
	}
	waitFor(t, 5*time.Second, "mail moved to Procesados", func() bool {
		return folderCount(t, c, "INBOX") == 0 && folderCount(t, c, "Procesados") == 30
	})
	h := r.mb.Health(context.Background())
	if len(h) != 1 || !h[0].OK || h[0].Name != "imap:cau" {
		t.Errorf("health %+v", h)
	}
}

func TestEdgeFixturesGetTheirOutcome(t *testing.T) {
	env := startNATS(t)
	srv := startMemServer(t, serverOpts{})
	c := dialIMAP(t, srv.Addr)
	edges := readJSONL[edgeManifest](t, "testdata/mail-edge/manifest.jsonl")
	for _, e := range edges {
		appendRaw(t, c, "INBOX", fixtureMail(t, "mail-edge", e.File))
	}
	r := runMailbox(t, env.options(srv.Addr), env.Sink)
	checkEdgeOutcomes(t, env, r.mb, edges)
	waitFor(t, 5*time.Second, "inbox emptied", func() bool { return folderCount(t, c, "INBOX") == 0 })
	if n := folderCount(t, c, "Procesados"); n != uint32(len(edges)) {
		t.Errorf("Procesados has %d, want %d (suppressed go there by default)", n, len(edges))
	}
}

// checkEdgeOutcomes waits until every edge fixture was handled and checks the manifest outcomes.
func checkEdgeOutcomes(t *testing.T, env *testEnv, mb *Mailbox, edges []edgeManifest) {
	t.Helper()
	var nReq, nSupp, nDup int
	for _, e := range edges {
		switch e.Expect {
		case "request", "followup":
			nReq++
		case "suppress":
			nSupp++
		case "duplicate":
			nDup++
		}
	}
	waitFor(t, 30*time.Second, "edge outcomes", func() bool {
		s := mb.Stats()
		return s.Published == int64(nReq) && s.Suppressed == int64(nSupp) && s.Duplicates == int64(nDup)
	})
	if s := mb.Stats(); s.Quarantined != 0 {
		t.Errorf("quarantined %d", s.Quarantined)
	}
	reqs := env.inbound(t)
	if len(reqs) != nReq {
		t.Fatalf("%d requests, want %d", len(reqs), nReq)
	}
	bySubjectFile := map[string]string{
		"01-plain-latin1-qp.eml": "Cambio de contraseña", "02-html-only-outlook.eml": "Falla impresora",
		"06-no-message-id.eml": "wifi", "07-missing-final-boundary.eml": "Sala", "08-unknown-charset.eml": "correo lleno",
		"09-bad-qp.eml": "antivirus", "10-attachment-only.eml": "Oficio", "11-reply-quoted.eml": "RE: Cambio de contraseña",
	}
	find := func(subject string) *struct{ i int } {
		for i := range reqs {
			if reqs[i].Subject == subject {
				return &struct{ i int }{i}
			}
		}
		return nil
	}
	var edge1 string
	if f := find("Cambio de contraseña"); f != nil {
		edge1 = reqs[f.i].ID
	}
	for _, e := range edges {
		if e.Expect != "request" && e.Expect != "followup" {
			continue
		}
		f := find(bySubjectFile[e.File])
		if f == nil {
			t.Errorf("%s: no request", e.File)
			continue
		}
		req := reqs[f.i]
		if e.MustContain != nil && !strings.Contains(req.Text, *e.MustContain) {
			t.Errorf("%s: text %q lacks %q", e.File, req.Text, *e.MustContain)
		}
		if strings.ContainsRune(req.Text+req.Subject+req.Requester.Name, '\uFFFD') {
			t.Errorf("%s: replacement characters in %q", e.File, req.Text)
		}
		switch e.File {
		case "02-html-only-outlook.eml":
			if strings.Contains(req.Text, "alert") || strings.Contains(req.Text, "color") || !strings.Contains(req.Text, `"error 49"`) {
				t.Errorf("html text %q", req.Text)
			}
		case "10-attachment-only.eml":
			if len(req.Attachments) != 1 || req.Attachments[0].Name != "oficio núm 123.pdf" || req.Attachments[0].Object == "" || req.Attachments[0].Size == 0 {
				t.Errorf("attachments %+v", req.Attachments)
			}
		case "11-reply-quoted.eml":
			if req.Thread == nil || req.Thread.FollowupOf == "" || req.Thread.FollowupOf != edge1 {
				t.Errorf("follow-up thread %+v, want followup_of %s", req.Thread, edge1)
			}
			if !strings.Contains(req.Quoted, "Folio 123") || strings.Contains(req.Text, "Folio") {
				t.Errorf("quoted history not separated: text %q quoted %q", req.Text, req.Quoted)
			}
		case "01-plain-latin1-qp.eml":
			if req.Requester.Name != "María Jiménez" || req.Requester.Unit != "ESIQIE" || req.Requester.Extension != "55123" {
				t.Errorf("requester %+v", req.Requester)
			}
		}
	}
}

func TestRestartMidwayLeavesOneRequestPerMail(t *testing.T) {
	env := startNATS(t)
	srv := startMemServer(t, serverOpts{})
	c := dialIMAP(t, srv.Addr)
	const n = 120
	for i := range n {
		appendRaw(t, c, "INBOX", synthMail(i))
	}
	o := env.options(srv.Addr)
	o.BatchSize = 7
	o.Workers = 3
	for round := 0; round < 5 && env.inboundCount(t) < n; round++ {
		r := runMailbox(t, o, env.Sink)
		target := uint64(min(n, (round+1)*25))
		waitFor(t, 20*time.Second, "progress", func() bool { return env.inboundCount(t) >= target })
		r.stop() // cancels mid-batch
	}
	r := runMailbox(t, o, env.Sink)
	waitFor(t, 20*time.Second, "all mails", func() bool { return folderCount(t, c, "INBOX") == 0 })
	r.stop()
	assertOnePerMail(t, env.inbound(t), n)
}

// assertOnePerMail checks that requests name n distinct mails synth-0..n-1, each once.
func assertOnePerMail(t *testing.T, reqs []channels.Request, n int) {
	t.Helper()
	seen := map[string]int{}
	for _, r := range reqs {
		seen[r.Source.MessageID]++
	}
	for i := range n {
		id := fmt.Sprintf("<synth-%d@ipn.mx>", i)
		if seen[id] != 1 {
			t.Errorf("%s: %d requests, want 1", id, seen[id])
		}
	}
	if len(reqs) != n {
		t.Errorf("%d requests for %d mails", len(reqs), n)
	}
}

func TestUIDValidityChangeRescansWithoutDuplicates(t *testing.T) {
	env := startNATS(t)
	srv := startMemServer(t, serverOpts{})
	c := dialIMAP(t, srv.Addr)
	if err := c.Create("Entrada", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		appendRaw(t, c, "Entrada", synthMail(i))
	}
	appendRaw(t, c, "Entrada", fixtureMail(t, "mail-edge", "06-no-message-id.eml"))
	o := env.options(srv.Addr)
	o.Folder = "Entrada"
	o.FlagOnly = true
	r := runMailbox(t, o, env.Sink)
	waitFor(t, 10*time.Second, "first pass", func() bool { return r.mb.Stats().Published == 6 })
	r.stop()
	// The folder is re-created: new UIDVALIDITY, same mails plus a new one.
	if err := c.Delete("Entrada").Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Create("Entrada", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		appendRaw(t, c, "Entrada", synthMail(i))
	}
	appendRaw(t, c, "Entrada", fixtureMail(t, "mail-edge", "06-no-message-id.eml"))
	r2 := runMailbox(t, o, env.Sink)
	waitFor(t, 10*time.Second, "rescan", func() bool { s := r2.mb.Stats(); return s.Published == 1 && s.Duplicates == 6 })
	if got := env.inboundCount(t); got != 7 {
		t.Fatalf("%d requests after rescan, want 7", got)
	}
	// Flag-only: the mail stays, marked.
	if _, err := c.Select("Entrada", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	sd, err := c.UIDSearch(&imap.SearchCriteria{Flag: []imap.Flag{imap.FlagSeen, KeywordProcessed}}, nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if len(sd.AllUIDs()) != 7 {
		t.Errorf("%d mails flagged processed, want 7", len(sd.AllUIDs()))
	}
}

func TestTwoInstancesOnlyOneWorksTheMailbox(t *testing.T) {
	env := startNATS(t)
	srv := startMemServer(t, serverOpts{})
	c := dialIMAP(t, srv.Addr)
	oa, ob := env.options(srv.Addr), env.options(srv.Addr)
	oa.Holder, ob.Holder = "caud-a", "caud-b"
	ra := runMailbox(t, oa, env.Sink)
	waitFor(t, 5*time.Second, "a connected", func() bool { return strings.HasPrefix(ra.mb.Health(context.Background())[0].Detail, "connected") })
	rb := runMailbox(t, ob, env.Sink)
	waitFor(t, 5*time.Second, "b standby", func() bool { return strings.HasPrefix(rb.mb.Health(context.Background())[0].Detail, "standby") })
	for i := range 20 {
		appendRaw(t, c, "INBOX", synthMail(i))
	}
	waitFor(t, 10*time.Second, "20 requests", func() bool { return env.inboundCount(t) == 20 })
	if rb.mb.Stats().Fetched != 0 {
		t.Errorf("standby fetched %d mails", rb.mb.Stats().Fetched)
	}
	if !rb.mb.Health(context.Background())[0].OK {
		t.Errorf("standby should be healthy: %+v", rb.mb.Health(context.Background()))
	}
	ra.stop() // a goes away; b takes over
	for i := 20; i < 30; i++ {
		appendRaw(t, c, "INBOX", synthMail(i))
	}
	waitFor(t, 15*time.Second, "b takes over", func() bool { return rb.mb.Stats().Published == 10 })
	if n := env.inboundCount(t); n != 30 {
		t.Errorf("%d requests, want 30", n)
	}
}

func TestPollingWhenServerLacksIdle(t *testing.T) {
	env := startNATS(t)
	srv := startMemServer(t, serverOpts{noIdle: true, noMove: true})
	c := dialIMAP(t, srv.Addr)
	r := runMailbox(t, env.options(srv.Addr), env.Sink)
	waitFor(t, 5*time.Second, "connected", func() bool { return strings.Contains(r.mb.Health(context.Background())[0].Detail, "polling") })
	for i := range 5 {
		appendRaw(t, c, "INBOX", synthMail(i))
	}
	waitFor(t, 10*time.Second, "polled", func() bool { return env.inboundCount(t) == 5 })
	// Without MOVE: COPY + STORE \Deleted + UID EXPUNGE.
	waitFor(t, 5*time.Second, "moved", func() bool {
		return folderCount(t, c, "INBOX") == 0 && folderCount(t, c, "Procesados") == 5
	})
}

func TestReconnectsAfterConnectionDrop(t *testing.T) {
	env := startNATS(t)
	srv := startMemServer(t, serverOpts{})
	c := dialIMAP(t, srv.Addr)
	var mu sync.Mutex
	var conns []net.Conn
	o := env.options(srv.Addr)
	o.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
		}
		return conn, err
	}
	r := runMailbox(t, o, env.Sink)
	appendRaw(t, c, "INBOX", synthMail(1))
	waitFor(t, 10*time.Second, "first", func() bool { return env.inboundCount(t) == 1 })
	mu.Lock()
	for _, conn := range conns {
		conn.Close()
	}
	mu.Unlock()
	waitFor(t, 5*time.Second, "down", func() bool { return !r.mb.Health(context.Background())[0].OK })
	if h := r.mb.Health(context.Background())[0]; h.Since.IsZero() || !strings.HasPrefix(h.Detail, "down") {
		t.Errorf("health while down %+v", h)
	}
	appendRaw(t, c, "INBOX", synthMail(2))
	waitFor(t, 10*time.Second, "after reconnect", func() bool { return env.inboundCount(t) == 2 })
	waitFor(t, 5*time.Second, "healthy again", func() bool { return r.mb.Health(context.Background())[0].OK })
	mu.Lock()
	defer mu.Unlock()
	if len(conns) < 2 {
		t.Errorf("%d connections, want a reconnect", len(conns))
	}
}

func TestCommandTimeoutOnSilentServer(t *testing.T) {
	env := startNATS(t)
	// A server that accepts and then never says a word: the greeting must time out, and Run retry.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, conn)
		}
	}()
	o := env.options(ln.Addr().String())
	o.CommandTimeout = 200 * time.Millisecond
	r := runMailbox(t, o, env.Sink)
	waitFor(t, 5*time.Second, "down with a timeout", func() bool {
		h := r.mb.Health(context.Background())[0]
		return !h.OK && strings.Contains(h.Detail, "greeting")
	})
}

func TestPoisonMailIsQuarantinedAndDeadLettered(t *testing.T) {
	env := startNATS(t)
	srv := startMemServer(t, serverOpts{})
	c := dialIMAP(t, srv.Addr)
	appendRaw(t, c, "INBOX", fixtureMail(t, "mail-edge", "10-attachment-only.eml")) // 4.5 KB: too large below
	appendRaw(t, c, "INBOX", []byte("esto no es un correo\r\nni tiene encabezados\r\n"))
	appendRaw(t, c, "INBOX", synthMail(1))
	o := env.options(srv.Addr)
	o.MaxMessageBytes = 2000
	r := runMailbox(t, o, env.Sink)
	waitFor(t, 10*time.Second, "handled", func() bool { s := r.mb.Stats(); return s.Quarantined == 2 && s.Published == 1 })
	dl := dlqMessages(t, env)
	if len(dl) != 2 {
		t.Fatalf("%d dead letters, want 2", len(dl))
	}
	reasons := map[string]bool{}
	for _, m := range dl {
		if m.Subject != deadletter.Subject(deadletter.StageIMAP) || m.Header.Get(deadletter.HeaderStage) != "imap" || m.Header.Get(deadletter.HeaderOrigObject) == "" {
			t.Errorf("dead letter %s %v", m.Subject, m.Header)
		}
		reasons[strings.SplitN(m.Header.Get(deadletter.HeaderReason), ":", 2)[0]] = true
	}
	if !reasons[ReasonTooLarge] || !reasons[ReasonUnparseable] {
		t.Errorf("reasons %v", reasons)
	}
	waitFor(t, 5*time.Second, "quarantine folder", func() bool {
		return folderCount(t, c, "Cuarentena") == 2 && folderCount(t, c, "Procesados") == 1 && folderCount(t, c, "INBOX") == 0
	})
}

// TestIdlePush: with IDLE a new mail is taken in at once, not at the next poll.
func TestIdlePush(t *testing.T) {
	env := startNATS(t)
	srv := startMemServer(t, serverOpts{})
	c := dialIMAP(t, srv.Addr)
	o := env.options(srv.Addr)
	o.PollInterval, o.IdleRefresh = time.Hour, time.Hour // only the IDLE push can bring the mail in time
	r := runMailbox(t, o, env.Sink)
	waitFor(t, 5*time.Second, "idle", func() bool { return strings.Contains(r.mb.Health(context.Background())[0].Detail, "idle") })
	appendRaw(t, c, "INBOX", synthMail(1))
	waitFor(t, 30*time.Second, "pushed", func() bool { return env.inboundCount(t) == 1 })
}

// BenchmarkIdlePushLatency measures APPEND → published on CAU_INBOUND with IDLE (ns/op is the
// latency of one mail; the figure goes in the closing note, never in a test).
func BenchmarkIdlePushLatency(b *testing.B) {
	env := startNATS(b)
	srv := startMemServer(b, serverOpts{})
	c := dialIMAP(b, srv.Addr)
	o := env.options(srv.Addr)
	o.PollInterval, o.IdleRefresh = time.Hour, time.Hour
	r := runMailbox(b, o, env.Sink)
	waitFor(b, 5*time.Second, "idle", func() bool { return strings.Contains(r.mb.Health(context.Background())[0].Detail, "idle") })
	n := 0
	for b.Loop() {
		n++
		appendRaw(b, c, "INBOX", synthMail(n))
		waitFor(b, 30*time.Second, "pushed", func() bool { return env.inboundCount(b) == uint64(n) })
	}
}
