// Package search finds requests by id, SAI folio, requester (e-mail, handle, name), unit, queue,
// state, channel and arrival time, newest first, a page at a time: GET /api/v1/requests and, for the
// console in the same process, Index.Search.
//
// Each caud replica holds its own in-memory index, built at start from JetStream and kept current
// from it: the requests' immutable fields from CAU_INBOUND (an ordered consumer over the whole
// stream), their state, queue, folio and agent from KV cau_requests (a watch). Nothing is stored
// besides JetStream, so replicas agree within moments, and a restart rebuilds the index (about a
// second per 50,000 requests; see BenchmarkBuild). Memory is bounded by Options.MaxEntries.
package search

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/channels/retry"
	"github.com/ipn-cgsi/caud/config/fold"
)

// Options configures an Index. Zero values are documented defaults.
type Options struct {
	// MaxEntries bounds the index; past it the oldest requests are forgotten (and counted in
	// caud_search_evicted_total). 0 means 2,000,000 (about 600 MB at the sizes of real requests).
	MaxEntries int
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Summary is one request as a search lists it.
type Summary struct {
	ID         string    `json:"id"`
	Channel    string    `json:"channel"`
	ReceivedAt time.Time `json:"received_at"`
	Name       string    `json:"name,omitempty"`
	Email      string    `json:"email,omitempty"`
	Handle     string    `json:"handle,omitempty"`
	Unit       string    `json:"unit,omitempty"`
	Subject    string    `json:"subject,omitempty"`
	State      string    `json:"state"`
	Queue      string    `json:"queue,omitempty"`
	Folio      string    `json:"folio,omitempty"`
	Agent      string    `json:"agent,omitempty"`
	UpdatedAt  time.Time `json:"updated_at,omitzero"`
}

// Result is one page of a search.
type Result struct {
	Requests []Summary `json:"requests"`
	// Next continues the search (Query.Cursor); "" on the last page.
	Next string `json:"next,omitempty"`
}

// ErrNotReady is returned by Search until the index has caught up with JetStream once.
var ErrNotReady = errors.New("search index is still loading")

// entry is one indexed request. Folded fields are lowercased and accent-free for matching.
type entry struct {
	Summary
	hasRequest bool
	fEmail     string
	fHandle    string
	fUnit      string
	fFolio     string
	nameWords  []string
	lead       string // the folded start of the request's text
	text       string // folded id, folio, name, e-mail, handle, unit, subject and lead, for q
	sig        sig    // trigrams of text
}

// Index is the search index. Safe for concurrent use: one writer (Run), any number of searches.
type Index struct {
	h   *natsjs.Handles
	o   Options
	log *slog.Logger

	mu    sync.RWMutex
	byID  map[string]*entry
	order []*entry // entries with a request, by id (= arrival) ascending
	// byEmail and byHandle narrow the most common exact searches.
	byEmail  map[string][]*entry
	byHandle map[string][]*entry
	byFolio  map[string][]*entry
	// inboundSeq is the last CAU_INBOUND sequence indexed.
	inboundSeq uint64

	inboundReady, stateReady atomic.Bool
	ready                    chan struct{}
	readyOnce                sync.Once

	m struct {
		entries prometheus.GaugeFunc
		evicted prometheus.Counter
		errors  prometheus.Counter
	}
}

// New returns an empty index over h; Run fills it.
func New(h *natsjs.Handles, o Options) *Index {
	if o.MaxEntries == 0 {
		o.MaxEntries = 2_000_000
	}
	log := channels.OrDiscard(o.Logger)
	x := &Index{
		h: h, o: o, log: log,
		byID: map[string]*entry{}, byEmail: map[string][]*entry{}, byHandle: map[string][]*entry{}, byFolio: map[string][]*entry{},
		ready: make(chan struct{}),
	}
	x.m.entries = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "caud_search_entries", Help: "Requests in this replica's search index."},
		func() float64 { x.mu.RLock(); defer x.mu.RUnlock(); return float64(len(x.order)) })
	x.m.evicted = prometheus.NewCounter(prometheus.CounterOpts{Name: "caud_search_evicted_total", Help: "Oldest requests dropped from the search index to stay within its bound."})
	x.m.errors = prometheus.NewCounter(prometheus.CounterOpts{Name: "caud_search_feed_errors_total", Help: "Errors reading JetStream into the search index (retried)."})
	if o.Registerer != nil {
		o.Registerer.MustRegister(x.m.entries, x.m.evicted, x.m.errors)
	}
	return x
}

// Ready is closed once the index has read every request and state that existed when Run started.
func (x *Index) Ready() <-chan struct{} { return x.ready }

func (x *Index) checkReady() {
	if x.inboundReady.Load() && x.stateReady.Load() {
		x.readyOnce.Do(func() {
			x.mu.RLock()
			n := len(x.order)
			x.mu.RUnlock()
			x.log.Info("search index loaded", "requests", n)
			close(x.ready)
		})
	}
}

// Run feeds the index from JetStream until ctx ends, then returns nil. Read errors are logged and
// retried; the ordered consumer and the watch resume where they were.
func (x *Index) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { x.retry(ctx, "inbound", x.feedInbound) })
	wg.Go(func() { x.retry(ctx, "state", x.feedState) })
	wg.Wait()
	return nil
}

func (x *Index) retry(ctx context.Context, what string, feed func(context.Context) error) {
	b := retry.Policy{Initial: 200 * time.Millisecond, Max: 10 * time.Second}.Start()
	for ctx.Err() == nil {
		err := feed(ctx)
		if ctx.Err() != nil {
			return
		}
		x.m.errors.Inc()
		wait := b.Next()
		x.log.Warn("search index feed", "feed", what, "err", err, "retry_in", wait)
		retry.Sleep(ctx, wait)
	}
}

// feedInbound reads CAU_INBOUND from the first message (after a failure: from the next one not yet
// indexed) and indexes each request's immutable fields.
func (x *Index) feedInbound(ctx context.Context) error {
	info, err := x.h.Inbound.Info(ctx)
	if err != nil {
		return fmt.Errorf("inbound info: %w", err)
	}
	target := info.State.LastSeq
	var last uint64
	x.mu.RLock()
	last = x.inboundSeq
	x.mu.RUnlock()
	if last >= target || info.State.Msgs == 0 {
		x.inboundReady.Store(true)
		x.checkReady()
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{natsjs.SubjectInboundPrefix + ">"}}
	if last > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, last+1
	}
	c, err := x.h.JS.OrderedConsumer(ctx, natsjs.StreamInbound, cfg)
	if err != nil {
		return fmt.Errorf("inbound consumer: %w", err)
	}
	it, err := c.Messages(jetstream.PullMaxMessages(1024))
	if err != nil {
		return fmt.Errorf("inbound messages: %w", err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer it.Stop()
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("inbound next: %w", err)
		}
		md, err := m.Metadata()
		if err != nil {
			continue
		}
		x.addRequest(m.Data(), md.Sequence.Stream)
		if md.Sequence.Stream >= target || md.NumPending == 0 {
			x.inboundReady.Store(true)
			x.checkReady()
		}
	}
}

// feedState watches KV cau_requests (request ids only) and indexes each request's state.
func (x *Index) feedState(ctx context.Context) error {
	w, err := x.h.Requests.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch requests: %w", err)
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("watch requests: closed")
			}
			if e == nil {
				x.stateReady.Store(true)
				x.checkReady()
				continue
			}
			if e.Operation() != jetstream.KeyValuePut || !isID(e.Key()) {
				continue
			}
			var st natsjs.RequestState
			if json.Unmarshal(e.Value(), &st) == nil {
				x.setState(e.Key(), st)
			}
		}
	}
}

func isID(s string) bool {
	if len(s) != ulid.EncodedSize {
		return false
	}
	_, err := ulid.ParseStrict(s)
	return err == nil
}

// inboundHead is the part of a request the index keeps.
type inboundHead struct {
	ID         string    `json:"id"`
	Channel    string    `json:"channel"`
	ReceivedAt time.Time `json:"received_at"`
	Subject    string    `json:"subject"`
	Text       string    `json:"text"`
	Requester  struct {
		Name   string  `json:"name"`
		Email  string  `json:"email"`
		Handle *string `json:"handle"`
		Unit   string  `json:"unit"`
	} `json:"requester"`
}

// maxIndexedSubject bounds the part of a subject kept for display and q.
const maxIndexedSubject = 200

func (x *Index) addRequest(data []byte, seq uint64) {
	var r inboundHead
	if json.Unmarshal(data, &r) != nil || !isID(r.ID) {
		x.mu.Lock()
		x.inboundSeq = max(x.inboundSeq, seq)
		x.mu.Unlock()
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.inboundSeq = max(x.inboundSeq, seq)
	e := x.byID[r.ID]
	if e == nil {
		e = &entry{Summary: Summary{ID: r.ID, State: natsjs.StateReceived}}
		x.byID[r.ID] = e
	}
	if e.hasRequest {
		return // a replayed dead letter: same request, same fields
	}
	e.hasRequest = true
	e.Channel, e.ReceivedAt, e.Name, e.Email, e.Unit = r.Channel, r.ReceivedAt.UTC(), clip(r.Requester.Name), clip(r.Requester.Email), clip(r.Requester.Unit)
	e.Subject = clip(r.Subject)
	e.lead = fold.Loose(squeeze(r.Text, maxLead))
	if r.Requester.Handle != nil {
		e.Handle = clip(strings.TrimLeft(*r.Requester.Handle, "@"))
	}
	e.fEmail, e.fHandle, e.fUnit = fold.Loose(e.Email), fold.Loose(e.Handle), fold.Loose(e.Unit)
	e.nameWords = words(fold.Loose(e.Name))
	e.refreshText()
	if e.fEmail != "" {
		x.byEmail[e.fEmail] = append(x.byEmail[e.fEmail], e)
	}
	if e.fHandle != "" {
		x.byHandle[e.fHandle] = append(x.byHandle[e.fHandle], e)
	}
	x.insert(e)
	for len(x.order) > x.o.MaxEntries {
		x.evictOldest()
	}
}

// maxLead is how much of a request's text q searches (bytes): enough for what a phone or desk
// request says, bounded so the index stays small.
const maxLead = 300

func clip(s string) string { return clipTo(s, maxIndexedSubject) }

func clipTo(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// squeeze returns the start of s with every run of white space made one space, at most n bytes
// (whole runes).
func squeeze(s string, n int) string {
	var b strings.Builder
	b.Grow(min(len(s), n))
	space := false
	for _, r := range s {
		if unicode.IsSpace(r) {
			space = b.Len() > 0
			continue
		}
		sep := 0
		if space {
			sep = 1
		}
		if b.Len()+sep+utf8.RuneLen(r) > n {
			break
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(r)
	}
	return b.String()
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }

func (e *entry) refreshText() {
	e.text = strings.Join([]string{strings.ToLower(e.ID), e.fFolio, fold.Loose(e.Name), e.fEmail, e.fHandle, e.fUnit, fold.Loose(e.Subject), e.lead}, " ")
	e.sig = sigOf(e.text)
}

// insert places e in order; requests almost always arrive in id order, so this is an append.
func (x *Index) insert(e *entry) {
	n := len(x.order)
	if n == 0 || x.order[n-1].ID < e.ID {
		x.order = append(x.order, e)
		return
	}
	i, _ := slices.BinarySearchFunc(x.order, e.ID, func(a *entry, id string) int { return strings.Compare(a.ID, id) })
	x.order = slices.Insert(x.order, i, e)
}

func (x *Index) evictOldest() {
	e := x.order[0]
	x.order[0] = nil
	x.order = x.order[1:]
	delete(x.byID, e.ID)
	x.byEmail[e.fEmail] = remove(x.byEmail[e.fEmail], e)
	x.byHandle[e.fHandle] = remove(x.byHandle[e.fHandle], e)
	x.byFolio[e.fFolio] = remove(x.byFolio[e.fFolio], e)
	x.m.evicted.Inc()
}

func remove(list []*entry, e *entry) []*entry {
	if i := slices.Index(list, e); i >= 0 {
		list = slices.Delete(list, i, i+1)
	}
	return list
}

func (x *Index) setState(id string, st natsjs.RequestState) {
	x.mu.Lock()
	defer x.mu.Unlock()
	e := x.byID[id]
	if e == nil {
		if len(x.byID) > 2*x.o.MaxEntries {
			return // states of requests long forgotten
		}
		e = &entry{Summary: Summary{ID: id}}
		x.byID[id] = e
	}
	e.State, e.Queue, e.Agent, e.UpdatedAt = st.State, st.Queue, st.Agent, st.UpdatedAt
	if f := fold.Loose(strings.TrimSpace(st.Folio)); f != e.fFolio {
		if e.fFolio != "" {
			x.byFolio[e.fFolio] = remove(x.byFolio[e.fFolio], e)
		}
		e.Folio, e.fFolio = st.Folio, f
		if f != "" {
			x.byFolio[f] = append(x.byFolio[f], e)
		}
		e.refreshText()
	}
}

// Search answers one page of q, newest first. Until the index has loaded it waits for it within ctx
// and then returns ErrNotReady.
func (x *Index) Search(ctx context.Context, q Query) (Result, error) {
	select {
	case <-x.ready:
	case <-ctx.Done():
		return Result{}, ErrNotReady
	}
	limit := q.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)
	m := compile(q)
	x.mu.RLock()
	defer x.mu.RUnlock()
	out := Result{Requests: []Summary{}}
	emit := func(e *entry) bool {
		if len(out.Requests) == limit {
			out.Next = out.Requests[limit-1].ID
			return false
		}
		out.Requests = append(out.Requests, e.Summary)
		return true
	}
	// A narrow candidate list when an exact criterion has one, else the whole index.
	var cands []*entry
	narrowed := true
	switch {
	case q.ID != "":
		if e := x.byID[q.ID]; e != nil && e.hasRequest {
			cands = []*entry{e}
		}
	case m.email != "":
		cands = x.byEmail[m.email]
	case m.handle != "":
		cands = x.byHandle[m.handle]
	case m.folio != "":
		cands = x.byFolio[m.folio]
	default:
		narrowed = false
	}
	if narrowed {
		cands = slices.Clone(cands)
		slices.SortFunc(cands, func(a, b *entry) int { return strings.Compare(a.ID, b.ID) })
	} else {
		cands = x.order
	}
	// Start below the cursor, and at the upper end of the date range: ids start with their time.
	byID := func(a *entry, id string) int { return strings.Compare(a.ID, id) }
	hi := len(cands)
	if q.Cursor != "" {
		hi, _ = slices.BinarySearchFunc(cands, q.Cursor, byID)
	}
	if !q.To.IsZero() {
		// Every channel stamps the id with the arrival time, so nothing at or after To sorts
		// below the id of To plus the margin.
		var bound ulid.ULID
		if bound.SetTime(ulid.Timestamp(q.To.Add(idMargin))) == nil {
			j, _ := slices.BinarySearchFunc(cands, bound.String(), byID)
			hi = min(hi, j)
		}
	}
	for i := hi - 1; i >= 0; i-- {
		e := cands[i]
		if !m.match(e) {
			if m.belowRange(e) {
				break
			}
			continue
		}
		if !emit(e) {
			break
		}
	}
	return out, nil
}

// matcher is a compiled Query.
type matcher struct {
	q                          Query
	email, handle, folio, unit string
	name, text                 []string
	textSig                    sig // trigrams of every q word
}

func compile(q Query) matcher {
	m := matcher{
		q: q, email: fold.Loose(q.Email), handle: fold.Loose(q.Handle), folio: fold.Loose(q.Folio), unit: fold.Loose(q.Unit),
		name: words(fold.Loose(q.Name)), text: words(fold.Loose(q.Text)),
	}
	for _, w := range m.text {
		ws := sigOf(w)
		for i := range ws {
			m.textSig[i] |= ws[i]
		}
	}
	return m
}

// belowRange reports whether e, and so everything older, arrived before the range. Arrival times
// follow ids only roughly (a channel may stamp a request it read late), so a margin is kept.
func (m matcher) belowRange(e *entry) bool {
	return !m.q.From.IsZero() && e.ReceivedAt.Before(m.q.From.Add(-idMargin))
}

// idMargin is how far a request's arrival time may be from the time in its id, for the range
// shortcuts; channels stamp both from one clock reading, so a day is generous.
const idMargin = 24 * time.Hour

func (m matcher) match(e *entry) bool {
	q := m.q
	switch {
	case !e.hasRequest:
		return false
	case q.ID != "" && e.ID != q.ID:
		return false
	case m.email != "" && e.fEmail != m.email:
		return false
	case m.handle != "" && e.fHandle != m.handle:
		return false
	case m.folio != "" && e.fFolio != m.folio:
		return false
	case m.unit != "" && e.fUnit != m.unit:
		return false
	case q.Queue != "" && e.Queue != q.Queue:
		return false
	case q.State != "" && e.State != q.State:
		return false
	case q.Channel != "" && e.Channel != q.Channel:
		return false
	case !q.From.IsZero() && e.ReceivedAt.Before(q.From):
		return false
	case !q.To.IsZero() && !e.ReceivedAt.Before(q.To):
		return false
	}
	for _, w := range m.name {
		if !slices.ContainsFunc(e.nameWords, func(n string) bool { return strings.HasPrefix(n, w) }) {
			return false
		}
	}
	if !e.sig.covers(&m.textSig) {
		return false
	}
	for _, w := range m.text {
		if !strings.Contains(e.text, w) {
			return false
		}
	}
	return true
}
