package memo

import (
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/config/fold"
)

// Units resolves a unit as printed on a memo to its canonical id ("ESCOM"). It has the shape of
// desk.Units' Canonical; the lead adapts config.Units (Match) to it.
type Units interface {
	Canonical(s string) (string, bool)
}

// Fields is what Extract reads off a memo's text.
type Fields struct {
	// Number is the oficio number with OCR slips in its letter segments repaired (ESE0 → ESEO).
	Number string
	// Date is YYYY-MM-DD when the date line could be read; DateText is the line as printed.
	Date, DateText string
	// Unit is the canonical unit id when units know the letterhead (the most specific line that
	// matches wins) or a segment of the oficio number; otherwise the first letterhead line under the
	// institute's name, as printed. UnitKnown says which.
	Unit      string
	UnitKnown bool
	Subject   string
	Addressee string
	// Signer is the name after "Atentamente" without its title (Lic., Ing., Dra., M. en C.), in
	// title case; Position is the line(s) under it.
	Signer, Position string
	CCP              []string
	Emails           []string
	// Extensions are the telephone extensions found, those of the signature block first.
	Extensions []string
}

// Memo returns the fields as a channels.Memo (without pages, method and confidence).
func (f Fields) Memo() *channels.Memo {
	return &channels.Memo{
		Number: f.Number, Date: f.Date, DateText: f.DateText, Unit: f.Unit, Subject: f.Subject,
		Addressee: f.Addressee, Signer: f.Signer, Position: f.Position, CCP: f.CCP, Emails: f.Emails,
		Extensions: f.Extensions,
	}
}

// maxExtractBytes bounds what Extract reads; memo headers and signatures fit many times over.
const maxExtractBytes = 256 << 10

var (
	numberRe = regexp.MustCompile(`(?i)(?:oficio|of\.)\s*(?:n[uú]m(?:ero)?|no|n[°º]|#)?\s*[.:°º]*\s*(?:de\s+oficio\s*)?[.:]?\s*([\p{L}0-9][\p{L}0-9]*(?:\s?[/\-.]\s?[\p{L}0-9]+){1,7})`)
	// "No. de oficio: X" and "Núm. de oficio X".
	numberRe2  = regexp.MustCompile(`(?i)\bn(?:o|[uú]m)\.?\s*de\s+oficio\s*[.:]?\s*([\p{L}0-9][\p{L}0-9]*(?:\s?[/\-.]\s?[\p{L}0-9]+){1,7})`)
	dateRe     = regexp.MustCompile(`(?i)\b([0-3]?[0-9])\s*(?:de\s+)?(enero|febrero|marzo|abril|mayo|junio|julio|agosto|septiembre|setiembre|octubre|noviembre|diciembre)\s+(?:de[l]?\s+)?((?:19|20)[0-9]{2})\b`)
	asuntoRe   = regexp.MustCompile(`(?i)^\s*asunto\s*[:;.,]?\s*(.*)$`)
	presenteRe = regexp.MustCompile(`(?i)^\s*p\s*r\s*e\s*s\s*e\s*n\s*t\s*e\s*[.:]?\s*$`)
	atteRe     = regexp.MustCompile(`(?i)^\s*a\s*t\s*e\s*n\s*t\s*a\s*m\s*e\s*n\s*t\s*e\s*[.,:]?\s*$`)
	ccpRe      = regexp.MustCompile(`(?i)^\s*c\s*[.,]\s*c\s*[.,]\s*p\s*[.,:]?\s*(.*)$`)
	emailRe    = regexp.MustCompile(`[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}`)
	extRe      = regexp.MustCompile(`(?i)\bext(?:ensi[oó]n(?:es)?)?\s*[.:]?\s*(?:no\.?\s*)?([0-9]{4,6})\b`)
	initialsRe = regexp.MustCompile(`^[\p{Lu}]{2,5}\s*/\s*[\p{Ll}]{2,5}$`)
	mottoRe    = regexp.MustCompile(`(?i)t[eé]cnica al servicio|^["“”'].*["“”']$`)
	titleRe    = regexp.MustCompile(`(?i)^((?:(?:lic|ing|arq|dra?|mtr[ao]|mt[ro]a?|prof(?:ra)?|c\.?\s*p|l\.?\s*c|c|m\.?\s*en\s*c|q\.?\s*f\.?\s*b|m\.?\s*c)\.\s*)+)`)
	spacesRe   = regexp.MustCompile(`[ \t]+`)
)

var months = map[string]string{
	"enero": "01", "febrero": "02", "marzo": "03", "abril": "04", "mayo": "05", "junio": "06",
	"julio": "07", "agosto": "08", "septiembre": "09", "setiembre": "09", "octubre": "10",
	"noviembre": "11", "diciembre": "12",
}

// Extract reads the memo fields out of text (OCR output or a PDF text layer). It never fails: what
// cannot be read stays empty. OCR slips common in scans (l for 1 or I, 0 for O and the reverse) are
// repaired on a copy used for matching only. units may be nil. Safe for concurrent use.
func Extract(text string, units Units) Fields {
	if len(text) > maxExtractBytes {
		text = text[:maxExtractBytes]
	}
	text = strings.ToValidUTF8(text, "\uFFFD")
	fixed := deslip(text)
	lines := splitLines(fixed)
	var f Fields

	oficioLine := -1
	for i, l := range lines {
		if m := numberRe2.FindStringSubmatch(l); m != nil {
			f.Number, oficioLine = cleanNumber(m[1]), i
			break
		}
		if m := numberRe.FindStringSubmatch(l); m != nil && strings.ContainsAny(m[1], "/-") {
			f.Number, oficioLine = cleanNumber(m[1]), i
			break
		}
	}

	f.Number = fixDepartment(f.Number, units)

	asunto := -1
	for i, l := range lines {
		if m := asuntoRe.FindStringSubmatch(l); m != nil {
			asunto = i
			subj := strings.TrimSpace(m[1])
			// A subject may wrap: continue on lines that start in lower case.
			for j := i + 1; j < len(lines) && j < i+4; j++ {
				n := strings.TrimSpace(lines[j])
				r, _ := utf8.DecodeRuneInString(n)
				if n == "" || !unicode.IsLower(r) {
					break
				}
				subj += " " + n
			}
			if subj == "" && i+1 < len(lines) {
				subj = strings.TrimSpace(lines[i+1])
			}
			f.Subject = clip(strings.TrimRight(subj, " ."), 300)
			break
		}
	}

	headerEnd := len(lines)
	for _, k := range []int{oficioLine, asunto} {
		if k >= 0 && k < headerEnd {
			headerEnd = k
		}
	}
	for i, l := range lines {
		if i > headerEnd+3 && f.DateText != "" {
			break
		}
		if m := dateRe.FindStringSubmatchIndex(l); m != nil {
			day := l[m[2]:m[3]]
			if len(day) == 1 {
				day = "0" + day
			}
			if day != "00" && day <= "31" {
				f.Date = l[m[6]:m[7]] + "-" + months[strings.ToLower(l[m[4]:m[5]])] + "-" + day
				f.DateText = clip(strings.TrimSpace(l), 200)
				if i < headerEnd {
					headerEnd = i
				}
				break
			}
		}
	}

	f.Unit, f.UnitKnown = findUnit(lines[:headerEnd], f.Number, units)

	// Addressee: the lines after Asunto (or the date) up to PRESENTE.
	from := max(asunto, 0)
	for i := from; i < len(lines) && i < from+12; i++ {
		if presenteRe.MatchString(lines[i]) {
			var parts []string
			for j := i - 1; j > from && j >= i-3; j-- {
				l := strings.TrimSpace(lines[j])
				if l == "" || dateRe.MatchString(l) || asuntoRe.MatchString(l) {
					break
				}
				parts = append([]string{l}, parts...)
			}
			f.Addressee = clip(strings.Join(parts, ", "), 300)
			break
		}
	}

	// Signer and position after "Atentamente".
	sig := -1
	for i, l := range lines {
		if atteRe.MatchString(l) {
			sig = i
		}
	}
	if sig >= 0 {
		j := sig + 1
		for j < len(lines) && (strings.TrimSpace(lines[j]) == "" || mottoRe.MatchString(strings.TrimSpace(lines[j]))) {
			j++
		}
		if j < len(lines) {
			f.Signer = clip(signerName(lines[j]), 200)
			var pos []string
			for k := j + 1; k < len(lines) && k < j+4; k++ {
				l := strings.TrimSpace(lines[k])
				if l == "" || ccpRe.MatchString(l) || extRe.MatchString(l) || emailRe.MatchString(l) ||
					initialsRe.MatchString(l) || strings.HasPrefix(strings.ToLower(l), "tel") {
					break
				}
				pos = append(pos, l)
			}
			f.Position = clip(strings.Join(pos, " "), 300)
		}
	}

	for _, l := range lines {
		if m := ccpRe.FindStringSubmatch(l); m != nil && strings.TrimSpace(m[1]) != "" && len(f.CCP) < 20 {
			f.CCP = append(f.CCP, clip(strings.TrimSpace(m[1]), 300))
		}
	}
	seen := map[string]bool{}
	for _, e := range emailRe.FindAllString(text, 20) {
		e = strings.ToLower(strings.Trim(e, "."))
		if !seen[e] {
			seen[e] = true
			f.Emails = append(f.Emails, e)
		}
	}
	seen = map[string]bool{}
	addExt := func(s string) {
		for _, m := range extRe.FindAllStringSubmatch(s, 20) {
			if !seen[m[1]] && len(f.Extensions) < 20 {
				seen[m[1]] = true
				f.Extensions = append(f.Extensions, m[1])
			}
		}
	}
	if sig >= 0 {
		addExt(strings.Join(lines[sig:], "\n"))
	}
	addExt(fixed)
	return f
}

// findUnit resolves the issuing unit from the letterhead lines (most specific line last), each line
// alone and joined with the one above it ("ESCUELA SUPERIOR DE INGENIERÍA Y ARQUITECTURA" /
// "UNIDAD TICOMÁN"), then from the segments of the oficio number.
func findUnit(header []string, number string, units Units) (string, bool) {
	var cand []string
	for _, l := range header {
		l = strings.TrimSpace(l)
		if l == "" || isInstitute(l) || mottoRe.MatchString(l) {
			continue
		}
		cand = append(cand, l)
	}
	if len(cand) > 6 {
		cand = cand[:6]
	}
	if units != nil {
		try := func(s string) (string, bool) {
			if id, ok := units.Canonical(s); ok {
				return id, true
			}
			// A quoted patron name after the unit ("CECyT No. 13 "RICARDO FLORES MAGÓN"").
			if k := strings.IndexAny(s, "\"“"); k > 0 {
				return units.Canonical(strings.TrimSpace(s[:k]))
			}
			return "", false
		}
		for i := len(cand) - 1; i >= 0; i-- {
			if i > 0 {
				if id, ok := try(cand[i-1] + " " + cand[i]); ok {
					return id, true
				}
			}
			if id, ok := try(cand[i]); ok {
				return id, true
			}
		}
		segs := strings.Split(number, "/")
		for i := len(segs) - 1; i >= 0; i-- {
			s := segs[i]
			if strings.IndexFunc(s, unicode.IsLetter) < 0 {
				continue
			}
			if id, ok := units.Canonical(s); ok {
				return id, true
			}
			if id, ok := units.Canonical(strings.ReplaceAll(s, "-", " ")); ok {
				return id, true
			}
		}
	}
	if len(cand) > 0 {
		return clip(cand[0], 200), false
	}
	return "", false
}

func isInstitute(l string) bool {
	k := fold.String(l)
	// OCR often loses the tilde: "año de" and "ano de" both start the year's motto.
	return strings.Contains(k, "instituto politecnico") || strings.Contains(k, "año de") || strings.Contains(k, "ano de") || strings.HasPrefix(k, "\"")
}

// cleanNumber trims an oficio number and repairs O/0 slips in its letter segments.
func cleanNumber(s string) string {
	s = strings.Join(strings.Fields(s), "")
	s = strings.Trim(s, ".-/")
	segs := strings.Split(s, "/")
	for i, seg := range segs {
		letters, others := 0, 0
		for _, r := range seg {
			switch {
			case unicode.IsLetter(r) && r != 'O' && r != 'o':
				letters++
			case r >= '1' && r <= '9':
				others++
			}
		}
		if letters >= 2 && others == 0 {
			segs[i] = strings.ReplaceAll(seg, "0", "O")
		} else if letters == 0 {
			segs[i] = strings.NewReplacer("O", "0", "o", "0", "l", "1", "I", "1").Replace(seg)
		}
	}
	return clip(strings.Join(segs, "/"), 80)
}

// fixDepartment repairs a trailing "1" read for "I" in the department segments of an oficio number
// (ENCB/SEP1/1187/2025 is ENCB/SEPI/...): an upper-case segment after the first, of three or more
// letters and that one digit, that is not itself a unit (CET1 is CET 1).
func fixDepartment(number string, units Units) string {
	segs := strings.Split(number, "/")
	for i := 1; i < len(segs); i++ {
		s := segs[i]
		if len(s) < 4 || s[len(s)-1] != '1' {
			continue
		}
		body := s[:len(s)-1]
		if strings.IndexFunc(body, func(r rune) bool { return !unicode.IsUpper(r) }) >= 0 {
			continue
		}
		if units != nil {
			if _, ok := units.Canonical(s); ok {
				continue
			}
		}
		segs[i] = body + "I"
	}
	return strings.Join(segs, "/")
}

// signerName strips the academic title and title-cases an upper-case name.
func signerName(l string) string {
	l = strings.TrimSpace(l)
	if m := titleRe.FindStringIndex(l); m != nil && m[1] < len(l) {
		l = strings.TrimSpace(l[m[1]:])
	}
	l = spacesRe.ReplaceAllString(l, " ")
	if strings.ToUpper(l) != l {
		return l
	}
	words := strings.Fields(strings.ToLower(l))
	for i, w := range words {
		switch w {
		case "de", "del", "la", "las", "los", "y":
			if i > 0 {
				continue
			}
		}
		r, n := utf8.DecodeRuneInString(w)
		words[i] = string(unicode.ToUpper(r)) + w[n:]
	}
	return strings.Join(words, " ")
}

// deslip repairs common OCR confusions inside words: in an upper-case word "l" and "|" are "I" and
// "0" is "O" (DlRECCIÓN, ESE0, 0ficio); in a number "l", "I" and "O" are digits (l4, 2O25).
func deslip(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	word := make([]rune, 0, 32)
	flush := func() {
		if len(word) > 0 {
			fixWord(word)
			for _, r := range word {
				b.WriteRune(r)
			}
			word = word[:0]
		}
	}
	for _, r := range s {
		if unicode.IsLetter(r) || unicode.IsDigit(r) || r == '|' {
			word = append(word, r)
			continue
		}
		flush()
		b.WriteRune(r)
	}
	flush()
	return b.String()
}

func fixWord(w []rune) {
	var upper, lower, digits, zeros, ls, confusable int
	for _, r := range w {
		switch {
		case r == '0':
			zeros++
		case r >= '1' && r <= '9':
			digits++
		case r == 'l' || r == '|':
			ls++
		case r == 'O' || r == 'o' || r == 'I':
			confusable++
			if r == 'o' {
				lower++
			} else {
				upper++
			}
		case unicode.IsUpper(r):
			upper++
		case unicode.IsLower(r):
			lower++
		}
	}
	switch {
	case digits+zeros > 0 && digits+zeros >= len(w)-1 && upper+lower+ls > 0 && len(w) >= 2:
		// A number with a letter slipped in: l4, 2O25, 2l.
		for i, r := range w {
			switch r {
			case 'l', '|', 'I':
				w[i] = '1'
			case 'O', 'o':
				w[i] = '0'
			}
		}
	case digits == 0 && upper >= 2 && lower == 0:
		// An upper-case word: DlRECCIÓN, ESE0, COORDlNACIÓN.
		for i, r := range w {
			switch r {
			case 'l', '|':
				w[i] = 'I'
			case '0':
				w[i] = 'O'
			}
		}
	case digits == 0 && zeros == 1 && w[0] == '0' && len(w) >= 3 && ls == 0:
		// 0ficio, 0FICIO.
		w[0] = 'O'
	case digits == 0 && zeros > 0 && upper+lower >= 1 && len(w) >= 2 && w[len(w)-1] == '0' && lower == 0:
		w[len(w)-1] = 'O'
	}
	// "N0." after the digit rules: N followed by 0.
	if len(w) == 2 && (w[0] == 'N' || w[0] == 'n') && w[1] == '0' {
		w[1] = 'o'
	}
}

func splitLines(s string) []string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	ls := strings.Split(s, "\n")
	for i, l := range ls {
		ls[i] = strings.TrimRight(spacesRe.ReplaceAllString(l, " "), " ")
	}
	return ls
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
