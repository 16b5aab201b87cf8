package triage

import (
	"hash/fnv"
	"strings"
	"testing"
	"unicode/utf8"
)

// misspell rewrites text the way people write in a hurry, deterministically: in about one word in
// three of six letters or more a letter is dropped, doubled, swapped with the next or replaced by
// one that sounds alike; and a short word is sometimes written together with the next one
// ("mi correo" → "micorreo", "no abre" → "noabre"). Accents are dropped.
func misspell(text string) string {
	ws := strings.Fields(text)
	var out []string
	for i := 0; i < len(ws); i++ {
		w := ws[i]
		h := fnv.New32a()
		h.Write([]byte(w))
		h.Write([]byte{byte(i)})
		r := h.Sum32()
		rs := []rune(strings.NewReplacer("á", "a", "é", "e", "í", "i", "ó", "o", "ú", "u").Replace(w))
		if n := len(rs); n >= 6 && r%4 == 0 {
			k := 1 + int(r>>8)%(n-2)
			switch (r >> 4) % 4 {
			case 0:
				rs = append(rs[:k:k], rs[k+1:]...)
			case 1:
				rs = append(rs[:k+1:k+1], rs[k:]...)
			case 2:
				rs[k], rs[k+1] = rs[k+1], rs[k]
			case 3:
				alike := map[rune]rune{'c': 's', 's': 'z', 'v': 'b', 'b': 'v', 'y': 'i', 'i': 'y', 'z': 's', 'g': 'j', 'j': 'g', 'h': 'h'}
				if a, ok := alike[rs[k]]; ok {
					rs[k] = a
				} else {
					rs = append(rs[:k:k], rs[k+1:]...)
				}
			}
		}
		w = string(rs)
		if utf8.RuneCountInString(w) <= 3 && i+1 < len(ws) && r%4 == 1 && isWordRune([]rune(w)[0]) {
			ws[i+1] = w + ws[i+1]
			continue
		}
		out = append(out, w)
	}
	return strings.Join(out, " ")
}

// TestMisspelledWritingGeneralizes: the character n-grams let the engine read hurried writing
// (letters dropped, doubled, swapped or replaced by one that sounds alike; short words written
// together with the next one) of the labelled sets: it decides more of them right than the same
// engine without its n-gram evidence, and most of them right.
func TestMisspelledWritingGeneralizes(t *testing.T) {
	with := NewEngine(DefaultCatalog())
	without := NewEngine(DefaultCatalog())
	without.nb.grams = 0 // the word model only
	var ex []Example
	for _, f := range []string{"testdata/requests.jsonl", "testdata/untuned/ipn_mixed.jsonl", "testdata/untuned/ipn_mixed4.jsonl", "testdata/untuned/short_chat.jsonl"} {
		ex = append(ex, readExamplesFile(t, f)...)
	}
	for i := range ex {
		ex[i].Subject, ex[i].Body = misspell(ex[i].Subject), misspell(ex[i].Body)
	}
	rw, ro := Evaluate(with, ex), Evaluate(without, ex)
	t.Logf("misspelled sets (%d): with n-grams outcome %.1f %%, area %.1f %%, kind %.1f %%; without outcome %.1f %%, area %.1f %%, kind %.1f %%",
		len(ex), 100*rw.OutcomeAccuracy, 100*rw.AreaAccuracy, 100*rw.KindAccuracy, 100*ro.OutcomeAccuracy, 100*ro.AreaAccuracy, 100*ro.KindAccuracy)
	if rw.OutcomeAccuracy < ro.OutcomeAccuracy+0.01 || rw.AreaAccuracy < ro.AreaAccuracy+0.01 {
		t.Errorf("the n-grams should gain at least a point of outcome and area on misspelled text")
	}
	if rw.OutcomeAccuracy < 0.9 || rw.AreaAccuracy < 0.88 {
		t.Errorf("misspelled text: outcome %.3f, area %.3f; want at least 0.90 and 0.88", rw.OutcomeAccuracy, rw.AreaAccuracy)
	}
}

// TestMisspellJoinsAndMisspells checks the rewriting the test above relies on.
func TestMisspellJoinsAndMisspells(t *testing.T) {
	ex := readExamplesFile(t, "testdata/requests.jsonl")
	in, out, changed := 0, 0, 0
	for _, x := range ex {
		m := misspell(x.Body)
		if m != misspell(x.Body) {
			t.Fatalf("misspell is not deterministic on %q", x.Body)
		}
		in += len(strings.Fields(x.Body))
		out += len(strings.Fields(m))
		if m != strings.Join(strings.Fields(x.Body), " ") {
			changed++
		}
	}
	if out >= in || changed < len(ex)*3/4 {
		t.Errorf("misspell should change most texts (%d of %d) and write some words together (%d words of %d)", changed, len(ex), out, in)
	}
}

// TestNgramsReadRunTogetherWords: a misspelled word, or one written together with the one before
// it, unknown to the word model (each of these goes to aclaracion without the n-grams), still names
// its service.
func TestNgramsReadRunTogetherWords(t *testing.T) {
	e := NewEngine(DefaultCatalog())
	for _, c := range []struct{ text, area string }{
		{"desde la mañana no me abre micorreo", "CORREO"},
		{"se cayo elinternet de todo el edificio", "RED"},
		{"no funsiona la bideoconferensia", "VIDEOCONF"},
		{"la inpresora no inprime", "EQUIPO"},
		{"nesesito una lisencia de windouws", "LICENCIAS"},
	} {
		d := e.Decide(Input{Text: c.text})
		if d.Area != c.area {
			t.Errorf("%q: area %q, want %q (%s)", c.text, d.Area, c.area, d.Explanation)
		}
	}
}
