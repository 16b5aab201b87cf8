package imap

import (
	"bytes"
	"regexp"
	"strings"

	"github.com/emersion/go-message/textproto"
)

// Reasons a message is suppressed (label reason of caud_imap_suppressed_total).
const (
	AutoSubmitted   = "auto_submitted"
	AutoReply       = "auto_reply"
	AutoBounce      = "bounce"
	AutoNullSender  = "null_return_path"
	AutoMailerDemon = "mailer_daemon"
)

// Kinds of list or bulk mail (Message.Bulk): a request, never answered automatically.
const (
	AutoBulk = "bulk"
	AutoList = "list"
)

var (
	// System senders of bounces, after sisimai's list of MTA and MDA addresses.
	reSystemLocal = regexp.MustCompile(`^(mailer[-_.]?daemon|mail[-_.]?daemon|maildaemon|postmaster|post[-_.]master|mdaemon|mail[-_.]?delivery[-_.]?(system|subsystem)?|bounce[-_.]?(notification|handler)?|mail[-_.]?admin(istrator)?|smtp[-_.]?(gateway|error)|returned[-_.]?mail)$`)
	reSystemName  = regexp.MustCompile(`(?i)^(mailer[- ]?daemon|mail delivery (sub)?system|mail administrator|postmaster|internet mail delivery|mail delivery service|delivery status notification|mail system|mail transport system)$`)
	// Subjects of bounces and auto-replies as MTAs and clients write them (sisimai's set and
	// common clients), unprefixed: "Fwd: Undeliverable: …" is a person forwarding one. Phrases a
	// person writes too ("error en la entrega de calificaciones") are left out on purpose.
	reBounceSubject = regexp.MustCompile(`(?i)^\s*(undeliver(able|ed)|undelivered mail|delivery status notification|delivery notification|mail delivery (failed|failure|system)|delivery (failure|failed|has failed|problem)|returned mail|return(ed)? to sender|failure notice|failed delivery|message (delivery failure|not delivered|could not be delivered|undeliverable)|mail (could not be delivered|system error|not delivered)|non[- ]?(remis|deliverable|delivery)|unzustellbar|nicht zustellbar|no se (puede|pudo) entregar\s*:|notificaci[óo]n de (error|estado) de entrega|nondeliverable|warning: (could not send|message .* delayed)|delayed mail|could not send message|mail failure|permanent delivery failure|loop alert|error sending message|email bounce|bounce notification|メールエラー|配信エラー|未配達|postmaster notify|your message .* (could not|was not|has not been) (be )?delivered)`)
	reAutoSubject   = regexp.MustCompile(`(?i)^\s*(auto(matic)?[ -]?(reply|replied|response|respuesta|antwort)|autorespuesta|respuesta autom[áa]tica|out of (the )?office|fuera de (la )?oficina|ausencia|abwesen(d|heit)|r[ée]ponse automatique|risposta automatica|resposta autom[áa]tica|vacation( reply)?|on vacation|de vacaciones|absence)\b`)
	// Body phrases of delivery failures (lowercase); used only with another hint (a system-like
	// sender or subject, an enclosed original), never alone.
	bounceBodyPhrases = []string{"could not be delivered", "couldn't be delivered", "delivery has failed",
		"delivery failed", "delivery to the following recipient", "undeliverable", "permanent error",
		"permanent failure", "permanently", "user unknown", "unknown user", "mailbox unavailable",
		"mailbox not found", "mailbox is full", "mailbox full", "no such user", "no such recipient",
		"no such mailbox", "recipient address rejected", "returned to sender", "was not delivered",
		"not member", "this is the mail system", "mail delivery software", "i'm sorry to have to inform you",
		"the following addresses had permanent", "quota exceeded", "host unknown", "relaying denied",
		"relay denied", "no pudo ser entregado", "no se pudo entregar", "duplicated message-id",
		"loop detected", "unable to deliver", "メールは届", "送信できませんでした", "status: 5.", "550 5.", "554 5."}
	reFwdPrefix  = regexp.MustCompile(`(?i)^\s*(fwd?|rv|re|enc|tr|wg|aw|sv|vs)\s*:`)
	reListHeader = []string{"List-Id", "List-Unsubscribe", "List-Post", "List-Help", "List-Subscribe", "Mailing-List", "X-Mailing-List", "X-ML-Name", "X-MLServer"}
)

// classifyAuto tells machine-generated mail from mail a person wrote. It returns the Auto-Submitted
// value, the suppression reason ("" for a person: bounces and auto-replies are suppressed), and the
// kind of list or bulk mail ("" otherwise: such mail is a request that is never answered
// automatically). Besides RFC 3834 and the usual vendor headers it recognises the non-standard
// bounces and auto-replies of sisimai's set of e-mails: system senders, their subjects, and
// delivery-failure text next to an enclosed original.
func classifyAuto(h textproto.Header, m *Message, body []byte) (autoSubmitted, reason, bulk string) {
	as := strings.ToLower(strings.TrimSpace(strings.SplitN(h.Get("Auto-Submitted"), ";", 2)[0]))
	ct := strings.ToLower(h.Get("Content-Type"))
	local := strings.ToLower(m.FromEmail)
	if i := strings.IndexByte(local, '@'); i >= 0 {
		local = local[:i]
	}
	fromName := strings.Trim(strings.TrimSpace(m.FromName), `"'`)
	prec := precedence(h)
	subject := m.Subject
	switch {
	case prec == "bulk" || prec == "junk":
		bulk = AutoBulk
	case prec == "list":
		bulk = AutoList
	}
	for _, k := range reListHeader {
		if bulk == "" && h.Has(k) {
			bulk = AutoList
		}
	}
	forwardedByPerson := reFwdPrefix.MatchString(subject) && !systemSender(local, fromName)
	switch {
	case strings.HasPrefix(ct, "multipart/report"), strings.HasPrefix(ct, "message/delivery-status"),
		strings.HasPrefix(ct, "message/disposition-notification"), strings.HasPrefix(ct, "message/feedback-report"):
		return as, AutoBounce, bulk
	case strings.TrimSpace(strings.Trim(m.ReturnPath, " ")) == "<>":
		return as, AutoNullSender, bulk
	case systemSender(local, fromName):
		return as, AutoMailerDemon, bulk
	case as != "" && as != "no":
		return as, AutoSubmitted, bulk
	case h.Has("X-Autoreply") || h.Has("X-Autorespond") || h.Has("X-Auto-Response-Suppress") && reAutoSubject.MatchString(subject),
		prec == "auto_reply", strings.EqualFold(h.Get("X-Apple-Action"), "vacation"),
		strings.EqualFold(strings.TrimSpace(h.Get("X-Autogenerated")), "reply"), h.Has("X-Failed-Recipients"):
		return as, AutoReply, bulk
	case !forwardedByPerson && reAutoSubject.MatchString(subject):
		return as, AutoReply, bulk
	case !forwardedByPerson && reBounceSubject.MatchString(subject) && (m.Forwarded || noReplySender(local) || bounceText(m.Body)):
		return as, AutoBounce, bulk
	case !forwardedByPerson && noReplySender(local) && (m.Forwarded || hasEnclosedHeader(body)) && bounceText(m.Body):
		return as, AutoBounce, bulk
	}
	return as, "", bulk
}

// precedence is the Precedence header; with several (RT's "never-bounce" then "bulk"), the one
// that says most.
func precedence(h textproto.Header) string {
	out := ""
	for _, v := range h.Values("Precedence") {
		v = strings.ToLower(strings.TrimSpace(v))
		switch v {
		case "auto_reply":
			return v
		case "bulk", "junk", "list":
			out = v
		}
	}
	return out
}

func systemSender(local, name string) bool {
	return reSystemLocal.MatchString(local) || reSystemName.MatchString(name) ||
		(local == "" && strings.Contains(strings.ToLower(name), "mailer-daemon"))
}

func noReplySender(local string) bool {
	l := strings.NewReplacer("-", "", "_", "", ".", "").Replace(local)
	return strings.HasPrefix(l, "noreply") || strings.HasPrefix(l, "donotreply") || strings.HasPrefix(l, "bounce")
}

func bounceText(s string) bool {
	if len(s) > 16<<10 {
		s = s[:16<<10]
	}
	s = strings.ToLower(s)
	for _, p := range bounceBodyPhrases {
		if strings.Contains(s, p) {
			return true
		}
	}
	return false
}

// hasEnclosedHeader reports an original message's header quoted in the body (the way old MTAs
// return a message): a "Received:" or "Message-ID:" line after the first line.
func hasEnclosedHeader(body []byte) bool {
	if len(body) > 64<<10 {
		body = body[:64<<10]
	}
	for _, k := range [][]byte{[]byte("\nReceived: "), []byte("\nMessage-ID: "), []byte("\nMessage-Id: "), []byte("\nReturn-Path: ")} {
		if bytes.Contains(body, k) {
			return true
		}
	}
	return false
}
