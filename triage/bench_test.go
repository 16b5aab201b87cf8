package triage

import "testing"

func benchDecide(b *testing.B, e *Engine, in []Input) {
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		e.Decide(in[i%len(in)])
	}
}

// BenchmarkDecide runs the default catalog over the 72 fixtures (ns/op is per request).
func BenchmarkDecide(b *testing.B) {
	var in []Input
	for _, x := range readExamplesFile(b, "testdata/requests.jsonl") {
		in = append(in, Input{Subject: x.Subject, Text: x.Body, Channel: x.Channel})
	}
	benchDecide(b, NewEngine(DefaultCatalog()), in)
}

// BenchmarkDecide500 uses a synthetic catalog of 500 services with the same fixtures.
func BenchmarkDecide500(b *testing.B) {
	c, err := ParseCatalog(syntheticCatalog(500), "synth.yaml")
	if err != nil {
		b.Fatal(err)
	}
	var in []Input
	for _, x := range readExamplesFile(b, "testdata/requests.jsonl") {
		in = append(in, Input{Subject: x.Subject + " palabra42", Text: x.Body + "\ntermino420 frase compuesta 7", Channel: x.Channel})
	}
	benchDecide(b, NewEngine(c), in)
}

func BenchmarkNewEngine(b *testing.B) {
	c := DefaultCatalog()
	for b.Loop() {
		NewEngine(c)
	}
}
