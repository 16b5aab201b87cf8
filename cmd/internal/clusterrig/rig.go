// Package clusterrig is what the multi-node test of cmd/caud and the cmd/clusterload harness share:
// an IMAP server in memory, the configuration of a caud replica on a cluster, a desk load that
// retries with its idempotency key the way a client should, a watch on a mailbox lease, and the
// count of what reached CAU_INBOUND. Everything listens on loopback.
package clusterrig

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/channels/natsjs/natscluster"
)

// Mailbox credentials of the in-memory IMAP server.
const (
	IMAPUser     = "cau@ipn.mx"
	IMAPPassword = "secret"
	MailboxName  = "cau"
)

// IMAP is an imapserver + imapmemserver on 127.0.0.1:0 with one user and its INBOX.
type IMAP struct {
	Addr string
	srv  *imapserver.Server
	mu   sync.Mutex
	cl   *imapclient.Client
}

// StartIMAP starts the server; Close stops it.
func StartIMAP() (*IMAP, error) {
	mem := imapmemserver.New()
	u := imapmemserver.NewUser(IMAPUser, IMAPPassword)
	if err := u.Create("INBOX", nil); err != nil {
		return nil, err
	}
	mem.AddUser(u)
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapUIDPlus: {}, imap.CapMove: {}},
		InsecureAuth: true,
		Logger:       log.New(io.Discard, "", 0),
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go func() { _ = srv.Serve(ln) }()
	m := &IMAP{Addr: ln.Addr().String(), srv: srv}
	if m.cl, err = imapclient.DialInsecure(m.Addr, nil); err != nil {
		_ = srv.Close()
		return nil, err
	}
	if err := m.cl.Login(IMAPUser, IMAPPassword).Wait(); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// Close stops the server.
func (m *IMAP) Close() {
	if m.cl != nil {
		_ = m.cl.Close()
	}
	_ = m.srv.Close()
}

// Append delivers a mail to INBOX.
func (m *IMAP) Append(raw []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	cmd := m.cl.Append("INBOX", int64(len(raw)), nil)
	if _, err := cmd.Write(raw); err != nil {
		return err
	}
	if err := cmd.Close(); err != nil {
		return err
	}
	_, err := cmd.Wait()
	return err
}

// Mail is a small distinct message: run and i make its Message-ID.
func Mail(run string, i int) []byte {
	return fmt.Appendf(nil, "From: Docente %d <docente%d@ipn.mx>\r\nTo: cau@ipn.mx\r\nSubject: Falla de correo %d\r\n"+
		"Message-ID: <%s-%d@clusterrig.ipn.mx>\r\nDate: Tue, 01 Dec 2026 10:00:00 -0600\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"+
		"Buenos días, no puedo entrar a mi correo institucional desde la mañana (caso %d).\r\n", i, i, i, run, i, i)
}

// ReplicaConfig is the YAML configuration of one caud replica on cluster c: R3 streams, the
// mailbox of imapAddr (none when ""), no memo spool, HTTP on a free loopback port.
func ReplicaConfig(c *natscluster.Cluster, dataDir, imapAddr string, leaseTTL time.Duration) string {
	y := fmt.Sprintf(`data_dir: %q
http: {listen: "127.0.0.1:0"}
log: {level: warn}
nats: {url: %q, replicas: 3, user: %q, password: %q, connect_timeout: 2s}
memo: {enabled: false}
triage: {ack_wait: 5s}
`, dataDir, c.URL(), c.User, c.Password)
	if imapAddr != "" {
		y += fmt.Sprintf(`imap:
  lease_ttl: %s
  mailboxes:
    - {name: %s, address: %s, host: %q, tls: insecure, password: %s}
`, leaseTTL, MailboxName, IMAPUser, imapAddr, IMAPPassword)
	}
	return y
}

// WriteReplicaConfig writes ReplicaConfig to dir/caud.yaml and returns its path.
func WriteReplicaConfig(dir string, c *natscluster.Cluster, imapAddr string, leaseTTL time.Duration) (string, error) {
	p := filepath.Join(dir, "caud.yaml")
	return p, os.WriteFile(p, []byte(ReplicaConfig(c, filepath.Join(dir, "data"), imapAddr, leaseTTL)), 0o600)
}

// LeaseChange is one new holder of the mailbox lease ("" when released) and when it was seen.
type LeaseChange struct {
	Holder string
	At     time.Time
}

// WatchLease follows the mailbox lease key until ctx ends and reports every change of holder.
func WatchLease(ctx context.Context, state jetstream.KeyValue, mailbox string) (<-chan LeaseChange, error) {
	w, err := state.Watch(ctx, "imap."+mailbox+".lease")
	if err != nil {
		return nil, err
	}
	out := make(chan LeaseChange, 64)
	go func() {
		defer close(out)
		last := "\x00"
		for e := range w.Updates() {
			if e == nil {
				continue
			}
			var l struct{ Holder string }
			if e.Operation() == jetstream.KeyValuePut {
				_ = json.Unmarshal(e.Value(), &l)
			}
			if l.Holder != last {
				last = l.Holder
				out <- LeaseChange{Holder: l.Holder, At: time.Now()}
			}
		}
	}()
	return out, nil
}

// DeskLoad is a set of clients posting desk requests, each with its own idempotency key, and
// retrying a failed attempt (a 5xx or a connection error) with the same key until it is answered
// 201 or 200, as the API asks clients to do.
type DeskLoad struct {
	// Targets are base URLs of caud replicas; client i starts on Targets[i%n] and moves to the
	// next target after a failure.
	Targets func() []string
	Clients int
	Run     string // prefix of the keys

	mu       sync.Mutex
	accepted map[string]string    // key → request id
	waiting  map[string]time.Time // key → first attempt, until accepted (or given up)
	at       map[string]time.Time // key → when it was accepted
	// Failures counts failed attempts (5xx or no answer), each retried with the same key.
	failures  int
	statuses  map[int]int
	okTimes   []time.Time
	started   time.Time
	stopped   time.Time
	maxLatest time.Duration
}

// Start runs the load until ctx ends; Wait returns when every client has finished its last
// request.
func (d *DeskLoad) Start(ctx context.Context) (wait func()) {
	d.accepted, d.waiting, d.at, d.statuses, d.started = map[string]string{}, map[string]time.Time{}, map[string]time.Time{}, map[int]int{}, time.Now()
	cl := &http.Client{Timeout: 15 * time.Second}
	var wg sync.WaitGroup
	for c := range d.Clients {
		wg.Go(func() {
			for n := 0; ctx.Err() == nil; n++ {
				key := fmt.Sprintf("%s-c%d-%d", d.Run, c, n)
				d.submit(ctx, cl, c, key)
			}
		})
	}
	return func() { wg.Wait(); d.stopped = time.Now() }
}

func (d *DeskLoad) submit(ctx context.Context, cl *http.Client, c int, key string) {
	body, _ := json.Marshal(map[string]string{"channel": "phone", "unit": "ESCOM", "role": "docente",
		"description": "No puedo entrar a mi correo institucional (" + key + ")", "idempotency_key": key})
	t0 := time.Now()
	d.mu.Lock()
	d.waiting[key] = t0
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.waiting, key)
		d.mu.Unlock()
	}()
	for attempt := 0; ; attempt++ {
		targets := d.Targets()
		base := targets[(c+attempt)%len(targets)]
		// The last request of a client is finished even after ctx ended: an accepted request whose
		// answer was lost must be retried, or the count would be wrong.
		resp, err := cl.Post(base+"/api/v1/requests", "application/json", bytes.NewReader(body))
		code := 0
		var out struct{ ID string }
		if err == nil {
			code = resp.StatusCode
			_ = json.NewDecoder(resp.Body).Decode(&out)
			_ = resp.Body.Close()
		}
		d.mu.Lock()
		d.statuses[code]++
		if code == 200 || code == 201 {
			d.accepted[key] = out.ID
			d.at[key] = time.Now()
			d.okTimes = append(d.okTimes, d.at[key])
			d.maxLatest = max(d.maxLatest, time.Since(t0))
			d.mu.Unlock()
			return
		}
		d.failures++
		d.mu.Unlock()
		if code >= 400 && code < 500 {
			return // a client error is final; counted in Statuses
		}
		if attempt > 200 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Accepted is how many keys were accepted so far.
func (d *DeskLoad) Accepted() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.accepted)
}

// WaitingSince is how many requests first sent before t are not answered 201 or 200 yet.
func (d *DeskLoad) WaitingSince(t time.Time) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, at := range d.waiting {
		if at.Before(t) {
			n++
		}
	}
	return n
}

// Result is what a DeskLoad measured.
type Result struct {
	Accepted   map[string]string
	AcceptedAt map[string]time.Time // key → when it was accepted
	Statuses   map[int]int          // HTTP status of every attempt (0: no answer)
	Failures   int                  // attempts that failed and were retried
	// MaxPause is the longest time without any accepted request between the first and the last.
	MaxPause time.Duration
	// PauseAfter is the longest gap after instant at (the moment a node was killed).
	PauseAfter func(at time.Time) time.Duration
	// Slowest is the longest time one request took to be accepted, retries included.
	Slowest  time.Duration
	Duration time.Duration
}

// Result summarises the load; call it after wait.
func (d *DeskLoad) Result() Result {
	d.mu.Lock()
	defer d.mu.Unlock()
	times := append([]time.Time(nil), d.okTimes...)
	r := Result{Accepted: maps.Clone(d.accepted), AcceptedAt: maps.Clone(d.at), Statuses: maps.Clone(d.statuses), Failures: d.failures, Slowest: d.maxLatest, Duration: d.stopped.Sub(d.started)}
	gap := func(from time.Time) time.Duration {
		var longest time.Duration
		prev := from
		for _, t := range times {
			if t.Before(from) {
				continue
			}
			longest = max(longest, t.Sub(prev))
			prev = t
		}
		return longest
	}
	if len(times) > 0 {
		r.MaxPause = gap(times[0])
	}
	r.PauseAfter = gap
	return r
}

// Count reads CAU_INBOUND and returns, per desk idempotency key and per mail Message-ID, how many
// requests carry it. A read that fails (a node just went away) is started over until ctx ends.
func Count(ctx context.Context, js jetstream.JetStream) (desk, mail map[string]int, err error) {
	return countStream(ctx, js, natsjs.StreamInbound, func(b []byte, r *channels.Request) error { return json.Unmarshal(b, r) })
}

// CountTriaged is Count over CAU_TRIAGED: how many triaged items carry each desk key and
// Message-ID.
func CountTriaged(ctx context.Context, js jetstream.JetStream) (desk, mail map[string]int, err error) {
	return countStream(ctx, js, natsjs.StreamTriaged, func(b []byte, r *channels.Request) error {
		item := struct {
			Request *channels.Request `json:"request"`
		}{r}
		return json.Unmarshal(b, &item)
	})
}

func countStream(ctx context.Context, js jetstream.JetStream, stream string, decode func([]byte, *channels.Request) error) (desk, mail map[string]int, err error) {
	for {
		desk, mail, err = count(ctx, js, stream, decode)
		if err == nil || ctx.Err() != nil {
			return desk, mail, err
		}
		select {
		case <-ctx.Done():
			return nil, nil, err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func count(ctx context.Context, js jetstream.JetStream, stream string, decode func([]byte, *channels.Request) error) (desk, mail map[string]int, err error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, nil, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, nil, err
	}
	desk, mail = map[string]int{}, map[string]int{}
	if info.State.Msgs == 0 {
		return desk, mail, nil
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, nil, err
	}
	for seen := uint64(0); seen < info.State.Msgs; {
		batch, err := c.FetchNoWait(500)
		if err != nil {
			return nil, nil, err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			var r channels.Request
			if err := decode(m.Data(), &r); err != nil {
				return nil, nil, fmt.Errorf("decode request: %w", err)
			}
			switch {
			case r.Source.IdempotencyKey != "":
				desk[r.Source.IdempotencyKey]++
			case r.Source.MessageID != "":
				mail[r.Source.MessageID]++
			}
		}
		if batch.Error() != nil {
			return nil, nil, batch.Error()
		}
		seen += uint64(n)
		if n == 0 {
			select {
			case <-ctx.Done():
				return nil, nil, ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return desk, mail, nil
}
