package imap

import (
	"strings"

	"github.com/emersion/go-message/textproto"
)

// Reasons a message is suppressed (label reason of caud_imap_suppressed_total).
const (
	AutoSubmitted   = "auto_submitted"
	AutoReply       = "auto_reply"
	AutoBulk        = "bulk"
	AutoList        = "list"
	AutoBounce      = "bounce"
	AutoNullSender  = "null_return_path"
	AutoMailerDemon = "mailer_daemon"
)

// classifyAuto tells machine-generated mail (RFC 3834 and the usual vendor headers) from mail a
// person wrote. It returns the Auto-Submitted value and the suppression reason, "" for a person.
func classifyAuto(h textproto.Header, m *Message) (autoSubmitted, reason string) {
	as := strings.ToLower(strings.TrimSpace(strings.SplitN(h.Get("Auto-Submitted"), ";", 2)[0]))
	ct := strings.ToLower(h.Get("Content-Type"))
	local := strings.ToLower(m.FromEmail)
	if i := strings.IndexByte(local, '@'); i >= 0 {
		local = local[:i]
	}
	prec := strings.ToLower(strings.TrimSpace(h.Get("Precedence")))
	switch {
	case strings.HasPrefix(ct, "multipart/report"):
		return as, AutoBounce
	case m.ReturnPath == "<>" || m.ReturnPath == "<> " || strings.TrimSpace(m.ReturnPath) == "<>":
		return as, AutoNullSender
	case local == "mailer-daemon" || local == "postmaster":
		return as, AutoMailerDemon
	case as != "" && as != "no":
		return as, AutoSubmitted
	case h.Has("X-Autoreply") || h.Has("X-Autorespond") || h.Has("X-Auto-Response-Suppress"):
		return as, AutoReply
	case prec == "bulk" || prec == "junk" || prec == "list" || prec == "auto_reply":
		return as, AutoBulk
	case h.Has("List-Id") || h.Has("List-Unsubscribe") || h.Has("List-Post"):
		return as, AutoList
	}
	return as, ""
}
