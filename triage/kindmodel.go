package triage

import (
	"bufio"
	"bytes"
	_ "embed"
	"math"
	"strings"
	"sync"

	"github.com/ipn-cgsi/caud/config/fold"
)

// The learned reading of falla vs servicio.
//
// The built-in reading of clause.go knows the usual shapes of a malfunction statement ("no
// funciona", "no me deja", "marca error") and of a request. People describe faults in many more
// ways ("se reinicia sola con pantalla azul", "otra vez sin sistema", "me llegan rebotes de correos
// que nunca mandé"). kind_examples.txt holds sentences written for this project and labelled falla
// or servicio, across every kind of IT matter and register; a naive Bayes model over their words
// and word pairs, trained once, reads each clause of a request and adds its verdict to the
// built-in one. The corpus is about Spanish, not about one institution: every catalog gets it.

//go:embed kind_examples.txt
var kindExamples []byte

// Learned kind tuning.
const (
	kindMinCount  = 2   // a feature seen fewer times in the corpus is ignored
	kindFeatClip  = 2.5 // most log-odds one feature may carry
	kindScale     = 3.0 // clause log-odds at which the verdict is about three quarters sure
	kindLearnedWt = 1.5 // weight of the learned verdict against the built-in reading
)

// kindModel holds log P(feature|falla) − log P(feature|servicio) per feature.
type kindModel struct {
	odds map[string]float64
	bias float64
}

// learnedKind trains the model once from the embedded corpus.
var learnedKind = sync.OnceValue(func() *kindModel { return trainKind(kindExamples) })

// trainKind reads "falla<TAB>text" / "servicio<TAB>text" lines ('#' comments, blank lines).
func trainKind(data []byte) *kindModel {
	counts := [2]map[string]float64{{}, {}}
	var totals, docs [2]float64
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		label, text, ok := strings.Cut(line, "\t")
		if !ok {
			continue
		}
		c := 0
		switch strings.TrimSpace(label) {
		case KindFalla:
		case KindServicio:
			c = 1
		default:
			continue
		}
		docs[c]++
		seen := map[string]bool{}
		for _, f := range kindFeatures(text, stem, nil) {
			if !seen[f] {
				seen[f] = true
				counts[c][f]++
				totals[c]++
			}
		}
	}
	m := &kindModel{odds: map[string]float64{}}
	if docs[0] == 0 || docs[1] == 0 {
		return m
	}
	m.bias = math.Log(docs[0] / docs[1])
	vocab := map[string]bool{}
	for c := range counts {
		for f := range counts[c] {
			vocab[f] = true
		}
	}
	const alpha = 0.5
	v := float64(len(vocab))
	for f := range vocab {
		if counts[0][f]+counts[1][f] < kindMinCount {
			continue
		}
		pf := (counts[0][f] + alpha) / (totals[0] + alpha*v)
		ps := (counts[1][f] + alpha) / (totals[1] + alpha*v)
		m.odds[f] = max(-kindFeatClip, min(kindFeatClip, math.Log(pf/ps)))
	}
	return m
}

// kindFeatures appends the features of a text (stem is the stemmer: Engine.stemOf caches it): its word stems, including function words (a
// negation or "ya" matters here), pairs of neighbouring stems, and a question mark.
func kindFeatures(text string, stem func(string) string, out []string) []string {
	prev := ""
	for _, w := range words(fold.String(text)) {
		st := stem(w)
		if isDigits(st) {
			st = "#"
		}
		out = append(out, "u:"+st)
		if prev != "" {
			out = append(out, "b:"+prev+" "+st)
		}
		prev = st
	}
	if strings.ContainsAny(text, "¿?") {
		out = append(out, "q:?")
	}
	return out
}

// score returns the log-odds that text reports a fault (positive) or makes a request (negative).
func (m *kindModel) score(text string, stem func(string) string, buf []string) (float64, []string) {
	buf = kindFeatures(text, stem, buf[:0])
	sum, n := 0.0, 0
	for _, f := range buf {
		if o, ok := m.odds[f]; ok {
			sum += o
			n++
		}
	}
	if n == 0 {
		return 0, buf
	}
	return sum + m.bias, buf
}

// learnedVerdict reads the requester's clauses with the learned model: the sum over clauses of
// their weight times a verdict in (−1, 1), positive for a fault.
func (e *Engine) learnedVerdict(s *scratch) float64 {
	m := e.kindm
	if m == nil || len(m.odds) == 0 {
		return 0
	}
	total := 0.0
	for _, c := range s.clauses {
		w := c.readingWeight()
		if w <= 0 {
			continue
		}
		var l float64
		l, s.kindBuf = m.score(c.text, e.stemOf, s.kindBuf)
		total += w * math.Tanh(l/kindScale)
	}
	return total
}
