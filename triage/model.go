package triage

import (
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/ipn-cgsi/caud/config/fold"
)

// The learned component: a multinomial naive Bayes model over word stems and stem bigrams, and a
// second one over the character n-grams of the words (3 to 5 letters of the folded word, with its
// boundaries marked), trained when a catalog is loaded from the catalog's own text (keywords,
// phrases, examples) and from the agents' corrections (Model). Each candidate gets, for each feature
// of the request, the positive log-likelihood ratio of the feature under the candidate against the
// mean of all candidates, shrunk for features seen few times. The sum is evidence added to the
// BM25/phrase score: unknown words add nothing, so a text the catalog does not speak about still
// goes to aclaracion.
//
// The character n-grams carry what the stems miss: misspellings ("contrasenia", "imternet"), words
// written together ("micorreo", "nomeabre"), regional or clipped forms ("compu", "profe") and
// inflections the stemmer splits. A word's n-gram evidence is the mean over its n-grams (a long
// word does not count more than a short one), and counts in full only for a word the word model
// does not know; for a known word it only adds a little to what its stem says.

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
	// Character n-grams: lengths ngMin to ngMax of the folded word between boundary marks, for
	// words of at least ngMinWord letters.
	ngMin, ngMax, ngMinWord = 3, 5, 3
	// ngScale converts a word's mean n-gram log ratio to score units, for a word the word model
	// does not know (a misspelling, two words written as one); ngKnown, for a known word, on top of
	// its stem's evidence. (Measured: on misspelled fixtures the gain grows up to ngScale 5 and
	// well-written sets start to lose from 7; on well-written sets ngKnown 0.1 to 0.6 all gain.)
	ngScale = 3.0
	ngKnown = 0.25
	// maxCachedVecs bounds the per-model cache of words' n-gram evidence.
	maxCachedVecs = 100000
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

// isNumber reports whether w is a number that names no service: a time, a date, a year, an
// extension or a folio ("10:00" gives "10" and "00"). Three digits are kept: HTTP status codes
// ("error 500", "403") do name a kind of fault.
func isNumber(w string) bool { return isDigits(w) && len(w) != 3 }

// nbPost is the learned weight of a feature for one candidate.
type nbPost struct {
	doc int32
	w   float32
}

// learned holds the trained model; it is read-only after training (but for its caches).
type learned struct {
	feats map[uint64][]nbPost // unigram: stem id; bigram: (id1+1)<<32 | id2; n-gram: gramKey
	// trained counts the training texts (for the figures of `triage eval` and the benchmarks).
	trained int
	grams   int // n-gram features kept
	// vecs caches each folded word's n-gram evidence ([]nbPost, mean weight per candidate).
	vecs   sync.Map
	cached atomic.Int64
}

// trainText is one training text for a candidate.
type trainText struct {
	doc    int
	text   string
	weight float64
}

func unigram(id int32) uint64           { return uint64(uint32(id)) }
func isGram(k uint64) bool              { return k>>63 != 0 }
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
	// words counts the folded words per candidate; their n-grams are counted from it in finish
	// (each word type is cut into n-grams once, not each occurrence).
	words map[string]map[int32]float64
	ids   []int32
	stems map[string]string // Snowball dominates training; vocabulary repeats
}

func (e *Engine) newCounts() *nbCounts {
	return &nbCounts{counts: map[uint64]map[int32]float64{}, totals: make([]float64, len(e.docs)),
		words: map[string]map[int32]float64{}, stems: map[string]string{}}
}

// addTo adds v to m[k][doc], dropping what falls to zero.
func addTo[K comparable](m map[K]map[int32]float64, k K, doc int32, v float64) {
	c := m[k]
	if c == nil {
		c = map[int32]float64{}
		m[k] = c
	}
	c[doc] += v
	if c[doc] <= 1e-9 {
		delete(c, doc)
		if len(c) == 0 {
			delete(m, k)
		}
	}
}

// add counts the features of t, times sign (-1 takes a text out again, for calibration).
func (nc *nbCounts) add(e *Engine, t trainText, sign float64) {
	nc.ids = nc.ids[:0]
	for _, p := range splitClauses(t.text, nil) {
		for _, w := range words(fold.String(p)) {
			if e.stop[w] || len(w) < 2 || isNumber(w) {
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
			if utf8.RuneCountInString(w) >= ngMinWord {
				addTo(nc.words, w, int32(t.doc), sign*t.weight)
			}
		}
		nc.ids = append(nc.ids, -1)
	}
	put := func(k uint64, v float64) {
		addTo(nc.counts, k, int32(t.doc), v)
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
	c := &nbCounts{counts: make(map[uint64]map[int32]float64, len(nc.counts)), totals: slices.Clone(nc.totals),
		words: make(map[string]map[int32]float64, len(nc.words)), stems: nc.stems}
	for k, m := range nc.counts {
		c.counts[k] = maps.Clone(m)
	}
	for k, m := range nc.words {
		c.words[k] = maps.Clone(m)
	}
	return c
}

// finish turns counts into the model's weights: the word features, then the n-grams.
func (e *Engine) finish(nc *nbCounts, trained int) *learned {
	l := &learned{feats: make(map[uint64][]nbPost, len(nc.counts)), trained: trained}
	weigh(l.feats, nc.counts, nc.totals, 1)
	grams := map[uint64]map[int32]float64{}
	gtot := make([]float64, len(nc.totals))
	for w, m := range nc.words {
		forGrams(w, func(k uint64) {
			for d, v := range m {
				addTo(grams, k, d, v)
				gtot[d] += v
			}
		})
	}
	before := len(l.feats)
	weigh(l.feats, grams, gtot, 1)
	l.grams = len(l.feats) - before
	return l
}

// weigh adds to feats the weights of the features in counts (feature → candidate → count), with
// totals the count of all features per candidate.
func weigh(feats map[uint64][]nbPost, counts map[uint64]map[int32]float64, totals []float64, scale float64) {
	v := float64(len(counts))
	// Per-candidate denominators; a candidate with no text gets none of the model's evidence.
	den := make([]float64, len(totals))
	active, smooth := 0, 0.0
	for d := range den {
		den[d] = totals[d] + nbAlpha*v
		if totals[d] > 0 {
			active++
			smooth += nbAlpha / den[d]
		}
	}
	if active == 0 {
		return
	}
	var docs []int32
	for k, m := range counts {
		// Background: the mean over candidates of P(f|c), so large candidates do not dominate.
		docs = docs[:0]
		for d := range m {
			docs = append(docs, d)
		}
		slices.Sort(docs) // a fixed order of the sum: decisions are deterministic
		bg := smooth
		for _, d := range docs {
			if totals[d] > 0 {
				bg += m[d] / den[d]
			}
		}
		bg /= float64(active)
		var posts []nbPost
		for _, d := range docs {
			n := m[d]
			p := (n + nbAlpha) / den[d]
			llr := math.Log(p / bg)
			// A feature that does not single out a candidate (its share of the probability mass
			// across candidates is low) is no evidence: "entrar", "alta", "mensaje".
			share := p / (bg * float64(active))
			spec := min(1, max(0, (share-0.25)/0.45))
			w := scale * nbScale * llr * n / (n + nbShrink) * spec
			if w >= nbMinWeight {
				posts = append(posts, nbPost{doc: d, w: float32(w)})
			}
		}
		if len(posts) > 0 {
			feats[k] = posts
		}
	}
}

// forGrams calls f with the key of every character n-gram of the folded word w ("<" and ">" mark
// its boundaries).
func forGrams(w string, f func(uint64)) {
	var buf [64]int // rune offsets of "<" + w + ">"
	b := "<" + w + ">"
	offs := buf[:0]
	for i := range b {
		offs = append(offs, i)
	}
	offs = append(offs, len(b))
	nr := len(offs) - 1
	for n := ngMin; n <= ngMax; n++ {
		for i := 0; i+n <= nr; i++ {
			f(gramKey(b[offs[i]:offs[i+n]]))
		}
	}
}

// gramKey hashes an n-gram (FNV-1a) into the n-gram half of the feature keys (top bit set).
func gramKey(g string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(g); i++ {
		h ^= uint64(g[i])
		h *= 1099511628211
	}
	return h | 1<<63
}

// wordVec returns the n-gram evidence of folded word w per candidate: the mean over its n-grams of
// their weights, times ngScale. It is cached per model.
func (e *Engine) wordVec(nb *learned, w string) []nbPost {
	if v, ok := nb.vecs.Load(w); ok {
		return v.([]nbPost)
	}
	var vec []nbPost
	if nb.grams > 0 && utf8.RuneCountInString(w) >= ngMinWord && !nbStop[stem(w)] {
		acc := map[int32]float64{}
		n := 0
		forGrams(w, func(k uint64) {
			n++
			for _, p := range nb.feats[k] {
				acc[p.doc] += float64(p.w)
			}
		})
		for d, v := range acc {
			if v = ngScale * v / float64(n); v >= nbMinWeight {
				vec = append(vec, nbPost{doc: d, w: float32(v)})
			}
		}
		slices.SortFunc(vec, func(a, b nbPost) int { return int(a.doc - b.doc) })
	}
	if nb.cached.Load() < maxCachedVecs {
		if _, loaded := nb.vecs.LoadOrStore(w, vec); !loaded {
			nb.cached.Add(1)
		}
	}
	return vec
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
	if s.nbtfT == nil {
		s.nbtfT, s.ngtfT, s.nbIdx = map[uint64]float64{}, map[string]float64{}, map[uint64]int32{}
	}
	clear(s.nbtfT)
	clear(s.nbIdx)
	clear(s.ngtfT)
	s.attr = s.attr[:0]
	var cl int16
	count := func(k uint64, z, zt float64) {
		if _, ok := nb.feats[k]; !ok {
			return
		}
		if j, seen := s.nbIdx[k]; !seen {
			s.nbIdx[k] = int32(len(s.nbKeys))
			s.nbKeys = append(s.nbKeys, k)
			s.nbAt = append(s.nbAt[:len(s.nbKeys)-1], termClause{cl: cl, z: float32(z)})
		} else if at := &s.nbAt[j]; float32(z) > at.z {
			*at = termClause{cl: cl, z: float32(z)}
		}
		s.nbtf[k] += z
		s.nbtfT[k] += zt
	}
	if s.ngtf == nil {
		s.ngtf = map[string]float64{}
	}
	clear(s.ngtf)
	s.ngWords = s.ngWords[:0]
	for i, id := range s.ids {
		if id == zoneSep {
			continue
		}
		z := float64(s.zone[i])
		zt := z * float64(s.place[i])
		cl = s.cl[i]
		if w := s.toks[i]; w != "" && nb.grams > 0 {
			if _, seen := s.ngtf[w]; !seen {
				s.ngWords = append(s.ngWords, w)
				s.ngKnown = append(s.ngKnown[:len(s.ngWords)-1], id >= 0 && nb.feats[unigram(id)] != nil)
				s.ngAt = append(s.ngAt[:len(s.ngWords)-1], cl)
			}
			s.ngtf[w] += z
			s.ngtfT[w] += zt
		}
		if id < 0 {
			continue
		}
		count(unigram(id), z, zt)
		if i > 0 && s.ids[i-1] >= 0 {
			count(bigram(s.ids[i-1], id), z, zt*float64(s.place[i-1]))
		}
	}
	const k1 = 1.2
	for i, w := range s.ngWords {
		vec := e.wordVec(nb, w)
		if len(vec) == 0 {
			continue
		}
		sat := saturate(s.ngtf[w])
		satT := placeShare(sat, s.ngtf[w], s.ngtfT[w])
		if s.ngKnown[i] {
			sat *= ngKnown / ngScale
			satT *= ngKnown / ngScale
		}
		for _, p := range vec {
			c := float64(p.w) * e.satFor(p.doc, sat, satT)
			s.scores[p.doc] += c
			s.nbHits[p.doc] += c
			s.attr = append(s.attr, attribution{doc: p.doc, cl: s.ngAt[i], w: c})
			if c > s.nbTop[p.doc].weight {
				s.nbTop[p.doc] = hit{term: -1, weight: c, text: w + ", por su escritura", clause: -1}
			}
		}
	}
	for j, k := range s.nbKeys {
		posts := nb.feats[k]
		sat := saturate(s.nbtf[k])
		satT := placeShare(sat, s.nbtf[k], s.nbtfT[k])
		for _, p := range posts {
			c := float64(p.w) * e.satFor(p.doc, sat, satT)
			s.scores[p.doc] += c
			s.nbHits[p.doc] += c
			s.attr = append(s.attr, attribution{doc: p.doc, cl: s.nbAt[j].cl, w: c})
			if c > s.nbTop[p.doc].weight {
				s.nbTop[p.doc] = hit{term: -1, weight: c, text: e.featureText(k), clause: -1}
			}
		}
	}
}

// attribution is the learned evidence one feature gave a candidate, with the clause of the
// feature's strongest occurrence: decidingClause weighs it with the matched terms.
type attribution struct {
	doc int32
	cl  int16
	w   float64
}

// saturate is the BM25 saturation of a weighted term frequency (k1 = 1.2).
func saturate(tf float64) float64 {
	const k1 = 1.2
	return tf * (k1 + 1) / (tf + k1)
}

// placeShare scales the saturated frequency sat of a feature by the share of its frequency tf
// that is not in place phrases (tfT counts those at placeWeight): the frequency orientation targets
// see.
func placeShare(sat, tf, tfT float64) float64 {
	if tf <= 0 {
		return 0
	}
	return sat * tfT / tf
}

// satFor picks the saturated frequency for candidate doc: orientation targets count place phrases
// less (placeMask).
func (e *Engine) satFor(doc int32, sat, satT float64) float64 {
	if e.docs[doc].kind == docTarget {
		return satT
	}
	return sat
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
