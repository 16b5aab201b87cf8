package imap

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/ipn-cgsi/caud/channels"
)

// Outcomes of Assess.
const (
	VerdictRequest     = "request"
	VerdictSuppressed  = "suppressed"
	VerdictQuarantined = "quarantined"
)

// Verdict is what the intake makes of one raw message before any server is involved: a request,
// a suppressed auto-reply or bounce, or a quarantine with its reason.
type Verdict struct {
	Outcome string
	// Reason is the suppression reason (Auto*) or the quarantine reason (Reason*); "" for a request.
	Reason string
	// Detail explains a quarantine in Spanish for the operator.
	Detail string
	// Message is what was read; nil only for a quarantine that read nothing.
	Message *Message
}

// Assess decides what the mailbox does with raw (duplicates aside, which need the index): the same
// reader and the same rules as the live intake, so `cauctl mail check` shows what caud would do.
// maxBytes <= 0 means no size limit.
func Assess(raw []byte, maxBytes int64) Verdict {
	if maxBytes > 0 && int64(len(raw)) > maxBytes {
		return Verdict{Outcome: VerdictQuarantined, Reason: ReasonTooLarge,
			Detail: fmt.Sprintf("el mensaje mide %d bytes; el máximo es %d", len(raw), maxBytes)}
	}
	msg, err := normalizeSafe(raw, nil)
	if err != nil {
		return Verdict{Outcome: VerdictQuarantined, Reason: ReasonUnparseable, Detail: err.Error()}
	}
	if msg.Auto != "" {
		return Verdict{Outcome: VerdictSuppressed, Reason: msg.Auto, Message: msg}
	}
	if !msg.Readable() {
		return Verdict{Outcome: VerdictQuarantined, Reason: ReasonEmpty, Message: msg,
			Detail: "el mensaje no tiene texto, asunto ni adjuntos"}
	}
	return Verdict{Outcome: VerdictRequest, Message: msg}
}

// Readable reports whether the message holds anything a person can read: text, a subject or an
// attachment.
func (m *Message) Readable() bool {
	return len(bytes.TrimSpace([]byte(m.Body))) > 0 || len(bytes.TrimSpace([]byte(m.Subject))) > 0 || len(m.Attachments) > 0
}

// readableText reports whether s holds text a person can read: some letters or digits, and not
// mostly replacement or control characters (binary data read as text).
func readableText(s string) bool {
	good, bad := 0, 0
	for _, r := range s {
		switch {
		case r == utf8.RuneError || (unicode.IsControl(r) && r != '\n' && r != '\t'):
			bad++
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			good++
		}
	}
	return good > 0 && bad*3 < good
}

// defectTexts say each defect to the agent, in Spanish.
var defectTexts = map[string]string{
	DefectMboxFrom:           "el archivo empieza con una línea de buzón «From » (se omitió)",
	DefectBareCR:             "los renglones terminan con CR solo (formato antiguo de Mac)",
	DefectFirstContinuation:  "el encabezado empieza con un renglón de continuación (se omitió)",
	DefectBadHeaderLine:      "un renglón del encabezado no tiene «Nombre:» (se unió al campo anterior)",
	DefectNoSeparator:        "falta el renglón en blanco entre encabezado y cuerpo",
	DefectNoHeader:           "el mensaje no tiene encabezado: todo se leyó como texto",
	DefectHeaderTooLong:      "el encabezado es demasiado largo; se leyó sólo el principio",
	DefectBadParams:          "parámetros de tipo de contenido mal formados (se repararon)",
	DefectNoBoundary:         "un mensaje de varias partes no declara su separador",
	DefectNoStartBoundary:    "no se encontró el separador de las partes; se leyó como texto",
	DefectNoCloseBoundary:    "falta el separador final de las partes",
	DefectUnknownCharset:     "juego de caracteres desconocido; se detectó de los bytes",
	DefectUndeclared8bit:     "texto con acentos sin juego de caracteres declarado; se detectó de los bytes",
	DefectBadCharsetData:     "bytes inválidos en el juego de caracteres declarado; se leyeron con otro",
	DefectRaw8bitHeader:      "encabezado con bytes de 8 bits sin codificar; se detectó el juego de caracteres",
	DefectTooDeep:            "partes anidadas demasiado profundo; las más internas no se leyeron",
	DefectTooManyParts:       "demasiadas partes; las últimas no se leyeron",
	DefectTNEF:               "el adjunto winmail.dat no se pudo leer completo",
	DefectTextTruncated:      "el texto es demasiado largo y se cortó (el original se archivó completo)",
	DefectBadTransferEncoded: "codificación de transferencia dañada; se leyó lo posible",
}

// RequestDefects turns the message's defect codes into the request's list, with the Spanish text.
func (m *Message) RequestDefects() []channels.Defect {
	var out []channels.Defect
	for _, c := range m.Defects {
		t := defectTexts[c]
		if t == "" {
			t = strings.ReplaceAll(c, "_", " ")
		}
		out = append(out, channels.Defect{Code: c, Text: t})
	}
	return out
}

// decorate adds to a request what the lenient reader learnt: the defects, and the list or bulk
// mark that keeps the notifier from answering.
func decorate(req *channels.Request, m *Message) {
	req.Defects = m.RequestDefects()
	req.Auto.Bulk = m.Bulk
	req.Auto.ListID = m.ListID
	req.Forwarded = m.Forwarded
}

var (
	reForwardSubject = regexp.MustCompile(`(?i)^\s*(\[[^\]]*\]\s*)?(fwd?|rv|enc|tr|wg|i|fw)\s*:`)
	reForwardMarker  = regexp.MustCompile(`(?i)^-{2,}\s*(mensaje reenviado|forwarded message|original message|mensaje original|message transféré|message d'origine|weitergeleitete nachricht|ursprüngliche nachricht)\s*-{2,}`)
)

// SplitRequest separates a message's body like SplitBody, except that a forwarded message stays
// in the text: a help desk request is often a forward ("le reenvío la solicitud del profesor"),
// and the triage reads only the text. A message forwards when it carries a message/rfc822 part,
// its subject says so ("RV:", "Fwd:", "ENC:"…), or its quoted block opens with a forward marker
// ("---------- Forwarded message ----------", "-----Mensaje original-----" under a forward
// subject, Outlook's "De: … Enviado: …"). The forwarded block keeps its own marker line, so the
// agent sees where the forward starts; the outer sender stays the requester.
func SplitRequest(m *Message) Split {
	sp := SplitBody(m.Body, m.FromName)
	if sp.Quoted == "" {
		return sp
	}
	first, _, _ := strings.Cut(sp.Quoted, "\n")
	first = strings.TrimSpace(first)
	fwdMarker := reForwardMarker.MatchString(first) && !strings.Contains(strings.ToLower(first), "original") ||
		first == forwardMarker
	if !(m.Forwarded || fwdMarker || reForwardSubject.MatchString(m.Subject)) {
		return sp
	}
	m.Forwarded = true
	if sp.Text == "" {
		sp.Text = sp.Quoted
	} else {
		sp.Text = sp.Text + "\n\n" + sp.Quoted
	}
	sp.Quoted = ""
	return sp
}

// ErrReaderPanic is wrapped (with ErrUnparseable) when the reader itself failed on a message: the
// message is quarantined with the reason instead of crashing the daemon and blocking the mailbox.
var ErrReaderPanic = errors.New("mail reader failed")

// normalizeSafe is Normalize turning a panic of the reader (a bug, found by no fuzzer yet) into
// an unparseable message, so that one mail can never stop the mailbox.
func normalizeSafe(raw []byte, att AttachmentFunc) (m *Message, err error) {
	defer func() {
		if r := recover(); r != nil {
			// One line: the reason travels in a dead-letter header; the original is archived.
			m, err = nil, fmt.Errorf("%w: %w: %v", ErrUnparseable, ErrReaderPanic, r)
		}
	}()
	return Normalize(bytes.NewReader(raw), att)
}
