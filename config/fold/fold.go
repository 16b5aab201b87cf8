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
	if unicode.Is(unicode.Mn, r) {
		return "" // a combining accent left over
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
	return b.String()
}

// AppendRune appends the folded form of r (one or two letters, or r lowercased) to buf.
func AppendRune(buf []byte, r rune) []byte {
	if r < utf8.RuneSelf {
		return append(buf, lowerASCII(byte(r)))
	}
	return append(buf, foldedRune(r, table())...)
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func foldedRune(r rune, t []string) string {
	if r < tableEnd {
		return t[r]
	}
	return compute(r)
}

// String returns s folded: lowercased, without accents but with its ñ. Lowercase ASCII is returned
// as is; other text costs one allocation (decomposed input, a letter followed by combining
// accents, is composed first so that n + U+0303 stays ñ).
func String(s string) string {
	i := 0
	for i < len(s) && s[i] < utf8.RuneSelf && (s[i] < 'A' || s[i] > 'Z') {
		i++
	}
	if i == len(s) {
		return s
	}
	if !isASCII(s[i:]) && !norm.NFC.IsNormalString(s) {
		s, i = norm.NFC.String(s), 0
	}
	t := table()
	var b strings.Builder
	b.Grow(len(s) + 8)
	b.WriteString(s[:i])
	for _, r := range s[i:] {
		if r < utf8.RuneSelf {
			b.WriteByte(lowerASCII(byte(r)))
		} else {
			b.WriteString(foldedRune(r, t))
		}
	}
	return b.String()
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
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
