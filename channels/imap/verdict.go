package imap

import (
	"bytes"
	"fmt"
	"unicode"
	"unicode/utf8"
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
	msg, err := Normalize(bytes.NewReader(raw), nil)
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
