package imap

import (
	"strings"
	"testing"
	"time"

	"github.com/ipn-cgsi/caud/channels"
)

// checkLenientThroughMailbox: every defect-class fixture goes through a real IMAP server and
// JetStream: broken mail becomes a request carrying its defects, bounces and auto-replies are
// suppressed, only the unreadable one is quarantined, nothing stays in INBOX. It needs a server
// that serves the bytes as stored (Dovecot; imapmemserver refuses to FETCH a broken header).
func checkLenientThroughMailbox(t *testing.T, addr, username string) {
	env := startNATS(t)
	c := dialDovecot(t, addr, username)
	cases := readJSONL[lenientCase](t, "testdata/lenient/manifest.jsonl")
	var nReq, nSupp, nQuar int64
	for _, lc := range cases {
		appendRaw(t, c, "INBOX", fixtureMail(t, "lenient", lc.File))
		switch lc.Expect {
		case "request":
			nReq++
		case "suppress":
			nSupp++
		case "quarantine":
			nQuar++
		}
	}
	o := env.options(addr)
	o.Username, o.Address = username, username
	r := runMailbox(t, o, env.Sink)
	waitFor(t, 30*time.Second, "every fixture handled", func() bool {
		s := r.mb.Stats()
		return s.Published == nReq && s.Suppressed == nSupp && s.Quarantined == nQuar
	})
	for _, m := range dlqMessages(t, env) {
		if !strings.HasPrefix(m.Header.Get("Cau-Dlq-Reason"), ReasonUnparseable) {
			t.Errorf("quarantined for %q; only the unreadable fixture may be", m.Header.Get("Cau-Dlq-Reason"))
		}
	}
	byMID := map[string]channels.Request{}
	for _, req := range env.inbound(t) {
		if err := req.Validate(); err != nil {
			t.Errorf("%s: %v", req.Source.MessageID, err)
		}
		byMID[req.Source.MessageID] = req
	}
	if int64(len(byMID)) != nReq {
		t.Fatalf("%d requests, want %d", len(byMID), nReq)
	}
	for _, lc := range cases {
		if lc.Expect != "request" {
			continue
		}
		mid := "<l" + lc.File[:2] + "@ipn.mx>"
		req, ok := byMID[mid]
		if lc.File == "18-no-header.eml" {
			req, ok = byMID[""]
		}
		if !ok {
			t.Errorf("%s: no request", lc.File)
			continue
		}
		for _, d := range lc.Defects {
			found := false
			for _, rd := range req.Defects {
				found = found || (rd.Code == d && rd.Text != "" && !strings.Contains(rd.Text, "_"))
			}
			if !found {
				t.Errorf("%s: defects %+v lack %s with a Spanish text", lc.File, req.Defects, d)
			}
		}
		for _, s := range lc.Contains {
			if !strings.Contains(squeeze(req.Text), squeeze(s)) {
				t.Errorf("%s: request text %q lacks %q", lc.File, req.Text, s)
			}
		}
		if lc.Forwarded != nil && req.Forwarded != *lc.Forwarded {
			t.Errorf("%s: forwarded %v", lc.File, req.Forwarded)
		}
		if lc.Bulk != nil && (req.Auto.Bulk != *lc.Bulk || !req.Auto.NoReply() || req.Auto.ListID == "") {
			t.Errorf("%s: auto %+v: list mail must be marked so that it is never answered", lc.File, req.Auto)
		}
		if lc.Bulk == nil && req.Auto.NoReply() {
			t.Errorf("%s: auto %+v: a person's mail marked as no-reply", lc.File, req.Auto)
		}
		for _, want := range lc.Files {
			found := false
			for _, a := range req.Attachments {
				found = found || (a.Name == want && a.Object != "" && a.Size > 0)
			}
			if !found {
				t.Errorf("%s: attachments %+v lack an archived %s", lc.File, req.Attachments, want)
			}
		}
	}
	waitFor(t, 10*time.Second, "INBOX emptied", func() bool { return folderCount(t, c, "INBOX") == 0 })
}
