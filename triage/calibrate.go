package triage

import (
	"math"
)

// Calibration. The raw confidence of a decision (how far the winner is above its threshold and
// ahead of the runner-up) is mapped to a probability of being right by a logistic (Platt) fit made
// at catalog load: the catalog's examples are split in two halves; the model is trained on one
// half and the engine decides the other, and the other way round; each decision's raw features
// and whether it was right fit the logistic. A catalog with too few examples keeps the raw value.

// calibration is a fitted logistic over the features of calFeatures.
type calibration struct {
	w [3]float64
	b float64
	n int // decisions it was fitted on
}

const (
	// minCalibration is the number of decided examples below which no fit is made.
	minCalibration = 40
	// maxCalibration bounds the examples decided at load (a huge catalog is sampled).
	maxCalibration = 1500
)

func calFeatures(best, runner, threshold float64) [3]float64 {
	margin := 1.0
	if runner > 0 && best > 0 {
		margin = math.Max(0, (best-runner)/best)
	}
	return [3]float64{math.Log(math.Max(best, 1e-3) / threshold), margin, confidence(best, runner, threshold)}
}

// confidence is the calibrated probability that a decision with these scores is right.
func (e *Engine) confidence(s *scratch, best, runner, threshold float64) float64 {
	x := calFeatures(best, runner, threshold)
	s.rawBuf = x
	s.raw = &s.rawBuf
	if e.cal == nil || best <= 0 {
		return confidence(best, runner, threshold)
	}
	z := e.cal.b
	for i, v := range x {
		z += e.cal.w[i] * v
	}
	return math.Round(100/(1+math.Exp(-z))) / 100
}

// calibrate fits the calibration from the catalog's examples (see the package comment above).
func (e *Engine) calibrate(texts []trainText) *calibration {
	var ex []int // indexes of example texts (not keywords)
	for i, t := range texts {
		if t.weight == trainExample || t.weight == trainCorrection {
			ex = append(ex, i)
		}
	}
	if len(ex) < 2*minCalibration {
		return nil
	}
	step := max(1, len(ex)/maxCalibration)
	var sample []int
	for i := 0; i < len(ex); i += step {
		sample = append(sample, ex[i])
	}
	// The full counts are made once; each fold takes its half of the sample out again.
	full := e.newCounts()
	for _, t := range texts {
		full.add(e, t, 1)
	}
	var xs [][3]float64
	var ys []float64
	for k := 0; k < 2; k++ {
		nc := full.clone()
		for j, i := range sample {
			if j%2 == k {
				nc.add(e, texts[i], -1)
			}
		}
		nb := e.finish(nc, len(texts))
		for j, i := range sample {
			if j%2 != k {
				continue
			}
			t := texts[i]
			d, raw := e.decideWith(Input{Text: t.text}, nb)
			if d.Outcome == OutcomeAclaracion || raw == nil {
				continue
			}
			y := 0.0
			if e.rightDoc(d, t.doc) {
				y = 1
			}
			xs = append(xs, *raw)
			ys = append(ys, y)
		}
	}
	if len(xs) < minCalibration {
		return nil
	}
	return fitLogistic(xs, ys)
}

// rightDoc reports whether decision d chose candidate di.
func (e *Engine) rightDoc(d Triage, di int) bool {
	doc := e.docs[di]
	switch doc.kind {
	case docService:
		return d.Service != nil && d.Service.ID == e.cat.f.Services[doc.index].ID
	case docInformativo:
		return d.Outcome == OutcomeInformativo
	}
	return d.Outcome == OutcomeNoCompetente && d.Area == doc.area
}

// fitLogistic fits y ~ sigmoid(w·x + b) by gradient descent with a small L2 penalty.
func fitLogistic(xs [][3]float64, ys []float64) *calibration {
	c := &calibration{n: len(xs)}
	pos := 0.0
	for _, y := range ys {
		pos += y
	}
	if pos == 0 || pos == float64(len(ys)) {
		return nil // nothing to separate
	}
	const rate, l2, iters = 0.5, 1e-3, 400
	n := float64(len(xs))
	c.b = math.Log(pos / (n - pos))
	for it := 0; it < iters; it++ {
		var gw [3]float64
		gb := 0.0
		for i, x := range xs {
			z := c.b
			for k, v := range x {
				z += c.w[k] * v
			}
			g := 1/(1+math.Exp(-z)) - ys[i]
			for k, v := range x {
				gw[k] += g * v
			}
			gb += g
		}
		for k := range c.w {
			c.w[k] -= rate * (gw[k]/n + l2*c.w[k])
		}
		c.b -= rate * gb / n
	}
	return c
}
