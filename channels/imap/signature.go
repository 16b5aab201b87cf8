package imap

import (
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/ipn-cgsi/caud/config"
	"github.com/ipn-cgsi/caud/config/fold"
)

// Split is a message body separated into what the requester wrote now, their signature, and the
// quoted history of earlier messages.
type Split struct {
	Text      string
	Signature string
	Quoted    string
}

var (
	reQuoteHeader = []*regexp.Regexp{
		regexp.MustCompile(`(?i)^-{2,}\s*(mensaje original|original message|mensaje reenviado|forwarded message)\s*-{2,}\s*$`),
		regexp.MustCompile(`(?i)^_{10,}\s*$`),
		regexp.MustCompile(`(?i)^(el|on)\s.{4,200}(escribi[óo]|wrote)\s*:\s*$`),
	}
	reOutlookFrom = regexp.MustCompile(`(?i)^(de|from)\s*:\s*\S`)
	reOutlookNext = regexp.MustCompile(`(?i)^(enviado el|enviado|fecha|sent|date|para|to|asunto|subject)\s*:`)
	reWrapStart   = regexp.MustCompile(`(?i)^(el|on)\s.{4,200}$`)
	reWrapEnd     = regexp.MustCompile(`(?i)(escribi[óo]|wrote)\s*:\s*$`)
	reValediction = regexp.MustCompile(`(?i)^(saludos( cordiales)?|un saludo|atentamente|atte\.?|cordialmente|gracias|muchas gracias|mil gracias|gracias de antemano|quedo (atento|atenta)( a sus (comentarios|órdenes))?|sin m[áa]s por el momento|best regards|regards|thanks)\s*[,.!]*\s*$`)
	reTitle       = regexp.MustCompile(`^(Ing|Lic|Dr|Dra|Mtro|Mtra|M\. ?en ?C|Arq|C\.P|Prof|Profa|Biol|Q\.F\.B|Ing\. Arq)\.?\s+\p{Lu}`)
	reExtension   = regexp.MustCompile(`(?i)\b(?:ext(?:ensi[óo]n)?|red ipn)\b\.?\s*(?:no\.?\s*)?[:.]?\s*(\d{4,6})\b`)
)

// SplitBody separates new text, signature and quoted history. Quoted history starts at the first
// reply header ("-----Mensaje original-----", "El … escribió:", an Outlook "De:/Enviado:" block,
// a run of "> " lines); the signature starts at "-- ", at a closing line ("Saludos", "Atte.",
// "Gracias." …) followed by a short block, or is the last short paragraph when it looks like one
// (a title such as "Ing.", an extension, the sender's name). Text is never emptied by the split:
// when nothing would be left, the whole new part is the text.
func SplitBody(body, fromName string) Split {
	body = cleanText(body)
	lines := strings.Split(body, "\n")
	q := quoteStart(lines)
	var sp Split
	if q >= 0 {
		sp.Quoted = strings.TrimSpace(strings.Join(lines[q:], "\n"))
		lines = lines[:q]
	}
	s := signatureStart(lines, fromName)
	if s > 0 {
		text := strings.TrimSpace(strings.Join(lines[:s], "\n"))
		if text != "" {
			sp.Text = text
			sp.Signature = strings.TrimSpace(strings.Join(lines[s:], "\n"))
			return sp
		}
	}
	sp.Text = strings.TrimSpace(strings.Join(lines, "\n"))
	if sp.Text == "" && sp.Quoted != "" && q == 0 {
		// All quoted (e.g. a bare forward): the quoted part is what there is to read.
		sp.Text, sp.Quoted = sp.Quoted, ""
	}
	return sp
}

func quoteStart(lines []string) int {
	for i, l := range lines {
		t := strings.TrimSpace(l)
		if !mayStartQuote(t) {
			continue
		}
		for _, re := range reQuoteHeader {
			if re.MatchString(t) {
				return i
			}
		}
		if reOutlookFrom.MatchString(t) {
			for j := i + 1; j < len(lines) && j <= i+3; j++ {
				if reOutlookNext.MatchString(strings.TrimSpace(lines[j])) {
					return i
				}
			}
		}
		if i+1 < len(lines) && reWrapStart.MatchString(t) && !reWrapEnd.MatchString(t) && reWrapEnd.MatchString(strings.TrimSpace(lines[i+1])) && len(t) < 200 {
			return i
		}
		if strings.HasPrefix(t, ">") {
			// A quote block counts when the rest is mostly quoted, not for one inline "> ".
			quoted, other := 0, 0
			for _, r := range lines[i:] {
				rt := strings.TrimSpace(r)
				switch {
				case strings.HasPrefix(rt, ">"):
					quoted++
				case rt != "":
					other++
				}
			}
			if quoted >= other {
				return i
			}
		}
	}
	return -1
}

// mayStartQuote is a cheap test before the expressions of quoteStart, all of which are anchored at
// the start of the line: "-----", "_____", "El/On …", "De:/From:", ">".
func mayStartQuote(t string) bool {
	if t == "" {
		return false
	}
	c := t[0]
	if c >= 'A' && c <= 'Z' {
		c += 'a' - 'A'
	}
	switch c {
	case '-', '_', 'e', 'o', 'd', 'f', '>':
		return true
	}
	return false
}

func signatureStart(lines []string, fromName string) int {
	n := len(lines)
	for n > 0 && strings.TrimSpace(lines[n-1]) == "" {
		n--
	}
	lines = lines[:n]
	for i, l := range lines {
		if l == "-- " || l == "--" {
			return i
		}
	}
	// A closing line, followed by at most 8 lines.
	for i := len(lines) - 1; i >= 1 && i >= len(lines)-10; i-- {
		if reValediction.MatchString(strings.TrimSpace(lines[i])) {
			return i
		}
	}
	// The last paragraph when it looks like a signature.
	start := len(lines)
	for start > 0 && strings.TrimSpace(lines[start-1]) != "" {
		start--
	}
	if start == 0 || len(lines)-start > 7 {
		return -1
	}
	if looksLikeSignature(lines[start:], fromName) {
		return start
	}
	return -1
}

func looksLikeSignature(block []string, fromName string) bool {
	first := strings.TrimSpace(block[0])
	if reTitle.MatchString(first) || reExtension.MatchString(strings.Join(block, "\n")) {
		return true
	}
	if fromName != "" && foldName(first) != "" && strings.Contains(foldName(fromName), foldName(first)) {
		return true
	}
	// A name: 2-5 capitalized words and no sentence punctuation.
	words := strings.Fields(first)
	if len(words) < 2 || len(words) > 5 || strings.ContainsAny(first, ".?!:,;") {
		return false
	}
	for _, w := range words {
		r, _ := utf8.DecodeRuneInString(w)
		if !unicode.IsUpper(r) {
			return false
		}
	}
	return len(block) >= 2
}

// foldName is s folded (package fold) with only its letters kept, for comparing a signature's
// first line with the sender's display name.
func foldName(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsLetter(r) {
			return r
		}
		return -1
	}, fold.String(s))
}

// Fields are what a signature says about the requester.
type Fields struct {
	Unit      string
	Role      string
	Extension string
}

var ()

// Words that say the requester's role, folded (lowercase, no accents). Two-word cues are joined
// with a space. Looking words up in sets is many times faster than case-insensitive regular
// expressions over a whole signature.
var (
	docenteWords = wordSet("profesor", "profesora", "docente", "academico", "academica", "investigador",
		"investigadora", "catedratico", "catedratica", "academia", "maestro de", "maestra de")
	alumnoWords = wordSet("alumno", "alumna", "estudiante", "boleta")
	adminWords  = wordSet("jefe", "jefa", "coordinador", "coordinadora", "subdirector", "subdirectora",
		"director", "directora", "auxiliar", "apoyo tecnico", "secretario", "secretaria", "analista",
		"administrativo", "administrativa", "asistente", "encargado", "encargada", "responsable", "tecnico",
		"departamento", "subdireccion", "direccion", "gestion escolar")
)

func wordSet(words ...string) map[string]bool {
	m := make(map[string]bool, len(words))
	for _, w := range words {
		m[w] = true
	}
	return m
}

// hasExtensionCue is a cheap test before the extension expression: "ext" or "red ipn" in any case.
func hasExtensionCue(s string) bool {
	low := strings.ToLower(s)
	return strings.Contains(low, "ext") || strings.Contains(low, "red ipn")
}

// roleWords reports which role cues the text has, word by word (and pairs of words).
func roleWords(s string) (docente, alumno, admin bool) {
	words := strings.FieldsFunc(fold.String(s), func(r rune) bool { return !unicode.IsLetter(r) })
	for i, w := range words {
		pair := ""
		if i+1 < len(words) {
			pair = w + " " + words[i+1]
		}
		docente = docente || docenteWords[w] || docenteWords[pair]
		alumno = alumno || alumnoWords[w]
		admin = admin || adminWords[w] || adminWords[pair]
	}
	return docente, alumno, admin
}

// ExtractFields reads unit, role and extension off a signature (or, when there is none, the last
// lines of the text). units may be nil (no unit is then recognized).
func ExtractFields(sig, email string, units *config.Units) Fields {
	var f Fields
	if hasExtensionCue(sig) {
		if m := reExtension.FindStringSubmatch(sig); m != nil {
			f.Extension = m[1]
		}
	}
	docente, alumno, admin := roleWords(sig)
	switch {
	case docente:
		f.Role = "docente"
	case alumno || strings.HasSuffix(strings.ToLower(email), "@alumno.ipn.mx"):
		f.Role = "alumno"
	case admin:
		f.Role = "administrativo"
	}
	if units != nil {
		f.Unit = findUnit(sig, units)
	}
	return f
}

// ExtractFieldsFrom reads the fields off the signature, falling back to the new text for what the
// signature does not say.
func ExtractFieldsFrom(sp Split, email string, units *config.Units) Fields {
	f := ExtractFields(sp.Signature, email, units)
	if sp.Signature == "" || f.Unit == "" || f.Role == "" || f.Extension == "" {
		// Only the end of the text: where people sign without a separated signature. It also
		// bounds the cost of the unit search on long mails.
		lines := strings.Split(sp.Text, "\n")
		tail := strings.Join(lines[max(0, len(lines)-12):], "\n")
		if len(tail) > 4096 {
			tail = tail[len(tail)-4096:]
		}
		g := ExtractFields(tail, email, units)
		if f.Unit == "" {
			f.Unit = g.Unit
		}
		if f.Role == "" && sp.Signature == "" {
			f.Role = g.Role
		}
		if f.Extension == "" {
			f.Extension = g.Extension
		}
	}
	return f
}

// findUnit tries every line, every comma/parenthesis-separated piece and every run of up to 5
// words against the unit list; the longest matching piece wins, later lines break ties (the
// school usually comes last in a signature).
func findUnit(sig string, units *config.Units) string {
	// A school or centre beats a central office ("Recursos Humanos, CECyT 5" is CECyT 5's); among
	// equals, the longest name wins.
	best, bestScore := "", 0
	for _, line := range strings.Split(sig, "\n") {
		if len(line) > 400 {
			continue
		}
		for _, f := range units.Find(line, 12) {
			score := len(f.Key)
			if f.Unit.Kind != "unidad_administrativa" {
				score += 1000
			}
			if score >= bestScore {
				best, bestScore = f.Unit.ID, score
			}
		}
	}
	return best
}
