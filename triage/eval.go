package triage

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
)

// Example is a labelled request, one JSON object a line in a fixtures file (requests.jsonl).
// Tipo and Area are "-" (or empty) when the label has none.
type Example struct {
	ID      string `json:"id"`
	Channel string `json:"channel"`
	Subject string `json:"subject"`
	Body    string `json:"body"`
	Outcome string `json:"outcome"`
	Tipo    string `json:"tipo"`
	Area    string `json:"area"`
	// Service optionally names the SAI service id (an area may hold several services).
	Service string `json:"service,omitempty"`
}

// ReadExamples reads labelled examples as JSON Lines; blank lines are skipped and unknown members
// ignored. An error names the line number.
func ReadExamples(r io.Reader) ([]Example, error) {
	var out []Example
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var ex Example
		if err := json.Unmarshal([]byte(line), &ex); err != nil {
			return nil, fmt.Errorf("examples line %d: %w", n, err)
		}
		if ex.Outcome == "" {
			return nil, fmt.Errorf("examples line %d: no outcome", n)
		}
		out = append(out, ex)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read examples: %w", err)
	}
	return out, nil
}

// label normalizes "-" and empty to "".
func label(s string) string {
	if s == "-" {
		return ""
	}
	return s
}

// PRF is precision and recall of one outcome.
type PRF struct {
	Support   int     // examples labelled with the outcome
	Predicted int     // examples decided as the outcome
	Correct   int     // both
	Precision float64 // Correct/Predicted (0 when nothing was predicted)
	Recall    float64 // Correct/Support (0 when there is no support)
}

// Miss is an example the engine got wrong in outcome, area or tipo.
type Miss struct {
	ID                              string
	WantOutcome, WantTipo, WantArea string
	GotOutcome, GotTipo, GotArea    string
	Explanation                     string
}

// Report is the result of Evaluate. Rates are fractions in [0, 1].
type Report struct {
	Total           int
	OutcomeCorrect  int
	OutcomeAccuracy float64
	PerOutcome      map[string]PRF
	// Confusion counts examples by labelled outcome, then decided outcome.
	Confusion map[string]map[string]int
	// AreaTotal counts examples labelled sai; AreaCorrect those decided sai in the same area.
	AreaTotal, AreaCorrect int
	AreaAccuracy           float64
	// TargetTotal counts examples labelled no_competente; TargetCorrect those oriented to the same target.
	TargetTotal, TargetCorrect int
	TargetAccuracy             float64
	// KindTotal counts examples whose label has a tipo; KindCorrect those decided with that kind.
	KindTotal, KindCorrect int
	KindAccuracy           float64
	// FalseNoCompetente counts examples labelled sai, informativo or aclaracion but decided
	// no_competente; FalseNoCompetenteBase counts the examples so labelled.
	FalseNoCompetente, FalseNoCompetenteBase int
	FalseNoCompetenteRate                    float64
	// Calibration of the confidence over the decided examples (not aclaracion): their mean
	// confidence, the share decided right (outcome, and area for sai and no_competente), and the
	// expected calibration error over ten bins (0 is perfectly calibrated).
	Decided                  int
	MeanConfidence, Accuracy float64
	CalibrationError         float64
	Misses                   []Miss
}

// Evaluate runs the engine over labelled examples and measures it.
func Evaluate(e *Engine, ex []Example) Report {
	r := Report{PerOutcome: map[string]PRF{}, Confusion: map[string]map[string]int{}}
	for _, o := range Outcomes {
		r.Confusion[o] = map[string]int{}
	}
	var bins [10]struct{ n, right, conf float64 }
	for _, x := range ex {
		t := e.Decide(Input{Subject: x.Subject, Text: x.Body, Channel: x.Channel})
		wantArea, wantTipo := label(x.Area), label(x.Tipo)
		if t.Outcome != OutcomeAclaracion {
			right := t.Outcome == x.Outcome && (x.Outcome == OutcomeInformativo || t.Area == wantArea)
			b := &bins[min(9, int(t.Confidence*10))]
			b.n++
			b.conf += t.Confidence
			if right {
				b.right++
			}
		}
		r.Total++
		if r.Confusion[x.Outcome] == nil {
			r.Confusion[x.Outcome] = map[string]int{}
		}
		r.Confusion[x.Outcome][t.Outcome]++
		ok := t.Outcome == x.Outcome
		if ok {
			r.OutcomeCorrect++
		}
		switch x.Outcome {
		case OutcomeSAI:
			r.AreaTotal++
			if ok && t.Area == wantArea {
				r.AreaCorrect++
			} else {
				ok = false
			}
		case OutcomeNoCompetente:
			r.TargetTotal++
			if ok && t.Area == wantArea {
				r.TargetCorrect++
			} else {
				ok = false
			}
		}
		if x.Outcome != OutcomeNoCompetente {
			r.FalseNoCompetenteBase++
			if t.Outcome == OutcomeNoCompetente {
				r.FalseNoCompetente++
			}
		}
		if wantTipo != "" {
			r.KindTotal++
			if t.Kind == wantTipo {
				r.KindCorrect++
			} else {
				ok = false
			}
		}
		if !ok {
			r.Misses = append(r.Misses, Miss{ID: x.ID, WantOutcome: x.Outcome, WantTipo: wantTipo, WantArea: wantArea,
				GotOutcome: t.Outcome, GotTipo: t.Kind, GotArea: t.Area, Explanation: t.Explanation})
		}
	}
	for o, row := range r.Confusion {
		for got, n := range row {
			p := r.PerOutcome[o]
			p.Support += n
			if got == o {
				p.Correct += n
			}
			r.PerOutcome[o] = p
			q := r.PerOutcome[got]
			q.Predicted += n
			r.PerOutcome[got] = q
		}
	}
	for o, p := range r.PerOutcome {
		p.Precision, p.Recall = ratio(p.Correct, p.Predicted), ratio(p.Correct, p.Support)
		r.PerOutcome[o] = p
	}
	var conf, right float64
	for _, b := range bins {
		r.Decided += int(b.n)
		conf += b.conf
		right += b.right
	}
	if r.Decided > 0 {
		n := float64(r.Decided)
		r.MeanConfidence, r.Accuracy = conf/n, right/n
		for _, b := range bins {
			if b.n > 0 {
				r.CalibrationError += b.n / n * math.Abs(b.conf/b.n-b.right/b.n)
			}
		}
	}
	r.OutcomeAccuracy = ratio(r.OutcomeCorrect, r.Total)
	r.AreaAccuracy = ratio(r.AreaCorrect, r.AreaTotal)
	r.TargetAccuracy = ratio(r.TargetCorrect, r.TargetTotal)
	r.KindAccuracy = ratio(r.KindCorrect, r.KindTotal)
	r.FalseNoCompetenteRate = ratio(r.FalseNoCompetente, r.FalseNoCompetenteBase)
	return r
}

func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// Format writes the report as aligned text tables.
func (r Report) Format(w io.Writer) {
	pct := func(a, b int) string {
		if b == 0 {
			return "   -"
		}
		return fmt.Sprintf("%5.1f%%  (%d/%d)", 100*float64(a)/float64(b), a, b)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "examples\t%d\n", r.Total)
	fmt.Fprintf(tw, "outcome accuracy\t%s\n", pct(r.OutcomeCorrect, r.Total))
	fmt.Fprintf(tw, "SAI area accuracy\t%s\n", pct(r.AreaCorrect, r.AreaTotal))
	fmt.Fprintf(tw, "orientation target accuracy\t%s\n", pct(r.TargetCorrect, r.TargetTotal))
	fmt.Fprintf(tw, "falla/servicio accuracy\t%s\n", pct(r.KindCorrect, r.KindTotal))
	fmt.Fprintf(tw, "false no_competente rate\t%s\n", pct(r.FalseNoCompetente, r.FalseNoCompetenteBase))
	if r.Decided > 0 {
		fmt.Fprintf(tw, "confidence (decided)\tmean %.2f, right %.2f, calibration error %.3f (%d)\n",
			r.MeanConfidence, r.Accuracy, r.CalibrationError, r.Decided)
	}
	tw.Flush()

	fmt.Fprintln(w, "\nper outcome")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "outcome\tsupport\tpredicted\tprecision\trecall\t")
	for _, o := range r.outcomes() {
		p := r.PerOutcome[o]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.2f\t%.2f\t\n", o, p.Support, p.Predicted, p.Precision, p.Recall)
	}
	tw.Flush()

	fmt.Fprintln(w, "\nconfusion (rows: label, columns: decision)")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	os := r.outcomes()
	fmt.Fprint(tw, "\t")
	for _, o := range os {
		fmt.Fprintf(tw, "%s\t", o)
	}
	fmt.Fprintln(tw)
	for _, o := range os {
		fmt.Fprintf(tw, "%s\t", o)
		for _, g := range os {
			fmt.Fprintf(tw, "%d\t", r.Confusion[o][g])
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()

	if len(r.Misses) > 0 {
		fmt.Fprintf(w, "\nmisses (%d)\n", len(r.Misses))
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "id\tlabel\tdecision\texplanation")
		for _, m := range r.Misses {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.ID, triple(m.WantOutcome, m.WantTipo, m.WantArea),
				triple(m.GotOutcome, m.GotTipo, m.GotArea), m.Explanation)
		}
		tw.Flush()
	}
}

// outcomes lists the known outcomes, then any other label seen, in a stable order.
func (r Report) outcomes() []string {
	out := append([]string(nil), Outcomes...)
	for _, o := range slices.Sorted(maps.Keys(r.Confusion)) {
		found := false
		for _, k := range out {
			found = found || k == o
		}
		if !found {
			out = append(out, o)
		}
	}
	return out
}

func triple(o, k, a string) string {
	s := o
	if k != "" {
		s += "/" + k
	}
	if a != "" {
		s += "/" + a
	}
	return s
}
