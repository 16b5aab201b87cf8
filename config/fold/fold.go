// Package fold is caud's one way of comparing Spanish text regardless of case and accents, used by
// the unit list, the channels' signature and memo readers, and the triage matcher.
//
// The rules: letters are lowercased; diacritics are removed (á → a, ü → u, ç → c), except the
// tilde of ñ, which in Spanish makes another letter (año is not ano; a matcher's typo tolerance
// absorbs a missing tilde); ligatures are spelt out (ß → ss, æ → ae, œ → oe); the ordinal
// indicators ª and º, and the degree sign ° written for º ("N° 9"), become a and o. Decomposition
// comes from Unicode's tables (golang.org/x/text/unicode/norm), so any Latin letter folds alike.
package fold

import (
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// tableEnd bounds the precomputed runes: Latin-1 Supplement, Latin Extended-A and -B.
const tableEnd = 0x250

// table holds the folded form of every rune below tableEnd; it is computed once and only read.
var table = sync.OnceValue(func() []string {
	t := make([]string, tableEnd)
	for r := rune(0); r < tableEnd; r++ {
		t[r] = compute(r)
	}
	return t
})

func compute(r rune) string {
	r = unicode.ToLower(r)
	switch r {
	case 'ñ', 'Ñ':
		return "ñ"
	case 'ß':
		return "ss"
	case 'æ', 'Æ':
		return "ae"
	case 'œ', 'Œ':
		return "oe"
	case 'ø', 'Ø':
		return "o"
	case 'ı':
		return "i"
	case 'ª':
		return "a"
	case 'º', '°':
		return "o"
	case 'đ', 'Đ':
		return "d"
	case 'ł', 'Ł':
		return "l"
	}
	var b strings.Builder
	for _, c := range norm.NFD.String(string(r)) {
		switch {
		case unicode.Is(unicode.Mn, c):
		case c != r && c >= utf8.RuneSelf:
			b.WriteString(compute(c)) // a base letter that folds further (ǣ → æ → ae)
		default:
			b.WriteRune(c)
		}
	}
	if b.Len() == 0 {
		return string(r)
	}
	return b.String()
}

// AppendRune appends the folded form of r (one or two letters, or r lowercased) to buf.
func AppendRune(buf []byte, r rune) []byte { return appendRune(buf, r, table()) }

func appendRune(buf []byte, r rune, t []string) []byte {
	switch {
	case r < utf8.RuneSelf:
		if 'A' <= r && r <= 'Z' {
			r += 'a' - 'A'
		}
		return append(buf, byte(r))
	case r < tableEnd:
		return append(buf, t[r]...)
	}
	return append(buf, compute(r)...)
}

// String returns s folded: lowercased, without accents but with its ñ. Text that is ASCII already
// costs one lowercasing.
func String(s string) string {
	i := 0
	for i < len(s) && s[i] < utf8.RuneSelf {
		i++
	}
	if i == len(s) {
		return strings.ToLower(s)
	}
	t := table()
	buf := make([]byte, 0, len(s)+8)
	for _, r := range s {
		buf = appendRune(buf, r, t)
	}
	return string(buf)
}

// Loose is String with ñ as n too: for matching what people type on keyboards without ñ against
// names (units, a search for "Nunez" finding Núñez). The triage matcher keeps ñ (String) and lets
// its typo tolerance absorb a missing tilde.
func Loose(s string) string {
	f := String(s)
	if !strings.Contains(f, "ñ") {
		return f
	}
	return strings.ReplaceAll(f, "ñ", "n")
}
