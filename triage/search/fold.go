package search

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// fold lowercases s and drops its accents (and the tilde of ñ: "Núñez" and "Nunez" are one name to
// someone typing a search). A letter whose canonical decomposition starts with an ASCII letter
// becomes that letter; other runes are only lowercased. It allocates once, and not at all for
// lowercase ASCII.
func fold(s string) string {
	i := 0
	for i < len(s) && s[i] < utf8.RuneSelf && (s[i] < 'A' || s[i] > 'Z') {
		i++
	}
	if i == len(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	b.WriteString(s[:i])
	for i < len(s) {
		c := s[i]
		if c < utf8.RuneSelf {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			b.WriteByte(c)
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		if unicode.Is(unicode.Mn, r) {
			continue // a combining accent of decomposed input
		}
		if d := norm.NFD.PropertiesString(s[i-size:]).Decomposition(); len(d) > 0 && d[0] < utf8.RuneSelf {
			r = rune(d[0])
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}

// words splits folded text into words (letters and digits; "@", ".", "-" and "_" kept inside, so an
// address or a folio stays one word).
func words(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r) && !strings.ContainsRune("@.-_", r)
	})
}
