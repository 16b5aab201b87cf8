package triage

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/kljensen/snowball/spanish"

	"github.com/ipn-cgsi/caud/config/fold"
)

// isWordRune reports whether r belongs to a token; everything else separates tokens.
func isWordRune(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsDigit(r)
}

// words splits folded text into tokens.
func words(folded string) []string {
	return strings.FieldsFunc(folded, func(r rune) bool { return !isWordRune(r) })
}

// stopwords are folded Spanish function words that carry no topic. Negations and question words
// (no, ya, sin, nunca, como, cuando, donde) are deliberately absent: kind cues and phrases use them.
var stopwords = func() map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(`a al algo algun alguna algunas alguno algunos ante antes aqui asi aun
		bien cada con contra cual cuales de del desde e el ella ellas ello ellos en entre era eran eres es esa esas
		ese eso esos esta estaba estaban estamos estan estar este esto estos estoy fue fueron ha habia han has hay
		he la las le les lo los mas me mi mis mucho muy nos nosotros o os otra otro para pero por porque pues que
		quien se sea ser si sido siendo sobre son su sus tal tambien te tenemos tener tengo ti tiene tienen toda
		todas todo todos tu tus u un una unas uno unos usted ustedes vosotros y yo les lo asimismo dicho dicha
		favor gracias hola buen buenos buenas dias tardes noches saludo saludos cordial atentamente presente
		medio solo ahi alli etc del mediante cual nuestro nuestra nuestros nuestras vuestro sus ese esa este`) {
		m[w] = true
	}
	return m
}()

// stem returns the Snowball Spanish stem of a folded token.
func stem(w string) string {
	if len(w) <= 2 {
		return w
	}
	st := spanish.Stem(singular(w), true)
	// Snowball keeps superlatives: "lentísimo" should meet "lento".
	if base, ok := strings.CutSuffix(st, "isim"); ok && len(base) >= 3 {
		return base
	}
	return st
}

// singular undoes the regular Spanish plural before stemming, because Snowball stems some singular
// and plural forms apart ("taller" → "tall", "talleres" → "taller").
func singular(w string) string {
	n := len(w)
	if n < 5 || w[n-1] != 's' {
		return w
	}
	if w[n-2] == 'e' {
		switch w[n-3] {
		case 'r', 'l', 'n', 'd', 'j', 'y', 'x':
			return w[:n-2]
		case 'c':
			return w[:n-3] + "z"
		}
		return w[:n-1]
	}
	switch w[n-2] {
	case 'a', 'o', 'i', 'u':
		return w[:n-1]
	}
	return w
}

// analyze turns free text into content stems: folded, tokenized, stopwords dropped, stemmed.
// It is used to compile catalog terms, so catalog and request text go through the same pipeline.
func analyze(s string) []string {
	var out []string
	for _, w := range words(fold.String(s)) {
		if stopwords[w] {
			continue
		}
		out = append(out, stem(w))
	}
	return out
}

// closingPrefixes start the signature or closing of a message; what follows is not scored.
// They are compared against a folded line with spaces removed ("A T E N T A M E N T E" too).
var closingPrefixes = []string{
	"saludos", "saludoscordiales", "atentamente", "atte", "cordialmente", "sinotroparticular",
	"quedoatent", "quedoasusordenes", "quedamosatent", "reciba", "enviadodesdemi", "sentfrom",
	"mensajeoriginal", "originalmessage", "ccp", "c.c.p", "gracias", "muchasgracias", "deantemano",
	"agradezco", "saludoscordiales", "unsaludo", "quedoatusordenes",
}

// cleanBody removes what should not be scored from a message body: memo letterheads up to
// "PRESENTE", quoted lines, forwarded or replied history and the signature. When the cleaning would
// leave nothing, the original body is kept so that a one-line signature-only text still counts.
func cleanBody(body string) string {
	own, _ := splitBody(body)
	return own
}

// maxQuoted bounds the quoted or forwarded history kept for (low-weight) scoring.
const maxQuoted = 4000

// splitBody separates the requester's own text from quoted or forwarded history. The letterhead of
// a memo, closings and signatures are dropped from both. When the own text would be empty, the
// whole body is the own text.
func splitBody(body string) (own, quoted string) {
	lines := strings.Split(body, "\n")
	// A memo (oficio) addresses its recipient before the text: drop the letterhead.
	for i, l := range lines {
		if i > 40 {
			break
		}
		if squash(l) == "presente" {
			lines = lines[i+1:]
			break
		}
	}
	var b, q strings.Builder
	for i, l := range lines {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, ">") {
			if q.Len() < maxQuoted {
				q.WriteString(strings.TrimLeft(t, "> "))
				q.WriteByte('\n')
			}
			continue
		}
		f := fold.String(t)
		if isHistoryHeader(f, lines, i) || isForwardMarker(f) {
			for _, h := range lines[i+1:] {
				if q.Len() >= maxQuoted {
					break
				}
				q.WriteString(strings.TrimLeft(strings.TrimSpace(h), "> "))
				q.WriteByte('\n')
			}
			break
		}
		if t == "--" || t == "__" || strings.HasPrefix(t, "-----") || strings.HasPrefix(t, "_____") {
			break
		}
		if len(t) < 60 {
			s := squash(t)
			stop := false
			for _, p := range closingPrefixes {
				if strings.HasPrefix(s, p) {
					stop = true
					break
				}
			}
			if stop {
				break
			}
		}
		b.WriteString(l)
		b.WriteByte('\n')
	}
	own = dropSignatureBlock(b.String())
	if strings.TrimSpace(own) == "" {
		return body, ""
	}
	return own, q.String()
}

// isForwardMarker detects the separator line of a forwarded or original message.
func isForwardMarker(f string) bool {
	f = strings.Trim(f, "-_ *")
	return strings.HasPrefix(f, "forwarded message") || strings.HasPrefix(f, "mensaje reenviado") ||
		strings.HasPrefix(f, "mensaje original") || strings.HasPrefix(f, "original message") ||
		strings.HasPrefix(f, "inicio del mensaje reenviado") || strings.HasPrefix(f, "begin forwarded message")
}

// dropSignatureBlock removes a trailing paragraph that looks like a signature with no closing
// before it: two to seven short lines, none ending a sentence (name, position, unit, extension).
func dropSignatureBlock(s string) string {
	t := strings.TrimRight(s, " \t\r\n")
	i := strings.LastIndex(t, "\n\n")
	if i < 0 {
		return s
	}
	lines := strings.Split(strings.TrimSpace(t[i:]), "\n")
	if len(lines) < 2 || len(lines) > 7 {
		return s
	}
	marked := false
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if isSignatureLine(l) {
			marked = true
		}
		if len(l) > 70 || strings.HasSuffix(l, ".") && !strings.HasSuffix(l, "..") ||
			strings.HasSuffix(l, "?") || strings.HasSuffix(l, "!") || strings.HasSuffix(l, ":") {
			return s
		}
	}
	if !marked {
		return s
	}
	return t[:i]
}

// signatureMarkers begin (folded) lines typical of a signature: titles, positions, contact data.
var signatureMarkers = []string{"ing.", "lic.", "dr.", "dra.", "mtro.", "mtra.", "m. en c.", "c.p.", "arq.",
	"profr.", "profra.", "ext", "tel", "cel", "jefe", "jefa", "coordinador", "subdirector", "director",
	"departamento", "auxiliar", "analista", "secretari", "responsable", "encargad", "profesor", "docente"}

func isSignatureLine(l string) bool {
	f := fold.String(l)
	for _, m := range signatureMarkers {
		if strings.HasPrefix(f, m) {
			return true
		}
	}
	return false
}

// isHistoryHeader detects "El lun, 3 de sep ... escribió:", "On ... wrote:" and a "De:"/"From:" line
// followed by "Enviado"/"Sent"/"Para"/"To"/"Asunto" lines.
func isHistoryHeader(f string, lines []string, i int) bool {
	if (strings.HasPrefix(f, "el ") && strings.HasSuffix(f, "escribio:")) ||
		(strings.HasPrefix(f, "on ") && strings.HasSuffix(f, "wrote:")) {
		return true
	}
	if strings.HasPrefix(f, "de:") || strings.HasPrefix(f, "from:") {
		for j := i + 1; j < len(lines) && j <= i+3; j++ {
			n := fold.String(strings.TrimSpace(lines[j]))
			for _, p := range []string{"enviado", "sent:", "para:", "to:", "asunto:", "subject:", "fecha:", "date:"} {
				if strings.HasPrefix(n, p) {
					return true
				}
			}
		}
	}
	return false
}

// squash folds a line and removes everything but letters, digits and dots.
func squash(s string) string {
	var b strings.Builder
	for _, r := range fold.String(s) {
		if isWordRune(r) || r == '.' {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// dropMentions removes @handles ("@CGSI_IPN"): they name the addressee, not the matter.
func dropMentions(s string) string {
	if !strings.Contains(s, "@") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		// An @ that starts a word (not an e-mail address like ana@ipn.mx) starts a handle.
		if c == '@' && (i == 0 || !isWordRune(rune(s[i-1]))) {
			j := i + 1
			for j < len(s) && (s[j] == '_' || s[j] < utf8.RuneSelf && isWordRune(rune(s[j]))) {
				j++
			}
			// "@ipn.mx", "@alumno.ipn.mx": the domain of an address, not a handle.
			domain := j+1 < len(s) && s[j] == '.' && isWordRune(rune(s[j+1]))
			if j > i+1 && !domain {
				b.WriteByte(' ')
				i = j - 1
				continue
			}
		}
		b.WriteByte(c)
	}
	return b.String()
}
