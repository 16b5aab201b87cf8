package triage

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/ipn-cgsi/caud/config/fold"
)

// Document kinds: what a scored candidate stands for.
const (
	docService = iota
	docInformativo
	docTarget
)

// Term roles: how a matched term contributes.
const (
	roleKeyword = iota
	rolePhraseToken
	rolePhrase
	roleNegative
	roleFalla
	roleServicio
)

// Matching gaps: how many other tokens may sit between the words of a multi-word term or a phrase.
const (
	termGap   = 1
	phraseGap = 2
	// maxTextRunes bounds the work on huge inputs (a pasted log, a scanned book).
	maxTextRunes = 20000
	// minTypoLen is the length from which a stem may differ by one edit from a catalog stem.
	minTypoLen = 5
	// zoneSep separates the subject from the body in the token stream.
	zoneSep = -2
)

// doc is one scored candidate: an SAI service, the informativo scope or an orientation target.
type doc struct {
	kind  int
	index int // into Catalog services or out_of_scope
	area  string
	label string
	fixed string // fixed kind, if any
}

// posting links a term to a candidate (or to a kind) with a weight.
type posting struct {
	doc    int // -1 for kind cues
	role   int
	weight float64
	text   string // as the operator wrote it, for explanations
}

// term is a compiled keyword: a sequence of stem ids.
type term struct {
	ids      []int32
	gap      int
	idf      float64
	postings []posting
}

// Engine decides the triage of requests from a compiled catalog. It is immutable after NewEngine
// and safe for concurrent use by any number of goroutines.
type Engine struct {
	cat       *Catalog
	th        Thresholds
	vocab     map[string]int32   // stem → id
	stems     []string           // id → stem
	deletes   map[string][]int32 // stem with one rune deleted → ids, for typo tolerance
	starts    [][]int32          // stem id → terms starting with it
	terms     []term
	docs      []doc
	stop      map[string]bool
	scratch   sync.Pool
	cache     sync.Map // folded word → stem id (int32), see lookup
	cached    atomic.Int64
	stemMemo  sync.Map // folded word → its stem (string), see stemOf
	stemmed   atomic.Int64
	nb        *learned
	cal       *calibration // nil: the uncalibrated confidence
	offerDoc  int          // the orientation target for unsolicited offers (-1: none)
	verifyDoc int          // the service asked "is this message genuine?" (-1: none)
	model     *Model
	version   string
	bg        map[string][]bgPost // background evidence of words the catalog does not know
	kindm     *kindModel          // learned reading of falla vs servicio (kindmodel.go)
	// offices are the stems that name an orientation target's office or the target itself
	// ("biblioteca", "capital humano"): in a place phrase they count placeWeight for targets.
	offices map[int32]bool
	// scale multiplies the evidence thresholds (evidenceScale).
	scale float64
}

// evidenceScale is the factor by which a terse catalog's evidence thresholds are lowered. The
// thresholds are in score units, and a candidate described by a few keywords and phrases
// collects far less score from a request than one with hundreds of examples: the same min_score
// would send most requests of a terse catalog to aclaracion. With texts training texts over docs
// candidates, the factor is sqrt(texts per candidate / denseCatalog), between minScale and 1.
func evidenceScale(texts, docs int) float64 {
	if docs == 0 {
		return 1
	}
	return min(1, max(minScale, math.Sqrt(float64(texts)/float64(docs)/denseCatalog)))
}

// NewEngine compiles a catalog into an engine and trains its learned component from the catalog's
// keywords, phrases and examples. The catalog must come from ParseCatalog (or DefaultCatalog);
// NewEngine does not fail.
func NewEngine(c *Catalog) *Engine { return NewEngineWithModel(c, nil) }

// NewEngineWithModel is NewEngine with the agents' corrections of m (nil: none) as extra training
// examples. Decisions then carry catalog_version "<catalog version>+m.<model version>".
func NewEngineWithModel(c *Catalog, m *Model) *Engine {
	e := &Engine{cat: c, th: c.f.Thresholds, vocab: map[string]int32{}, deletes: map[string][]int32{}, model: m}
	e.version = c.Version()
	if m != nil {
		e.version += "+m." + m.Version
	}
	e.stop = stopwords
	if len(c.f.Stopwords) > 0 {
		e.stop = make(map[string]bool, len(stopwords)+len(c.f.Stopwords))
		for w := range stopwords {
			e.stop[w] = true
		}
		for _, w := range c.f.Stopwords {
			e.stop[fold.String(strings.TrimSpace(w))] = true
		}
	}
	termIdx := map[string]int{}
	add := func(text string, gap int, p posting) {
		stems := e.analyze(text)
		if len(stems) == 0 {
			return
		}
		key := fmt.Sprint(gap, stems)
		i, ok := termIdx[key]
		if !ok {
			ids := make([]int32, len(stems))
			for k, s := range stems {
				ids[k] = e.intern(s)
			}
			i = len(e.terms)
			termIdx[key] = i
			e.terms = append(e.terms, term{ids: ids, gap: gap})
		}
		// Words sharing a stem ("curso", "cursos") must not count twice for one candidate.
		for k, q := range e.terms[i].postings {
			if q.doc == p.doc && q.role == p.role {
				if p.weight > q.weight {
					e.terms[i].postings[k] = p
				}
				return
			}
		}
		e.terms[i].postings = append(e.terms[i].postings, p)
	}
	addDoc := func(d doc, kw, neg []Term, phrases []string) {
		di := len(e.docs)
		e.docs = append(e.docs, d)
		own := map[string]bool{}
		for _, t := range kw {
			add(t.Text, termGap, posting{doc: di, role: roleKeyword, weight: t.Weight, text: t.Text})
			for _, s := range e.analyze(t.Text) {
				own[s] = true
			}
		}
		for _, t := range neg {
			w := t.Weight
			if w == 1 {
				w = e.th.NegativeWeight
			}
			add(t.Text, termGap, posting{doc: di, role: roleNegative, weight: w, text: t.Text})
		}
		for _, ph := range phrases {
			add(ph, phraseGap, posting{doc: di, role: rolePhrase, weight: e.th.PhraseBonus, text: ph})
			// Words of example phrases are weak evidence on their own.
			for _, w := range words(fold.String(ph)) {
				if e.stop[w] {
					continue
				}
				if s := stem(w); !own[s] && len(s) > 2 {
					own[s] = true
					add(w, termGap, posting{doc: di, role: rolePhraseToken, weight: defaultPhraseTokenWeight, text: w})
				}
			}
		}
	}
	for i, s := range c.f.Services {
		addDoc(doc{kind: docService, index: i, area: s.Area, label: s.Name, fixed: s.Kind}, s.Keywords, s.Negative, s.Phrases)
	}
	in := c.f.Informativo
	addDoc(doc{kind: docInformativo, label: in.Name, fixed: in.Kind}, in.Keywords, in.Negative, in.Phrases)
	for i, t := range c.f.OutOfScope {
		addDoc(doc{kind: docTarget, index: i, area: t.Target, label: t.Target}, t.Keywords, t.Negative, t.Phrases)
	}
	for _, t := range c.f.Kind.Falla {
		add(t.Text, termGap, posting{doc: -1, role: roleFalla, weight: t.Weight, text: t.Text})
	}
	for _, t := range c.f.Kind.Servicio {
		add(t.Text, termGap, posting{doc: -1, role: roleServicio, weight: t.Weight, text: t.Text})
	}

	e.offices = map[int32]bool{}
	for _, t := range c.f.OutOfScope {
		for _, st := range e.analyze(t.Office + " " + strings.ReplaceAll(t.Target, "_", " ")) {
			if len(st) > 2 {
				e.offices[e.intern(st)] = true
			}
		}
	}
	texts := e.trainingTexts(c, m)
	e.nb = e.train(texts)
	e.bg = e.buildBackground(backgroundAssociations())
	e.kindm = learnedKind()
	e.offerDoc = offerTarget(e.docs, texts)
	defer func() { e.cal = e.calibrate(texts) }() // after the matcher is complete
	e.verifyDoc = verifyTarget(e.docs, texts)
	e.scale = evidenceScale(len(texts), len(e.docs))

	// BM25-style idf over candidates, normalized so that a term unique to one candidate weighs 1.
	n := float64(len(e.docs))
	maxIDF := math.Log(1 + (n-1+0.5)/(1+0.5))
	for i := range e.terms {
		t := &e.terms[i]
		seen := map[int]bool{}
		for _, p := range t.postings {
			if p.doc >= 0 && (p.role == roleKeyword || p.role == rolePhraseToken) {
				seen[p.doc] = true
			}
		}
		df := float64(max(len(seen), 1))
		t.idf = math.Log(1+(n-df+0.5)/(df+0.5)) / maxIDF
	}
	e.starts = make([][]int32, len(e.vocab))
	for i, t := range e.terms {
		e.starts[t.ids[0]] = append(e.starts[t.ids[0]], int32(i))
	}
	for s, id := range e.vocab {
		if utf8.RuneCountInString(s) >= minTypoLen {
			forDeletes(s, func(d string) { e.deletes[d] = appendUnique(e.deletes[d], id) })
		}
	}
	e.scratch.New = func() any { return &scratch{} }
	return e
}

func appendUnique(s []int32, v int32) []int32 {
	if slices.Contains(s, v) {
		return s
	}
	return append(s, v)
}

// forDeletes calls f with every string obtained by deleting one rune of s.
func forDeletes(s string, f func(string)) {
	for i, r := range s {
		f(s[:i] + s[i+utf8.RuneLen(r):])
	}
}

func (e *Engine) intern(s string) int32 {
	if id, ok := e.vocab[s]; ok {
		return id
	}
	id := int32(len(e.vocab))
	e.vocab[s] = id
	e.stems = append(e.stems, s)
	return id
}

// analyze is the package analyze with the catalog's extra stopwords.
func (e *Engine) analyze(s string) []string {
	var out []string
	for _, w := range words(fold.String(s)) {
		if e.stop[w] {
			continue
		}
		out = append(out, stem(w))
	}
	return out
}

// Catalog returns the catalog the engine was compiled from.
func (e *Engine) Catalog() *Catalog { return e.cat }

// scratch holds per-call buffers, pooled to keep Decide light on allocation.
type scratch struct {
	kindBuf     []string        // features of one clause for the learned kind reading
	bgSeen      map[string]bool // background: stems already counted
	bgSum       []float64       // background evidence by candidate
	bgTop       []hit           // strongest background word by candidate
	ids         []int32
	zone        []float32
	cl          []int16 // clause of each token
	clauses     clauseList
	clauseWords [][]string
	parts       []string
	words       []string
	nbtf        map[uint64]float64
	nbKeys      []uint64
	toks        []string  // folded word of each entry of ids ("" for separators)
	place       []float32 // weight of each entry of ids for an orientation target (placeMask)
	tfT         map[int32]float64
	nbtfT       map[uint64]float64
	ngtfT       map[string]float64
	ngtf        map[string]float64
	ngWords     []string         // words in order of first occurrence, for the n-gram evidence
	ngKnown     []bool           // whether the word model knows each of ngWords
	ngAt        []int16          // clause of the first occurrence of each of ngWords
	nbAt        []termClause     // clause of the strongest occurrence of each of nbKeys
	nbIdx       map[uint64]int32 // index in nbKeys
	attr        []attribution    // learned evidence by candidate and clause
	bfalla      float64          // built-in Spanish reading: malfunction statements, weighted by clause
	bfTop       float64          // the strongest single clause's malfunction statement
	bserv       float64          // built-in: requests, questions, verifications
	bfCue       int              // clause that stated the strongest fault (-1 none)
	bsCue       int              // clause that made the strongest request (-1 none)
	status      bool             // a main clause asks for the status of an earlier request
	offer       int              // markers of an unsolicited commercial offer
	tf          map[int32]float64
	keys        []int32
	scores      []float64
	hits        [][]hit
	falla       float64
	serv        float64
	cues        []hit
	tcl         map[int32]termClause // term → clause of its strongest occurrence
	raw         *[3]float64          // confidence features of the last decision
	rawBuf      [3]float64
	nbHits      []float64 // learned evidence per candidate
	nbTop       []hit     // strongest learned feature per candidate
}

type hit struct {
	term   int32
	weight float64 // contribution
	text   string
	clause int16 // where it was found (-1 unknown)
}

// tokens reads the request clause by clause (see clause.go) and fills s.ids/s.zone with the stem
// ids of its words, each weighted by its clause (and by SubjectWeight in the subject), and
// s.clauses with what each clause says. Unknown words get id -1 so that they still separate terms;
// clauses are separated by zoneSep, so no term spans two of them. It returns the number of content
// words of the subject and the requester's own text.
func (e *Engine) tokens(s *scratch, in Input) int {
	s.ids, s.zone, s.cl, s.toks, s.place = s.ids[:0], s.zone[:0], s.cl[:0], s.toks[:0], s.place[:0]
	s.clauses = s.clauses[:0]
	body := in.Text
	if len(body) > 4*maxTextRunes {
		body = body[:4*maxTextRunes]
	}
	own, quoted := splitBody(body)
	own, quoted = dropMentions(own), dropMentions(quoted)
	add := func(text string, subject, isQuoted bool) {
		if len(text) > maxTextRunes {
			text = text[:maxTextRunes]
		}
		s.parts = splitClauses(text, s.parts[:0])
		for _, p := range s.parts {
			ci := clauseInfo{text: p, subject: subject}
			s.words = splitJoined(words(fold.String(p)))
			classify(&ci, s.words)
			ci.report = isReport(s.words)
			if isQuoted {
				ci.role = roleQuoted
			}
			s.clauses = append(s.clauses, ci)
			s.clauseWords = append(s.clauseWords[:len(s.clauses)-1], s.words)
		}
	}
	add(dropMentions(in.Subject), true, false)
	add(own, false, false)
	add(quoted, false, true)
	attachedFrom := len(s.clauses)
	attached := float32(1)
	if in.Attachments != "" {
		add(in.Attachments, false, false)
		if e.ownWords(s, attachedFrom) >= attachmentFullBelow {
			attached = AttachmentWeight
		}
	}
	weighClauses(s.clauses)
	content := 0
	for k := range s.clauses {
		c := &s.clauses[k]
		zone := float32(c.weight)
		if c.subject {
			zone *= float32(e.th.SubjectWeight)
		}
		if k >= attachedFrom {
			zone *= attached
		}
		mask := placeMask(s.clauseWords[k], c.falla >= placeFault, e.stop)
		for j, w := range s.clauseWords[k] {
			if e.stop[w] {
				continue
			}
			if c.role != roleQuoted {
				content++
			}
			id := e.lookup(w)
			pw := float32(1)
			if mask != nil && mask[j] && id >= 0 && e.offices[id] {
				pw = placeWeight
			}
			s.ids = append(s.ids, id)
			s.toks = append(s.toks, w)
			s.place = append(s.place, pw)
			s.zone = append(s.zone, zone)
			s.cl = append(s.cl, int16(min(k, 1<<14)))
		}
		s.ids = append(s.ids, zoneSep) // clauses never join into one term
		s.toks = append(s.toks, "")
		s.place = append(s.place, 1)
		s.zone = append(s.zone, zone)
		s.cl = append(s.cl, int16(min(k, 1<<14)))
	}
	return content
}

// AttachmentWeight multiplies the words of attachment text when the requester's own text (subject
// and body) has at least attachmentFullBelow content words: what a person wrote decides first.
const (
	AttachmentWeight    = 0.5
	attachmentFullBelow = 8
)

// ownWords counts the content words of the first n clauses that are not quoted history.
func (e *Engine) ownWords(s *scratch, n int) int {
	words := 0
	for k := range n {
		if s.clauses[k].role == roleQuoted {
			continue
		}
		for _, w := range s.clauseWords[k] {
			if !e.stop[w] {
				words++
			}
		}
	}
	return words
}

// gluedPrefixes are short function words written together with the next word in a hurry
// ("micorreo", "elinternet", "lacontraseña").
var gluedPrefixes = []string{"mis", "mi", "tus", "tu", "sus", "su", "los", "las", "el", "la", "al", "del", "de", "en", "un", "una", "no", "me", "se", "le", "lo"}

// unglue splits an unknown word w into a glued function word and a catalog word, returning the
// catalog word's stem id, or -1. The rest must be a catalog stem exactly (no typo
// tolerance: "sucursal" is not "su" + a misspelt "cursal").
func (e *Engine) unglue(w string) int32 {
	for _, p := range gluedPrefixes {
		if rest, ok := strings.CutPrefix(w, p); ok && len(rest) >= 4 && !e.stop[rest] {
			if id, ok := e.vocab[stem(rest)]; ok {
				return id
			}
		}
	}
	return -1
}

// maxCachedWords bounds the memory of the word cache of an engine (about 100 bytes a word).
const maxCachedWords = 100000

// lookup maps a folded word to a catalog stem id, tolerating one edit on longer stems. Results are
// memoized per engine: Snowball stemming dominates the cost of Decide and request vocabulary repeats.
func (e *Engine) lookup(w string) int32 {
	if v, ok := e.cache.Load(w); ok {
		return v.(int32)
	}
	id := e.lookupSlow(w)
	if e.cached.Load() < maxCachedWords {
		if _, loaded := e.cache.LoadOrStore(w, id); !loaded {
			e.cached.Add(1)
		}
	}
	return id
}

// stemOf is stem, memoized per engine like lookup (Snowball dominates the cost of Decide).
func (e *Engine) stemOf(w string) string {
	if v, ok := e.stemMemo.Load(w); ok {
		return v.(string)
	}
	st := stem(w)
	if e.stemmed.Load() < maxCachedWords {
		if _, loaded := e.stemMemo.LoadOrStore(w, st); !loaded {
			e.stemmed.Add(1)
		}
	}
	return st
}

func (e *Engine) lookupSlow(w string) int32 {
	if id := e.lookupWord(w); id >= 0 {
		return id
	}
	return e.unglue(w)
}

func (e *Engine) lookupWord(w string) int32 {
	if !e.mayMatch(w) {
		return -1
	}
	st := stem(w)
	if id, ok := e.vocab[st]; ok {
		return id
	}
	if utf8.RuneCountInString(st) < minTypoLen {
		return -1
	}
	// One extra rune in the text, one missing, or one substituted.
	if ids := e.deletes[st]; len(ids) == 1 {
		return ids[0]
	}
	best := int32(-1)
	for i, r := range st {
		d := st[:i] + st[i+utf8.RuneLen(r):]
		if id, ok := e.vocab[d]; ok {
			return id
		}
		if best >= 0 {
			continue
		}
		// A substitution is accepted only between letters people confuse in Spanish.
		for _, id := range e.deletes[d] {
			c := e.stems[id]
			if len(c) < i+1 {
				continue
			}
			cr, _ := utf8.DecodeRuneInString(c[i:])
			if c[:i] == st[:i] && confusable(r, cr) {
				best = id
				break
			}
		}
	}
	return best
}

// confusable reports whether a and b are letters commonly swapped in Spanish writing.
func confusable(a, b rune) bool {
	if a > b {
		a, b = b, a
	}
	switch [2]rune{a, b} {
	case [2]rune{'n', 'ñ'}, [2]rune{'c', 's'}, [2]rune{'s', 'z'}, [2]rune{'c', 'z'}, [2]rune{'b', 'v'},
		[2]rune{'i', 'y'}, [2]rune{'c', 'k'}, [2]rune{'g', 'j'}, [2]rune{'q', 'k'}:
		return true
	}
	return false
}

// mayMatch is a cheap filter before stemming, which dominates the cost of Decide. On folded text a
// Snowball stem is a prefix of its word, so a word can only reach a catalog stem if one of its
// prefixes is a stem, or is one edit away from a stem (the deletes index).
func (e *Engine) mayMatch(w string) bool {
	if len(w) <= 2 {
		_, ok := e.vocab[w]
		return ok
	}
	for k := 3; k <= len(w); k++ {
		p := w[:k]
		if _, ok := e.vocab[p]; ok {
			return true
		}
		if k >= minTypoLen-1 {
			if _, ok := e.deletes[p]; ok {
				return true
			}
		}
	}
	return false
}

// Decide triages one request. It is pure and safe for concurrent use; it never fails: a request that
// cannot be decided gets OutcomeAclaracion with questions.
func (e *Engine) Decide(in Input) Triage {
	t, _ := e.decideWith(in, e.nb)
	return t
}

// decideWith decides with the learned model nb (calibration decides with a model trained on part
// of the examples) and returns the raw confidence features of a decision that is not aclaracion.
func (e *Engine) decideWith(in Input, nb *learned) (Triage, *[3]float64) {
	s := e.scratch.Get().(*scratch)
	defer e.scratch.Put(s)
	content := e.tokens(s, in)

	// Match terms and accumulate term frequencies weighted by zone (clause and subject).
	if s.tf == nil {
		s.tf = map[int32]float64{}
		s.tfT = map[int32]float64{}
		s.tcl = map[int32]termClause{}
	}
	clear(s.tf)
	clear(s.tfT)
	clear(s.tcl)
	for i, id := range s.ids {
		if id < 0 {
			continue
		}
		for _, ti := range e.starts[id] {
			t := &e.terms[ti]
			if e.matchAt(s.ids, i, t) {
				z := s.zone[i]
				if old, ok := s.tcl[ti]; !ok || z > old.z {
					s.tcl[ti] = termClause{cl: s.cl[i], z: z}
				}
				s.tf[ti] += float64(z)
				s.tfT[ti] += float64(z * s.place[i])
			}
		}
	}

	n := len(e.docs)
	if cap(s.scores) < n {
		s.scores = make([]float64, n)
		s.hits = make([][]hit, n)
		s.nbHits = make([]float64, n)
		s.nbTop = make([]hit, n)
	}
	s.scores, s.hits, s.nbHits, s.nbTop = s.scores[:n], s.hits[:n], s.nbHits[:n], s.nbTop[:n]
	for i := range s.scores {
		s.scores[i], s.nbHits[i], s.nbTop[i] = 0, 0, hit{}
		s.hits[i] = s.hits[i][:0]
	}
	s.falla, s.serv = 0, 0
	s.cues = s.cues[:0]
	const k1 = 1.2
	// Map order is random; a sorted walk keeps explanations and float sums deterministic.
	s.keys = s.keys[:0]
	for ti := range s.tf {
		s.keys = append(s.keys, ti)
	}
	slices.Sort(s.keys)
	for _, ti := range s.keys {
		tf := s.tf[ti]
		t := &e.terms[ti]
		cl := s.tcl[ti].cl
		sat := tf * (k1 + 1) / (tf + k1)
		tfT := s.tfT[ti]
		satT := placeShare(sat, tf, tfT)
		for _, p := range t.postings {
			tf, sat := tf, sat
			if p.doc >= 0 && e.docs[p.doc].kind == docTarget {
				tf, sat = tfT, satT // a place named is not what is asked
			}
			switch p.role {
			case roleKeyword, rolePhraseToken:
				c := p.weight * t.idf * sat
				s.scores[p.doc] += c
				s.hits[p.doc] = append(s.hits[p.doc], hit{term: ti, weight: c, text: p.text, clause: cl})
			case rolePhrase:
				c := p.weight * min(1, tf)
				s.scores[p.doc] += c
				s.hits[p.doc] = append(s.hits[p.doc], hit{term: ti, weight: c, text: "«" + p.text + "»", clause: cl})
			case roleNegative:
				s.scores[p.doc] -= p.weight
				s.hits[p.doc] = append(s.hits[p.doc], hit{term: ti, weight: -p.weight, text: "−" + p.text, clause: cl})
			case roleFalla:
				s.falla += p.weight * sat
				s.cues = append(s.cues, hit{term: ti, weight: p.weight * sat, text: p.text, clause: cl})
			case roleServicio:
				s.serv += p.weight * sat
				s.cues = append(s.cues, hit{term: ti, weight: -p.weight * sat, text: p.text, clause: cl})
			}
		}
	}
	e.nbScore(s, nb)
	e.bgScore(s, in)
	e.readClauses(s)
	s.raw = nil
	t := e.decide(s, content)
	return t, s.raw
}

// clauseList is the clauses of one request.
type clauseList []clauseInfo

func (cs clauseList) anyStatus() bool {
	for _, c := range cs {
		if c.status && c.role != roleQuoted {
			return true
		}
	}
	return false
}

// termClause is the clause of a term's strongest occurrence.
type termClause struct {
	cl int16
	z  float32
}

// readClauses sums the built-in Spanish reading of the clauses: faults and requests, weighted by
// clause; and a status question, which makes the informativo scope a candidate by itself.
func (e *Engine) readClauses(s *scratch) {
	s.bfalla, s.bserv, s.bfCue, s.bsCue, s.status, s.offer = 0, 0, -1, -1, false, 0
	var bf, bs, bare float64
	verify, reported, vague := false, false, false
	for k, c := range s.clauses {
		verify = verify || c.verify && c.role != roleQuoted
		vague = vague || c.vague
		reported = reported || c.report
		w := c.readingWeight()
		if f := w * c.falla; f > 0 {
			s.bfalla += f
			if f > bf {
				bf, s.bfCue = f, k
			}
		}
		if v := w * c.serv; v > 0 {
			if c.bare {
				bare += v
			}
			s.bserv += v
			if v > bs {
				bs, s.bsCue = v, k
			}
		}
		if c.status && c.role == roleMain {
			s.status = true
		}
		s.offer += c.offer
	}
	// "Tiene un problema con lo del sistema, pero no sabe cuál": the requester cannot say what; a
	// weak match is not a decision.
	if vague {
		for di := range s.scores {
			s.scores[di] *= vagueDiscount
		}
	}
	// An unsolicited commercial offer is never a request for a service, whatever it sells; it goes
	// to the target whose own text speaks of offers, if the catalog has one.
	if s.offer >= 2 {
		for di, d := range e.docs {
			if d.kind != docTarget && s.scores[di] > 0 {
				s.scores[di] *= offerDiscount
			}
		}
		if e.offerDoc >= 0 && e.offerDoc < len(s.scores) {
			b := e.th.NoCompetenteScore
			s.scores[e.offerDoc] += b
			s.hits[e.offerDoc] = append(s.hits[e.offerDoc], hit{term: -1, weight: b, text: "oferta comercial no solicitada", clause: -1})
		}
	}
	// "No abre mi correo, ¿qué hago?": a bare question after a fault asks for the fix.
	if s.bfalla >= 2.5 {
		s.bserv -= bare / 2
	}
	s.bfTop = bf
	if verify && e.verifyDoc >= 0 {
		// Asked about a message received, the ask is whether it is genuine: that decides, whatever
		// the message was about.
		b := e.th.MinScore
		if reported {
			top := 0.0
			for di, d := range e.docs {
				if di != e.verifyDoc && d.kind != docTarget {
					top = max(top, s.scores[di])
				}
			}
			b = max(b, 1.3*top-s.scores[e.verifyDoc])
		}
		s.scores[e.verifyDoc] += b
		s.hits[e.verifyDoc] = append(s.hits[e.verifyDoc], hit{term: -1, weight: b, text: "pregunta si un mensaje es auténtico", clause: int16(s.bsCue)})
	}
	if s.status {
		// The status of an earlier request is informativo whatever that request was about: it
		// outscores what the history mentions.
		top := 0.0
		for di, d := range e.docs {
			if d.kind != docInformativo {
				top = max(top, s.scores[di])
			}
		}
		for di, d := range e.docs {
			if d.kind == docInformativo {
				b := max(statusBonus*e.th.MinScore, 1.1*top-s.scores[di])
				s.scores[di] += b
				s.hits[di] = append(s.hits[di], hit{term: -1, weight: b, text: "pregunta por el estado de una solicitud", clause: int16(s.bsCue)})
			}
		}
	}
}

// offerTarget returns the orientation target whose catalog text has the most offer markers.
func offerTarget(docs []doc, texts []trainText) int {
	count := map[int]int{}
	for _, t := range texts {
		if docs[t.doc].kind == docTarget {
			count[t.doc] += offerMarkers(words(fold.String(t.text)))
		}
	}
	best, n := -1, 0
	for d, c := range count {
		if c > n || c == n && c > 0 && d < best {
			best, n = d, c
		}
	}
	return best
}

// maxVerifyScan bounds the texts of one service that verifyTarget reads.
const maxVerifyScan = 200

// verifyTarget returns the service whose catalog text asks most often whether a message is genuine
// ("¿es real?", "¿es de ustedes?"): where the engine sends a verification question.
func verifyTarget(docs []doc, texts []trainText) int {
	count := map[int]int{}
	seen := map[int]int{}
	for _, t := range texts {
		// Enough of each service's texts to tell; a huge catalog is not read whole.
		if docs[t.doc].kind != docService || seen[t.doc] >= maxVerifyScan {
			continue
		}
		seen[t.doc]++
		for _, p := range splitClauses(t.text, nil) {
			ci := clauseInfo{text: p}
			classify(&ci, words(fold.String(p)))
			if ci.verify {
				count[t.doc]++
			}
		}
	}
	best, n := -1, 0
	for d, c := range count {
		if c > n || c == n && d < best {
			best, n = d, c
		}
	}
	return best
}

// Evidence scale: from denseCatalog training texts per candidate, a catalog's thresholds apply as
// written; a terser catalog's are lowered, at most to minScale of them.
const (
	denseCatalog = 30
	minScale     = 0.45
)

// vagueDiscount multiplies every score of a text whose requester says they cannot tell what fails.
const vagueDiscount = 0.5

// offerDiscount multiplies the CGSI candidates' scores of an unsolicited commercial offer.
const offerDiscount = 0.3

// statusBonus, times MinScore, is what a question about the status of an earlier request adds to
// the informativo scope.
const statusBonus = 1.5

// matchAt reports whether term t occurs at position i of ids, allowing t.gap other tokens between
// its words but never crossing a zone separator.
func (e *Engine) matchAt(ids []int32, i int, t *term) bool {
	pos := i
	for _, want := range t.ids[1:] {
		found := false
		for j := pos + 1; j < len(ids) && j <= pos+1+t.gap; j++ {
			if ids[j] == want {
				pos, found = j, true
				break
			}
			if ids[j] == zoneSep {
				return false
			}
		}
		if !found {
			return false
		}
	}
	return true
}

type ranked struct {
	doc   int
	score float64
}

func (e *Engine) decide(s *scratch, content int) Triage {
	th := e.th
	out := Triage{CatalogVersion: e.version, By: "engine"}
	var cands []ranked
	for i, sc := range s.scores {
		if sc > 0 {
			cands = append(cands, ranked{i, sc})
		}
	}
	sort.Slice(cands, func(a, b int) bool {
		if cands[a].score != cands[b].score {
			return cands[a].score > cands[b].score
		}
		return cands[a].doc < cands[b].doc
	})
	var bestIT, bestOOS *ranked
	for i := range cands {
		c := &cands[i]
		if e.docs[c.doc].kind == docTarget {
			if bestOOS == nil {
				bestOOS = c
			}
		} else if bestIT == nil {
			bestIT = c
		}
	}
	itScore, oosScore := 0.0, 0.0
	if bestIT != nil {
		itScore = bestIT.score
	}
	if bestOOS != nil {
		oosScore = bestOOS.score
	}
	// Length-aware evidence: a few words that clearly name one service decide; in a long text one
	// weak term is not enough.
	lf := 0.75 + 0.25*math.Min(1, float64(content)/10)
	minScore, ncScore := th.MinScore*lf*e.scale, th.NoCompetenteScore*lf*e.scale
	best, second := max(itScore, oosScore), 0.0
	if len(cands) > 1 {
		second = cands[1].score
	}
	// One service or target named and nothing else in sight: a terse catalog's single keyword is
	// enough. (Not the informativo scope: weak evidence for it is no evidence.)
	if second < uncontested*best && len(cands) > 0 && e.docs[cands[0].doc].kind != docInformativo {
		minScore *= uncontestedDiscount
		ncScore *= uncontestedDiscount
	}
	if content < th.MinWords {
		// Too few words: only a clear, single candidate is decided.
		if best < minScore || second > 0.6*best {
			return e.aclaracion(out, s, cands, insufficientText(content))
		}
	}
	// no_competente needs clear evidence: a strong target that clearly beats every CGSI candidate;
	// more so when the text reports a fault of something a CGSI service covers ("la fotocopiadora
	// de la biblioteca no saca copias").
	ratio := th.NoCompetenteRatio
	if s.bfTop >= 2.5 && itScore > 0 {
		ratio *= faultRatio
	}
	// An unsolicited offer goes to the office that takes offers once that office leads the targets:
	// what it sells (toner, software) is no request for it.
	if s.offer >= 2 && bestOOS != nil && bestOOS.doc == e.offerDoc {
		ratio = 1
	}
	if bestOOS != nil && oosScore >= ncScore && oosScore >= ratio*itScore {
		d := e.docs[bestOOS.doc]
		t := e.cat.f.OutOfScope[d.index]
		out.Outcome = OutcomeNoCompetente
		out.Area = t.Target
		out.Orientation = &Orientation{Target: t.Target, Office: t.Office, Message: t.Message}
		out.Confidence = e.confidence(s, oosScore, itScore, ncScore)
		expl := e.explainDoc(s, bestOOS.doc) + " → " + t.Target
		if bestIT != nil {
			expl += fmt.Sprintf("; supera a %s (%.1f contra %.1f)", e.docs[bestIT.doc].short(), oosScore, itScore)
		}
		if cl := e.decidingClause(s, bestOOS.doc); cl != "" {
			expl += "; decide la frase «" + cl + "»"
		}
		out.Explanation = expl
		out.Others = e.others(cands, bestOOS.doc)
		return out
	}
	if bestIT == nil || itScore < minScore {
		why := "ningún servicio alcanza el umbral"
		if bestIT != nil {
			why = fmt.Sprintf("evidencia débil: %s → %s (%.1f < %.1f)", e.explainDoc(s, bestIT.doc), e.docs[bestIT.doc].short(), itScore, minScore)
		}
		if bestOOS != nil && oosScore > itScore {
			why += fmt.Sprintf("; posible %s sin evidencia suficiente (%.1f)", e.docs[bestOOS.doc].area, oosScore)
		}
		return e.aclaracion(out, s, cands, why)
	}
	// A weak winner that an unrelated candidate nearly ties is not a decision.
	runner := 0.0
	for _, c := range cands {
		if c.doc != bestIT.doc && e.docs[c.doc].outcomeArea() != e.docs[bestIT.doc].outcomeArea() {
			runner = c.score
			if e.docs[c.doc].kind == docTarget && s.bfTop >= 2.5 {
				runner /= faultTieRatio // a reported fault leans to IT
			}
			break
		}
	}
	if itScore < 2*minScore && runner > 0 && (itScore-runner)/itScore < th.MinMargin {
		return e.aclaracion(out, s, cands, fmt.Sprintf("empate entre %s (%.1f) y otra área (%.1f)", e.docs[bestIT.doc].short(), itScore, runner))
	}

	d := e.docs[bestIT.doc]
	kind, kindWhy := e.kind(s, d)
	out.Kind = kind
	out.Confidence = e.confidence(s, itScore, max(runner, 0), minScore)
	expl := e.explainDoc(s, bestIT.doc)
	if d.kind == docInformativo {
		out.Outcome = OutcomeInformativo
		out.Concept = e.cat.Concept()
		expl += " → informativo (" + e.cat.Concept() + ")"
	} else {
		sv := e.cat.f.Services[d.index]
		out.Outcome = OutcomeSAI
		out.Service = &Service{ID: sv.ID, Name: sv.Name, Group: sv.Group, Area: sv.Area}
		out.Area = sv.Area
		expl += " → " + sv.Area + " (" + sv.Name + ")"
		if kind == KindFalla {
			out.Tests = slices.Clone(sv.Tests)
			// A short report names the service but says little about the fault: ask as well.
			if content <= shortReport {
				out.Questions = e.cat.areaQuestions(sv.Area)
			}
		}
	}
	if bestOOS != nil && oosScore >= ncScore {
		expl += fmt.Sprintf("; se descarta %s porque hay términos de TI", e.docs[bestOOS.doc].area)
	}
	if cl := e.decidingClause(s, bestIT.doc); cl != "" {
		expl += "; decide la frase «" + cl + "»"
	}
	out.Explanation = expl + "; " + kindWhy
	out.Others = e.others(cands, bestIT.doc)
	return out
}

// Uncontested evidence: when the runner-up scores less than uncontested times the best, the
// thresholds are multiplied by uncontestedDiscount.
const (
	uncontested         = 0.25
	uncontestedDiscount = 0.6
	// faultRatio multiplies NoCompetenteRatio for a text that reports a fault.
	faultRatio = 1.3
	// faultTieRatio divides an orientation target's score in the tie check of a reported fault.
	faultTieRatio = 1.6
)

// shortReport is the number of content words up to which a falla also gets the area's questions.
const shortReport = 6

// decidingClause returns the (shortened) clause that contributed most to candidate di.
func (e *Engine) decidingClause(s *scratch, di int) string {
	if len(s.clauses) < 2 {
		return ""
	}
	per := map[int16]float64{}
	for _, h := range s.hits[di] {
		if h.clause >= 0 && h.weight > 0 {
			per[h.clause] += h.weight
		}
	}
	for _, a := range s.attr {
		if int(a.doc) == di && a.cl >= 0 {
			per[a.cl] += a.w
		}
	}
	best, bw := int16(-1), 0.0
	for k, w := range per {
		if w > bw || w == bw && k < best {
			best, bw = k, w
		}
	}
	if best < 0 || int(best) >= len(s.clauses) {
		return ""
	}
	return shorten(s.clauses[best].text, 90)
}

// shorten cuts s to at most n runes at a word boundary, marking the cut.
func shorten(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)[:n]
	t := string(r)
	if i := strings.LastIndexByte(t, ' '); i > n/2 {
		t = t[:i]
	}
	return t + "…"
}

func (d doc) short() string {
	switch d.kind {
	case docInformativo:
		return "informativo"
	case docTarget:
		return d.area
	}
	return d.area
}

// outcomeArea groups candidates that compete for the same decision.
func (d doc) outcomeArea() string {
	switch d.kind {
	case docInformativo:
		return "informativo"
	case docTarget:
		return "oos:" + d.area
	}
	return d.area
}

// kind decides falla or servicio from the main ask: the engine's reading of the clauses (a
// malfunction stated vs. something new, changed or asked), then the catalog's own cues, at half
// weight. A service or scope may fix the kind.
func (e *Engine) kind(s *scratch, d doc) (string, string) {
	if d.fixed != "" {
		return d.fixed, d.fixed + " (fijado en el catálogo)"
	}
	falla := s.bfalla + catalogCueWeight*s.falla
	serv := s.bserv + catalogCueWeight*s.serv
	learned := kindLearnedWt * e.learnedVerdict(s)
	if learned > 0 {
		falla += learned
	} else {
		serv -= learned
	}
	if d.kind == docInformativo {
		// An informativo matter is a question by nature; only a clear fault report makes it a falla.
		falla /= 2
	}
	why := func(cl int, sign float64) string {
		var parts []string
		if cl >= 0 {
			c := s.clauses[cl]
			parts = append(parts, "\""+c.cue+"\" en «"+shorten(c.text, 60)+"»")
		}
		var hs []hit
		for _, h := range s.cues {
			if h.weight*sign > 0 {
				hs = append(hs, h)
			}
		}
		sort.SliceStable(hs, func(a, b int) bool { return math.Abs(hs[a].weight) > math.Abs(hs[b].weight) })
		for _, h := range hs {
			q := "\"" + h.text + "\""
			if !slices.Contains(parts, q) {
				parts = append(parts, q)
			}
			if len(parts) == 3 {
				break
			}
		}
		if len(parts) == 0 {
			parts = append(parts, "lectura del texto completo")
		}
		return strings.Join(parts, ", ")
	}
	switch {
	case falla > serv:
		return KindFalla, why(s.bfCue, 1) + " → falla"
	case serv > falla:
		return KindServicio, why(s.bsCue, -1) + " → servicio"
	}
	return e.cat.f.Kind.Default, e.cat.f.Kind.Default + " (sin señales claras; valor por omisión)"
}

// catalogCueWeight scales the catalog's kind cues against the engine's own reading.
const catalogCueWeight = 0.5

// explainDoc names the strongest matched terms of a candidate, and the strongest learned feature.
func (e *Engine) explainDoc(s *scratch, di int) string {
	hs := slices.Clone(s.hits[di])
	sort.SliceStable(hs, func(a, b int) bool { return hs[a].weight > hs[b].weight })
	var names []string
	for _, h := range hs {
		if len(names) == 5 {
			break
		}
		if !slices.Contains(names, h.text) {
			names = append(names, h.text)
		}
	}
	if s.nbHits[di] > 0 {
		names = append(names, fmt.Sprintf("modelo %+.1f (%s)", s.nbHits[di], s.nbTop[di].text))
	}
	return strings.Join(names, ", ")
}

func (e *Engine) others(cands []ranked, winner int) []Service {
	var out []Service
	for _, c := range cands {
		if c.doc == winner || len(out) == 3 {
			continue
		}
		d := e.docs[c.doc]
		switch d.kind {
		case docService:
			sv := e.cat.f.Services[d.index]
			out = append(out, Service{ID: sv.ID, Name: sv.Name, Group: sv.Group, Area: sv.Area})
		case docInformativo:
			out = append(out, Service{ID: e.cat.Concept(), Name: d.label})
		case docTarget:
			out = append(out, Service{ID: "no_competente:" + d.area, Name: e.cat.f.OutOfScope[d.index].Office, Area: d.area})
		}
	}
	return out
}

func (e *Engine) aclaracion(out Triage, s *scratch, cands []ranked, why string) Triage {
	out.Outcome = OutcomeAclaracion
	area := ""
	if len(cands) > 0 && e.docs[cands[0].doc].kind == docService {
		area = e.docs[cands[0].doc].area
	}
	out.Questions = e.cat.Questions(area)
	out.Explanation = why + " → aclaración"
	if len(cands) > 0 {
		out.Confidence = math.Round(100*(0.5+0.4*(1-math.Min(1, cands[0].score/(2*e.th.MinScore))))) / 100
	} else {
		out.Confidence = 0.9
	}
	out.Others = e.others(cands, -1)
	return out
}

// confidence grows with the score over its threshold and with the margin over the runner-up.
func confidence(best, runner, threshold float64) float64 {
	if best <= 0 {
		return 0
	}
	strength := 1 - math.Exp(-best/threshold)
	margin := 1.0
	if runner > 0 {
		margin = math.Max(0, (best-runner)/best)
	}
	c := strength * (0.6 + 0.4*margin)
	return math.Round(100*math.Min(1, math.Max(0, c))) / 100
}

// insufficientText explains an aclaracion for too little text, in Spanish for the agent.
func insufficientText(words int) string {
	switch words {
	case 0:
		return "texto insuficiente: ninguna palabra significativa"
	case 1:
		return "texto insuficiente: una sola palabra significativa"
	}
	return fmt.Sprintf("texto insuficiente: solo %d palabras significativas", words)
}
