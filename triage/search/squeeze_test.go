package search

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestSqueeze(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"", 10, ""},
		{"  hola \n\t mundo  ", 100, "hola mundo"},
		{"uno dos tres", 7, "uno dos"},
		{"uno dos tres", 8, "uno dos"},
		{"año", 2, "a"},
		{strings.Repeat("á", 10), 5, "áá"},
	} {
		got := squeeze(c.in, c.n)
		if got != c.want || len(got) > c.n || !utf8.ValidString(got) {
			t.Errorf("squeeze(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
}

// A signature never rules out a text that holds the word.
func TestSigNeverMissesAWordOfTheText(t *testing.T) {
	text := "01jd7q3z9x sai-2025-0042 jose lopez hernandez jlopez@ipn.mx escom no puedo entrar al correo institucional"
	g := sigOf(text)
	for _, w := range strings.Fields(text) {
		for i := 0; i < len(w); i++ {
			for j := i + 1; j <= len(w); j++ {
				ws := sigOf(w[i:j])
				if !g.covers(&ws) {
					t.Fatalf("signature rules out %q, which is in the text", w[i:j])
				}
			}
		}
	}
	miss := sigOf("impresora")
	if g.covers(&miss) {
		t.Logf("signature passes a word the text lacks (allowed, rare)")
	}
}
