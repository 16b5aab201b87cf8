package triage

import (
	"runtime"
	"slices"
	"time"
)

// BenchReport is what an engine costs: the time to build it from its catalog (compiling the
// matcher, training and calibrating the learned model), the heap it keeps, and the latency of
// Decide per request. `cauctl triage bench` prints it; the package benchmarks use it too.
type BenchReport struct {
	Train    time.Duration `json:"train_ns"`
	HeapMiB  float64       `json:"heap_mib"`
	Features int           `json:"features"` // learned features kept (words, word pairs, n-grams)
	Grams    int           `json:"ngram_features"`
	Trained  int           `json:"training_texts"`
	Requests int           `json:"requests"` // decisions timed
	Mean     time.Duration `json:"mean_ns"`
	P50      time.Duration `json:"p50_ns"`
	P90      time.Duration `json:"p90_ns"`
	P99      time.Duration `json:"p99_ns"`
	Max      time.Duration `json:"max_ns"`
}

// Bench builds the engine of c with model m (nil: none), measuring its build time and the heap
// it keeps, then decides in, rounds times over (after one untimed round that warms the word
// cache), timing each decision. The heap figure is the live heap after two collections, before
// and after the build: run it in a process doing nothing else.
func Bench(c *Catalog, m *Model, in []Input, rounds int) (*Engine, BenchReport) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&before)
	t0 := time.Now()
	e := NewEngineWithModel(c, m)
	r := BenchReport{Train: time.Since(t0)}
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	r.HeapMiB = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / (1 << 20)
	r.Features, r.Grams, r.Trained = len(e.nb.feats), e.nb.grams, e.nb.trained
	if len(in) == 0 {
		return e, r
	}
	for _, x := range in {
		e.Decide(x)
	}
	lat := make([]time.Duration, 0, len(in)*max(rounds, 1))
	var total time.Duration
	for range max(rounds, 1) {
		for _, x := range in {
			t := time.Now()
			e.Decide(x)
			d := time.Since(t)
			lat = append(lat, d)
			total += d
		}
	}
	slices.Sort(lat)
	n := len(lat)
	r.Requests, r.Mean = n, total/time.Duration(n)
	r.P50, r.P90, r.P99, r.Max = lat[n/2], lat[n*90/100], lat[min(n-1, n*99/100)], lat[n-1]
	return e, r
}
