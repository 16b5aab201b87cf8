package triage

import (
	"maps"
	"math"
	"slices"
	"strings"

	"github.com/ipn-cgsi/caud/config/fold"
)

// The learned component: a multinomial naive Bayes model over word stems and stem bigrams, trained
// when a catalog is loaded from the catalog's own text (keywords, phrases, examples) and from the
// agents' corrections (Model). Each candidate gets, for each feature of the request, the positive
// log-likelihood ratio of the feature under the candidate against the mean of all candidates,
// shrunk for features seen few times. The sum is evidence added to the BM25/phrase score: unknown
// words add nothing, so a text the catalog does not speak about still goes to aclaracion.

// Training weights of the sources of text, per occurrence.
const (
	trainKeyword     = 0.5 // whatever its weight: BM25 already counts the weight
	trainDescription = 0.4 // a service's name, a target's office and message
	trainPhrase      = 1.0
	trainExample     = 1.0
	trainCorrection  = 3.0 // an agent's correction outweighs a catalog example
	nbAlpha          = 0.05
	// nbShrink: a feature seen n times counts n/(n+nbShrink) of its log ratio.
	nbShrink = 1.5
	// nbScale converts log ratios to score units (a catalog keyword of weight 1 unique to one
	// candidate scores 1).
	nbScale = 0.45
	// nbMinWeight drops postings that would add less than this.
	nbMinWeight = 0.05
)

// nbStop are (the stems of) words of any help-desk request that name no service: the model does
// not learn them.
var nbStop = func() map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(`ayuda ayudar ayuden apoyo apoyar apoyen urgente urge porfa porfavor problema
		problemas puedo puede pueden podrian podria intente intentado nada oigan ya necesito necesitamos solicito
		solicitamos requiero requerimos quiero quisiera favor hoy ayer manana semana lunes martes miercoles jueves
		viernes desde hace rato sigue igual esta estan tengo tiene hola buen buenas dia tardes noches gracias
		llama reporta usuario usuaria comenta dice indica no si ya mas solicitud tecnico tecnica`) {
		m[stem(w)] = true
	}
	return m
}()

// nbPost is the learned weight of a feature for one candidate.
type nbPost struct {
	doc int32
	w   float32
}

// learned holds the trained model; it is read-only after training.
type learned struct {
	feats map[uint64][]nbPost // unigram: stem id; bigram: (id1+1)<<32 | id2
	// trained counts the training texts (for the figures of `triage eval` and the benchmarks).
	trained int
}

// trainText is one training text for a candidate.
type trainText struct {
	doc    int
	text   string
	weight float64
}

func unigram(id int32) uint64           { return uint64(uint32(id)) }
func bigram(a, b int32) uint64          { return uint64(uint32(a)+1)<<32 | uint64(uint32(b)) }
func isBigram(k uint64) bool            { return k>>32 != 0 }
func bigramParts(k uint64) (a, b int32) { return int32(k>>32) - 1, int32(uint32(k)) }

// train builds the model from texts. Stems are interned into the engine's vocabulary, so that
// Decide finds them through the same lookup as catalog terms.
func (e *Engine) train(texts []trainText) *learned {
	nc := e.newCounts()
	for _, t := range texts {
		nc.add(e, t, 1)
	}
	return e.finish(nc, len(texts))
}

// nbCounts are the feature counts of a model in training.
type nbCounts struct {
	counts map[uint64]map[int32]float64
	totals []float64
	ids    []int32
	stems  map[string]string // Snowball dominates training; vocabulary repeats
}

func (e *Engine) newCounts() *nbCounts {
	return &nbCounts{counts: map[uint64]map[int32]float64{}, totals: make([]float64, len(e.docs)), stems: map[string]string{}}
}

// add counts the features of t, times sign (-1 takes a text out again, for calibration).
func (nc *nbCounts) add(e *Engine, t trainText, sign float64) {
	nc.ids = nc.ids[:0]
	for _, p := range splitClauses(t.text, nil) {
		for _, w := range words(fold.String(p)) {
			if e.stop[w] || len(w) < 2 {
				continue
			}
			st, ok := nc.stems[w]
			if !ok {
				st = stem(w)
				nc.stems[w] = st
			}
			if nbStop[st] {
				continue
			}
			nc.ids = append(nc.ids, e.intern(st))
		}
		nc.ids = append(nc.ids, -1)
	}
	put := func(k uint64, v float64) {
		m := nc.counts[k]
		if m == nil {
			m = map[int32]float64{}
			nc.counts[k] = m
		}
		m[int32(t.doc)] += v
		if m[int32(t.doc)] <= 1e-9 {
			delete(m, int32(t.doc))
		}
		nc.totals[t.doc] += v
	}
	for i, id := range nc.ids {
		if id < 0 {
			continue
		}
		put(unigram(id), sign*t.weight)
		if i > 0 && nc.ids[i-1] >= 0 {
			put(bigram(nc.ids[i-1], id), sign*t.weight*0.7)
		}
	}
}

// clone copies the counts (for a calibration fold).
func (nc *nbCounts) clone() *nbCounts {
	c := &nbCounts{counts: make(map[uint64]map[int32]float64, len(nc.counts)), totals: slices.Clone(nc.totals), stems: nc.stems}
	for k, m := range nc.counts {
		c.counts[k] = maps.Clone(m)
	}
	return c
}

// finish turns counts into the model's weights.
func (e *Engine) finish(nc *nbCounts, trained int) *learned {
	nd := len(e.docs)
	counts, totals := nc.counts, nc.totals
	v := float64(len(counts))
	l := &learned{feats: make(map[uint64][]nbPost, len(counts)), trained: trained}
	// Per-candidate denominators; a candidate with no text gets none of the model's evidence.
	den := make([]float64, nd)
	for d := range den {
		den[d] = totals[d] + nbAlpha*v
	}
	active := 0
	for d := range totals {
		if totals[d] > 0 {
			active++
		}
	}
	if active == 0 {
		return l
	}
	for k, m := range counts {
		// Background: the mean over candidates of P(f|c), so large candidates do not dominate.
		var bg float64
		for d := range totals {
			if totals[d] > 0 {
				bg += (m[int32(d)] + nbAlpha) / den[d]
			}
		}
		bg /= float64(active)
		var posts []nbPost
		for d, n := range m {
			p := (n + nbAlpha) / den[d]
			llr := math.Log(p / bg)
			// A feature that does not single out a candidate (its share of the probability mass
			// across candidates is low) is no evidence: "entrar", "alta", "mensaje".
			share := p / (bg * float64(active))
			spec := min(1, max(0, (share-0.25)/0.45))
			w := nbScale * llr * n / (n + nbShrink) * spec
			if w >= nbMinWeight {
				posts = append(posts, nbPost{doc: d, w: float32(w)})
			}
		}
		if len(posts) > 0 {
			l.feats[k] = posts
		}
	}
	return l
}

// nbScore adds the model's evidence for the tokens in s to s.scores and s.hits.
func (e *Engine) nbScore(s *scratch, nb *learned) {
	if nb == nil || len(nb.feats) == 0 {
		return
	}
	if s.nbtf == nil {
		s.nbtf = map[uint64]float64{}
	}
	clear(s.nbtf)
	// Features in order of first occurrence, so that sums and explanations are deterministic.
	s.nbKeys = s.nbKeys[:0]
	count := func(k uint64, z float64) {
		if _, ok := nb.feats[k]; !ok {
			return
		}
		if _, seen := s.nbtf[k]; !seen {
			s.nbKeys = append(s.nbKeys, k)
		}
		s.nbtf[k] += z
	}
	for i, id := range s.ids {
		if id < 0 {
			continue
		}
		z := float64(s.zone[i])
		count(unigram(id), z)
		if i > 0 && s.ids[i-1] >= 0 {
			count(bigram(s.ids[i-1], id), z)
		}
	}
	const k1 = 1.2
	for _, k := range s.nbKeys {
		tf := s.nbtf[k]
		posts := nb.feats[k]
		sat := tf * (k1 + 1) / (tf + k1)
		for _, p := range posts {
			c := float64(p.w) * sat
			s.scores[p.doc] += c
			s.nbHits[p.doc] += c
			if c > s.nbTop[p.doc].weight {
				s.nbTop[p.doc] = hit{term: -1, weight: c, text: e.featureText(k), clause: -1}
			}
		}
	}
}

func (e *Engine) featureText(k uint64) string {
	if isBigram(k) {
		a, b := bigramParts(k)
		return e.stems[a] + " " + e.stems[b]
	}
	return e.stems[int32(k)]
}

// trainingTexts collects the catalog's text for each candidate, then the model's corrections.
func (e *Engine) trainingTexts(c *Catalog, m *Model) []trainText {
	var out []trainText
	addDoc := func(di int, kw []Term, phrases, examples []string) {
		for _, t := range kw {
			out = append(out, trainText{doc: di, text: t.Text, weight: trainKeyword})
		}
		for _, p := range phrases {
			out = append(out, trainText{doc: di, text: p, weight: trainPhrase})
		}
		for _, x := range examples {
			out = append(out, trainText{doc: di, text: x, weight: trainExample})
		}
	}
	// The names and the orientation messages describe the candidates too; a terse catalog has
	// little else. (Words every target's message shares, "lo sentimos", single out none.)
	describe := func(di int, texts ...string) {
		for _, t := range texts {
			if strings.TrimSpace(t) != "" {
				out = append(out, trainText{doc: di, text: t, weight: trainDescription})
			}
		}
	}
	for di, d := range e.docs {
		switch d.kind {
		case docService:
			s := c.f.Services[d.index]
			describe(di, s.Name)
			addDoc(di, s.Keywords, s.Phrases, s.Examples)
		case docInformativo:
			addDoc(di, c.f.Informativo.Keywords, c.f.Informativo.Phrases, c.f.Informativo.Examples)
		case docTarget:
			t := c.f.OutOfScope[d.index]
			describe(di, t.Office, t.Message)
			addDoc(di, t.Keywords, t.Phrases, t.Examples)
		}
	}
	if m != nil {
		for _, x := range m.Examples {
			if di, ok := e.docOf(x); ok {
				out = append(out, trainText{doc: di, text: strings.TrimSpace(x.Subject + "\n" + x.Body), weight: trainCorrection})
			}
		}
	}
	return out
}

// docOf maps a labelled example to its candidate: a service (by id, else the first service of the
// area), the informativo scope or an orientation target. aclaracion has no candidate.
func (e *Engine) docOf(x Example) (int, bool) {
	area := label(x.Area)
	for di, d := range e.docs {
		switch {
		case x.Outcome == OutcomeSAI && d.kind == docService:
			sv := e.cat.f.Services[d.index]
			if x.Service != "" && sv.ID == x.Service || x.Service == "" && sv.Area == area {
				return di, true
			}
		case x.Outcome == OutcomeInformativo && d.kind == docInformativo:
			return di, true
		case x.Outcome == OutcomeNoCompetente && d.kind == docTarget && d.area == area:
			return di, true
		}
	}
	return 0, false
}
