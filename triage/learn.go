package triage

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/ipn-cgsi/caud/config/fold"
)

// Model is what the agents taught the engine: their corrections, as labelled examples, that passed
// the comparison against the current engine (see Learn). The engine trains on them at load, after
// the catalog's own examples; decisions then name the model in catalog_version
// ("<catalog version>+m.<model version>").
type Model struct {
	// Version names the model: the first 8 hex digits of the SHA-256 of its examples.
	Version string `json:"version"`
	// Catalog is the catalog version the model was learned against.
	Catalog  string    `json:"catalog_version"`
	Examples []Example `json:"examples"`
}

// Errors of Learn and ReadModel.
var (
	// ErrContradictory: the corrections label the same text in different ways too often to be
	// trusted; nothing is promoted.
	ErrContradictory = errors.New("contradictory corrections")
	// ErrNotPromoted: the model learned from the corrections is not better than the current one
	// on the held-out corrections, or it is worse on the catalog's own examples.
	ErrNotPromoted = errors.New("model not promoted")
	// ErrInvalidModel: a model file that cannot be read.
	ErrInvalidModel = errors.New("invalid model")
)

// Learning defaults.
const (
	// holdoutEvery puts one correction in holdoutEvery in the held-out part (by a hash of its text).
	holdoutEvery = 5
	// maxContradictoryShare is the share of contradictory texts above which a set is refused.
	maxContradictoryShare = 0.1
	// guardTolerance is how much accuracy on the guard set the new model may lose.
	guardTolerance = 0.01
)

// LearnScore is the accuracy of one engine on one labelled set.
type LearnScore struct {
	Total   int     `json:"total"`
	Correct int     `json:"correct"` // outcome and area (service or target) right
	Rate    float64 `json:"rate"`
}

// LearnReport says what Learn did and why.
type LearnReport struct {
	Corrections   int `json:"corrections"`   // read
	Used          int `json:"used"`          // usable as training examples
	Ignored       int `json:"ignored"`       // aclaracion, or a label the catalog does not know
	Contradictory int `json:"contradictory"` // texts labelled in more than one way (left out)
	// Conflicts lists some contradictory texts with their labels, for the operator.
	Conflicts []string `json:"conflicts,omitempty"`
	Train     int      `json:"train"`
	HeldOut   int      `json:"held_out"`
	// Before and After score the current engine and the candidate on the held-out corrections;
	// GuardBefore and GuardAfter on the guard set (the catalog's own examples and any extra set).
	Before, After           LearnScore
	GuardBefore, GuardAfter LearnScore
	Promoted                bool   `json:"promoted"`
	Reason                  string `json:"reason"`
	Version                 string `json:"version,omitempty"` // of the promoted model
}

// Learn builds a new model from the current one (nil: none) and the agents' corrections, and
// promotes it only if it is better than the current engine on a held-out part of the corrections
// (or keeps it perfect) and loses no more than one point on the guard set: the catalog's own examples plus
// guard (extra labelled examples, e.g. the public fixtures). A set in which more than 10 % of the
// texts carry contradictory labels is refused with ErrContradictory; a model that does not pass
// the comparison, with ErrNotPromoted. Both come with the report.
func Learn(c *Catalog, current *Model, corrections, guard []Example) (*Model, LearnReport, error) {
	r := LearnReport{Corrections: len(corrections)}
	probe := NewEngineWithModel(c, current)
	// Usable examples, grouped by text to find contradictions.
	type group struct {
		labels []string
		ex     []Example
	}
	groups := map[string]*group{}
	var order []string
	for _, x := range corrections {
		if x.Outcome == OutcomeAclaracion || x.Outcome == "" {
			r.Ignored++
			continue
		}
		if _, ok := probe.docOf(x); !ok {
			r.Ignored++
			continue
		}
		k := textKey(x)
		g := groups[k]
		if g == nil {
			g = &group{}
			groups[k] = g
			order = append(order, k)
		}
		if l := labelKey(x); !slices.Contains(g.labels, l) {
			g.labels = append(g.labels, l)
		}
		g.ex = append(g.ex, x)
	}
	var usable []Example
	for _, k := range order {
		g := groups[k]
		if len(g.labels) > 1 {
			r.Contradictory++
			if len(r.Conflicts) < 10 {
				r.Conflicts = append(r.Conflicts, fmt.Sprintf("%q: %s", shorten(k, 60), strings.Join(g.labels, " / ")))
			}
			continue
		}
		usable = append(usable, g.ex[0]) // one per text: repeats add no information
	}
	r.Used = len(usable)
	if n := len(order); n > 0 && float64(r.Contradictory)/float64(n) > maxContradictoryShare {
		r.Reason = fmt.Sprintf("%d de %d textos tienen etiquetas contradictorias", r.Contradictory, n)
		return nil, r, fmt.Errorf("%w: %s", ErrContradictory, r.Reason)
	}
	if len(usable) == 0 {
		r.Reason = "no hay correcciones utilizables"
		return nil, r, fmt.Errorf("%w: %s", ErrNotPromoted, r.Reason)
	}
	var train, held []Example
	for _, x := range usable {
		if h := sha256.Sum256([]byte(textKey(x))); h[0]%holdoutEvery == 0 {
			held = append(held, x)
		} else {
			train = append(train, x)
		}
	}
	if len(held) == 0 || len(train) == 0 {
		// Too few to split: judge on the corrections themselves (reported as such).
		held, train = usable, usable
	}
	r.Train, r.HeldOut = len(train), len(held)
	cand := &Model{Catalog: c.Version()}
	if current != nil {
		cand.Examples = slices.Clone(current.Examples)
	}
	seen := map[string]bool{}
	for _, x := range cand.Examples {
		seen[textKey(x)] = true
	}
	for _, x := range train {
		if k := textKey(x); !seen[k] {
			seen[k] = true
			cand.Examples = append(cand.Examples, x)
		} else {
			// A newer correction of the same text replaces the older one.
			for i, y := range cand.Examples {
				if textKey(y) == k {
					cand.Examples[i] = x
				}
			}
		}
	}
	cand.Version = modelDigest(cand.Examples)
	after := NewEngineWithModel(c, cand)
	guardSet := append(c.selfExamples(), guard...)
	r.Before, r.After = score(probe, held), score(after, held)
	r.GuardBefore, r.GuardAfter = score(probe, guardSet), score(after, guardSet)
	switch {
	case r.After.Rate < r.Before.Rate || r.After.Rate == r.Before.Rate && r.Before.Rate < 1:
		// Promote what helps: a set that does not even teach its own held-out part is not learned.
		r.Reason = fmt.Sprintf("no mejora en las correcciones reservadas (%.1f %% contra %.1f %%)", 100*r.After.Rate, 100*r.Before.Rate)
	case r.GuardAfter.Rate < r.GuardBefore.Rate-guardTolerance:
		r.Reason = fmt.Sprintf("empeora en los ejemplos del catálogo (%.1f %% contra %.1f %%)", 100*r.GuardAfter.Rate, 100*r.GuardBefore.Rate)
	default:
		r.Promoted, r.Version = true, cand.Version
		r.Reason = fmt.Sprintf("correcciones reservadas %.1f %% → %.1f %%; ejemplos del catálogo %.1f %% → %.1f %%",
			100*r.Before.Rate, 100*r.After.Rate, 100*r.GuardBefore.Rate, 100*r.GuardAfter.Rate)
		return cand, r, nil
	}
	return nil, r, fmt.Errorf("%w: %s", ErrNotPromoted, r.Reason)
}

// score counts decisions right in outcome and in area (the service's area or the target).
func score(e *Engine, ex []Example) LearnScore {
	s := LearnScore{Total: len(ex)}
	for _, x := range ex {
		t := e.Decide(Input{Subject: x.Subject, Text: x.Body, Channel: x.Channel})
		if t.Outcome == x.Outcome && (x.Outcome == OutcomeInformativo || x.Outcome == OutcomeAclaracion || t.Area == label(x.Area)) {
			s.Correct++
		}
	}
	s.Rate = ratio(s.Correct, s.Total)
	return s
}

// selfExamples returns the catalog's examples as labelled requests (outcome and area only).
func (c *Catalog) selfExamples() []Example {
	var out []Example
	for _, s := range c.f.Services {
		for _, x := range s.Examples {
			out = append(out, Example{Body: x, Outcome: OutcomeSAI, Area: s.Area, Service: s.ID})
		}
	}
	for _, x := range c.f.Informativo.Examples {
		out = append(out, Example{Body: x, Outcome: OutcomeInformativo})
	}
	for _, t := range c.f.OutOfScope {
		for _, x := range t.Examples {
			out = append(out, Example{Body: x, Outcome: OutcomeNoCompetente, Area: t.Target})
		}
	}
	return out
}

// textKey normalizes a correction's text for comparison: folded, words only.
func textKey(x Example) string {
	return strings.Join(words(fold.String(x.Subject+" "+x.Body)), " ")
}

func labelKey(x Example) string {
	l := x.Outcome
	if a := label(x.Area); a != "" && x.Outcome != OutcomeInformativo {
		l += "/" + a
	}
	return l
}

func modelDigest(ex []Example) string {
	b, _ := json.Marshal(ex)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:4])
}

// ReadModel reads a model written by WriteModel (JSON). Its version must match its examples.
func ReadModel(r io.Reader) (*Model, error) {
	var m Model
	dec := json.NewDecoder(io.LimitReader(r, 256<<20))
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidModel, err)
	}
	if m.Version == "" || m.Version != modelDigest(m.Examples) {
		return nil, fmt.Errorf("%w: version %q does not match its examples", ErrInvalidModel, m.Version)
	}
	return &m, nil
}

// LoadModelFile reads a model file.
func LoadModelFile(path string) (*Model, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read model: %w", err)
	}
	defer f.Close()
	return ReadModel(f)
}

// WriteModel writes m as indented JSON.
func WriteModel(w io.Writer, m *Model) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(m)
}
