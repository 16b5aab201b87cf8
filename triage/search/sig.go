package search

// sig is a 1024-bit signature of the trigrams of a text: a word whose trigrams are not all in a
// text's signature is not in the text, which lets a search by words skip most entries without
// reading their text. A text of a few hundred bytes sets about a third of the bits, so a word of
// five letters passes a text that lacks it about 3 % of the time; the text is then read.
type sig [16]uint64

// sigOf returns the signature of s's trigrams (bytes; s is folded text).
func sigOf(s string) sig {
	var g sig
	for i := 0; i+3 <= len(s); i++ {
		h := (uint32(s[i])*0x9E3779B1 ^ uint32(s[i+1])*0x85EBCA77 ^ uint32(s[i+2])*0xC2B2AE3D) >> 22 // 10 bits
		g[h>>6] |= 1 << (h & 63)
	}
	return g
}

// covers reports whether every bit of w is set in g.
func (g *sig) covers(w *sig) bool {
	for i := range g {
		if g[i]&w[i] != w[i] {
			return false
		}
	}
	return true
}
