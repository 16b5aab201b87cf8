package notify

import "strings"

// noReply reports whether an address belongs to a machine that must never be answered: bounces
// (MAILER-DAEMON, postmaster, bounce addresses with VERP tags), mailing lists (-request, owner-,
// listserv) and no-reply senders. The IMAP adapter marks such mail Auto already; this is the
// notifier's own guard, because one loop with an auto-responder costs more than a missed receipt.
func noReply(address string) bool {
	address = strings.ToLower(strings.TrimSpace(address))
	at := strings.LastIndexByte(address, '@')
	if at <= 0 {
		return true
	}
	local := address[:at]
	if i := strings.IndexByte(local, '+'); i > 0 {
		local = local[:i] // VERP and sub-addressing: bounces+abc@, noreply+x@
	}
	switch local {
	case "mailer-daemon", "mailerdaemon", "mailer_daemon", "postmaster", "daemon", "nobody",
		"bounce", "bounces", "listserv", "majordomo", "mailman", "autoresponder", "auto-reply",
		"autoreply", "root", "devnull", "null":
		return true
	}
	for _, p := range []string{"owner-", "bounce-", "bounces-", "return-", "mailer-daemon"} {
		if strings.HasPrefix(local, p) {
			return true
		}
	}
	for _, s := range []string{"-request", "-owner", "-bounces", "-bounce"} {
		if strings.HasSuffix(local, s) {
			return true
		}
	}
	compact := strings.NewReplacer("-", "", "_", "", ".", "").Replace(local)
	for _, c := range []string{"noreply", "donotreply", "dontreply", "notreply", "noresponder", "noresponda", "nocontestar"} {
		if strings.Contains(compact, c) {
			return true
		}
	}
	return false
}
