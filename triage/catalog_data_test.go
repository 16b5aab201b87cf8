package triage

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ipn-cgsi/caud/config/fold"
)

// Minimum number of example phrases the default catalog keeps per SAI area and per other candidate
// (the informativo scope and each orientation target): the learned component is trained on them,
// and a thin area is decided from a handful of cue words.
const (
	minAreaExamples   = 150
	minTargetExamples = 60
)

// defaultCandidateExamples returns the default catalog's examples by candidate: the SAI areas, the
// informativo scope ("informativo") and the orientation targets.
func defaultCandidateExamples() map[string][]string {
	f := DefaultCatalog().f
	out := map[string][]string{}
	for _, s := range f.Services {
		out[s.Area] = append(out[s.Area], s.Examples...)
	}
	out["informativo"] = f.Informativo.Examples
	for _, t := range f.OutOfScope {
		out[t.Target] = append(out[t.Target], t.Examples...)
	}
	return out
}

func exampleKey(s string) string { return strings.Join(words(fold.String(s)), " ") }

func TestDefaultCatalogExampleVolume(t *testing.T) {
	c := DefaultCatalog()
	ex := defaultCandidateExamples()
	for _, a := range c.Areas() {
		if n := len(ex[a]); n < minAreaExamples {
			t.Errorf("area %s has %d examples, want at least %d", a, n, minAreaExamples)
		}
	}
	for _, k := range append(c.Targets(), "informativo") {
		if n := len(ex[k]); n < minTargetExamples {
			t.Errorf("%s has %d examples, want at least %d", k, n, minTargetExamples)
		}
	}
}

// An example written under two candidates teaches the model nothing but noise.
func TestDefaultCatalogExamplesHaveOneCandidate(t *testing.T) {
	owner := map[string]string{}
	for cand, list := range defaultCandidateExamples() {
		for _, x := range list {
			k := exampleKey(x)
			if o, ok := owner[k]; ok && o != cand {
				t.Errorf("example %q is under both %s and %s", x, o, cand)
			}
			owner[k] = cand
		}
	}
}

// The figures of the labelled sets mean something only if the catalog does not contain their
// sentences: no example may be (after folding case, accents and punctuation) the text of a
// labelled request.
func TestDefaultCatalogExamplesAreNotLabelledRequests(t *testing.T) {
	own := map[string]string{}
	for cand, list := range defaultCandidateExamples() {
		for _, x := range list {
			own[exampleKey(x)] = cand
		}
	}
	var files []string
	err := filepath.WalkDir("testdata", func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".jsonl") {
			files = append(files, p)
		}
		return err
	})
	if err != nil || len(files) == 0 {
		t.Fatalf("labelled sets: %v (%d files)", err, len(files))
	}
	for _, f := range files {
		for _, x := range readExamplesFile(t, f) {
			for _, text := range []string{x.Body, strings.TrimSpace(x.Subject + " " + x.Body)} {
				if cand, ok := own[exampleKey(text)]; ok && exampleKey(text) != "" {
					t.Errorf("%s %s is an example of %s in the default catalog: rephrase the catalog example", f, x.ID, cand)
					break
				}
			}
		}
	}
}
