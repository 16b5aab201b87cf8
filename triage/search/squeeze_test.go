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
