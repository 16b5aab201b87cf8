package triage

import (
	"math"
	"slices"
	"sort"
	"sync"

	"github.com/ipn-cgsi/caud/config/fold"
)

// Background knowledge of help-desk Spanish.
//
// A catalog written tersely by an operator (a dozen keywords and a handful of phrases per service)
// knows few of the words its requesters use: "la multifuncional no escanea" names no keyword of a
// printing service whose catalog says "impresora", "tóner", "atasco". The engine therefore carries
// word associations learned once from the example requests of the default catalog (thousands of
// them, in every register): words that keep appearing in the same request ("escanea" with
// "impresora", "multifuncional", "escáner") are related. When a request word is unknown to the
// loaded catalog, its associations with each candidate's own words count as weak evidence for that
// candidate. For the default catalog, which knows those words already, this adds nothing.
//
// Nothing here names a service or an area: the associations are between words.

// Background tuning.
const (
	bgMinDF        = 3    // a word seen in fewer example requests is not associated
	bgMinCo        = 2    // nor a pair seen together fewer times
	bgMinNPMI      = 0.25 // normalized pointwise mutual information below this is no association
	bgMinShare     = 0.5  // a domain word has at least this share of its texts in one candidate
	bgNeighbours   = 40   // strongest associations kept per word
	bgWeight       = 0.6  // evidence of one unknown word fully associated with a candidate
	bgCapPerDoc    = 1.8  // most background evidence one candidate can get from one request
	bgMinStemRunes = 3
)

// associations maps a stem to its associated stems with their strength in (0, 1].
type associations map[string][]neighbour

type neighbour struct {
	stem string
	npmi float32
}

// backgroundAssociations learns the associations from the default catalog once; they are
// immutable afterwards and shared by every engine.
var backgroundAssociations = sync.OnceValue(func() associations {
	return learnAssociations(defaultCatalog())
})

// learnAssociations counts, over the example texts of c, how often stems occur and co-occur in
// one text, and keeps the pairs with a clearly positive normalized PMI.
func learnAssociations(c *Catalog) associations {
	type text struct {
		class int
		s     string
	}
	var texts []text
	class := 0
	add := func(ss ...[]string) {
		for _, l := range ss {
			for _, s := range l {
				texts = append(texts, text{class, s})
			}
		}
		class++
	}
	for _, s := range c.f.Services {
		add(s.Phrases, s.Examples)
	}
	add(c.f.Informativo.Phrases, c.f.Informativo.Examples)
	for _, o := range c.f.OutOfScope {
		add(o.Phrases, o.Examples)
	}
	df := map[string]int{}
	byClass := map[string][]int{}
	co := map[[2]string]int{}
	stems := map[string]string{}
	var set []string
	for _, t := range texts {
		set = bgStems(t.s, stopwords, stems, set[:0])
		for i, a := range set {
			df[a]++
			if byClass[a] == nil {
				byClass[a] = make([]int, class)
			}
			byClass[a][t.class]++
			for _, b := range set[i+1:] {
				k := [2]string{a, b}
				if b < a {
					k = [2]string{b, a}
				}
				co[k]++
			}
		}
	}
	// A domain word keeps to a few candidates ("escanea", "atasco"); a word of every request
	// ("horas", "mañana", "queda") says nothing about which.
	domain := func(st string) bool {
		return df[st] >= bgMinDF && float64(slices.Max(byClass[st])) >= bgMinShare*float64(df[st])
	}
	n := float64(len(texts))
	out := associations{}
	for k, c := range co {
		if c < bgMinCo || !domain(k[0]) || !domain(k[1]) {
			continue
		}
		pab := float64(c) / n
		pa, pb := float64(df[k[0]])/n, float64(df[k[1]])/n
		npmi := math.Log(pab/(pa*pb)) / -math.Log(pab)
		if npmi < bgMinNPMI {
			continue
		}
		out[k[0]] = append(out[k[0]], neighbour{k[1], float32(npmi)})
		out[k[1]] = append(out[k[1]], neighbour{k[0], float32(npmi)})
	}
	for w, ns := range out {
		sort.Slice(ns, func(i, j int) bool {
			if ns[i].npmi != ns[j].npmi {
				return ns[i].npmi > ns[j].npmi
			}
			return ns[i].stem < ns[j].stem
		})
		if len(ns) > bgNeighbours {
			ns = ns[:bgNeighbours]
		}
		out[w] = slices.Clip(ns)
	}
	return out
}

// bgStems appends the distinct content stems of text to set.
func bgStems(text string, stop map[string]bool, cache map[string]string, set []string) []string {
	for _, w := range words(fold.String(text)) {
		if stop[w] || isDigits(w) {
			continue
		}
		st, ok := cache[w]
		if !ok {
			st = stem(w)
			cache[w] = st
		}
		if len([]rune(st)) < bgMinStemRunes || nbStop[st] || slices.Contains(set, st) {
			continue
		}
		set = append(set, st)
	}
	return set
}

func isDigits(w string) bool {
	for i := 0; i < len(w); i++ {
		if w[i] < '0' || w[i] > '9' {
			return false
		}
	}
	return w != ""
}

// bgPost is the background evidence an unknown stem gives one candidate.
type bgPost struct {
	doc  int32
	w    float32 // strength × idf over candidates
	near string  // the candidate's own word it is associated with, for the explanation
}

// buildBackground maps every stem associated with some candidate's own words, and unknown to the
// engine's vocabulary, to the candidates it supports.
func (e *Engine) buildBackground(a associations) map[string][]bgPost {
	c := e.cat
	own := make([][]string, len(e.docs))
	cache := map[string]string{}
	for di, d := range e.docs {
		var texts []string
		terms := func(ts []Term) {
			for _, t := range ts {
				texts = append(texts, t.Text)
			}
		}
		switch d.kind {
		case docService:
			s := c.f.Services[d.index]
			terms(s.Keywords)
			texts = append(texts, s.Name)
			texts = append(texts, s.Phrases...)
		case docInformativo:
			terms(c.f.Informativo.Keywords)
			texts = append(texts, c.f.Informativo.Phrases...)
		case docTarget:
			t := c.f.OutOfScope[d.index]
			terms(t.Keywords)
			texts = append(texts, t.Office)
			texts = append(texts, t.Phrases...)
		}
		var set []string
		for _, t := range texts {
			set = bgStems(t, e.stop, cache, set)
		}
		own[di] = set
	}
	best := map[string]map[int32]bgPost{}
	for di, set := range own {
		for _, v := range set {
			for _, nb := range a[v] {
				if _, known := e.vocab[nb.stem]; known {
					continue // the catalog's own evidence covers it
				}
				m := best[nb.stem]
				if m == nil {
					m = map[int32]bgPost{}
					best[nb.stem] = m
				}
				if p, ok := m[int32(di)]; !ok || nb.npmi > p.w {
					m[int32(di)] = bgPost{doc: int32(di), w: nb.npmi, near: v}
				}
			}
		}
	}
	n := float64(len(e.docs))
	maxIDF := math.Log(1 + (n-1+0.5)/(1+0.5))
	out := make(map[string][]bgPost, len(best))
	for st, m := range best {
		df := float64(len(m))
		idf := float32(math.Log(1+(n-df+0.5)/(df+0.5)) / maxIDF)
		ps := make([]bgPost, 0, len(m))
		for _, p := range m {
			p.w *= idf
			ps = append(ps, p)
		}
		sort.Slice(ps, func(i, j int) bool { return ps[i].doc < ps[j].doc })
		out[st] = ps
	}
	return out
}

// bgScore adds the background evidence of the request's words that the catalog does not know.
func (e *Engine) bgScore(s *scratch, in Input) {
	if len(e.bg) == 0 {
		return
	}
	if s.bgSeen == nil {
		s.bgSeen = map[string]bool{}
	}
	clear(s.bgSeen)
	if cap(s.bgSum) < len(e.docs) {
		s.bgSum = make([]float64, len(e.docs))
		s.bgTop = make([]hit, len(e.docs))
	}
	s.bgSum, s.bgTop = s.bgSum[:len(e.docs)], s.bgTop[:len(e.docs)]
	for i := range s.bgSum {
		s.bgSum[i], s.bgTop[i] = 0, hit{}
	}
	for _, text := range []string{in.Subject, in.Text} {
		for _, w := range words(fold.String(text)) {
			if e.stop[w] || isDigits(w) || len(w) < 4 {
				continue
			}
			st := e.stemOf(w)
			if s.bgSeen[st] {
				continue
			}
			s.bgSeen[st] = true
			for _, p := range e.bg[st] {
				c := bgWeight * float64(p.w)
				s.bgSum[p.doc] += c
				if c > s.bgTop[p.doc].weight {
					s.bgTop[p.doc] = hit{term: -1, weight: c, text: w + "≈" + p.near, clause: -1}
				}
			}
		}
	}
	for di, sum := range s.bgSum {
		if sum <= 0 {
			continue
		}
		c := min(sum, bgCapPerDoc)
		s.scores[di] += c
		h := s.bgTop[di]
		h.weight = c
		s.hits[di] = append(s.hits[di], h)
	}
}
