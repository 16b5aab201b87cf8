package search

import (
	"strings"
	"unicode"
)

// words splits text folded by fold.Loose into words (letters and digits; "@", ".", "-" and "_" kept inside, so an
// address or a folio stays one word).
func words(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r) && !strings.ContainsRune("@.-_", r)
	})
}
