package social_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/social"
)

// Seeds live in testdata/fuzz/<Name>/: the fixture deliveries and the edge cases of the tests.

// checkEvents is what both parsers promise about every event they return: an id to deduplicate
// by, a text, the platform and a kind, and a request that passes validation and encodes.
func checkEvents(t *testing.T, platform string, kinds map[string]bool, events []social.Event, ig social.Ignored) {
	t.Helper()
	now := time.Date(2025, 10, 14, 16, 3, 11, 0, time.UTC)
	ids := map[string]bool{}
	for _, e := range events {
		if e.ID == "" || e.Social.Platform != platform || !kinds[e.Social.Kind] {
			t.Fatalf("event %+v", e)
		}
		if strings.TrimSpace(e.Text) == "" || !utf8.ValidString(e.Text) || len(e.Text) > channels.MaxTextBytes {
			t.Fatalf("text %q", e.Text)
		}
		req := e.Request(now)
		if err := req.Validate(); err != nil {
			t.Fatalf("request of %+v: %v", e, err)
		}
		if _, err := json.Marshal(req); err != nil {
			t.Fatalf("encode: %v", err)
		}
		if again := e.Request(now); again.ID != req.ID {
			t.Fatal("request id is not deterministic")
		}
		ids[e.ID] = true
	}
	for reason, n := range ig {
		if n <= 0 || reason == "" || len(reason) > 40 {
			t.Fatalf("ignored %q = %d", reason, n)
		}
	}
}

func FuzzParseFacebook(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		events, ig, err := social.ParseFacebook(body)
		if err != nil {
			if events != nil || ig != nil {
				t.Fatal("events with an error")
			}
			return
		}
		checkEvents(t, social.PlatformFacebook, map[string]bool{social.KindMessage: true, social.KindComment: true}, events, ig)
		for _, e := range events {
			if e.Social.Kind == social.KindMessage && e.Social.MessageID != e.ID || e.Social.Kind == social.KindComment && e.Social.CommentID != e.ID {
				t.Fatalf("id %q vs %+v", e.ID, e.Social)
			}
		}
	})
}

func FuzzParseX(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		events, ig, err := social.ParseX(body)
		if err != nil {
			if events != nil || ig != nil {
				t.Fatal("events with an error")
			}
			return
		}
		checkEvents(t, social.PlatformX, map[string]bool{social.KindDM: true, social.KindMention: true}, events, ig)
		for _, e := range events {
			if e.Social.SenderID == e.Social.ForUserID {
				t.Fatalf("own or anonymous event %+v", e.Social)
			}
			if e.Handle != "" && !strings.HasPrefix(e.Handle, "@") {
				t.Fatalf("handle %q", e.Handle)
			}
		}
	})
}

// FuzzVerifySignature: a body signed with a secret verifies under that secret (alone or among
// others) in both formats; any change of one byte, an empty secret, or an arbitrary header does not.
func FuzzVerifySignature(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte, secret, header string, pos uint16) {
		fb, x := signFB(secret, body), signX(secret, body)
		secrets := []string{"decoy", secret}
		if secret == "" {
			if social.VerifyFacebookSignature(fb, body, []string{""}) || social.VerifyXSignature(x, body, []string{""}) {
				t.Fatal("an empty secret verified a signature")
			}
		} else {
			if !social.VerifyFacebookSignature(fb, body, secrets) || !social.VerifyXSignature(x, body, secrets) {
				t.Fatal("a correct signature was refused")
			}
			if social.VerifyFacebookSignature(x, body, secrets) || social.VerifyXSignature(fb, body, secrets) {
				t.Fatal("one platform's format verified as the other's")
			}
			if len(body) > 0 {
				changed := bytes.Clone(body)
				changed[int(pos)%len(changed)] ^= 1 << (pos % 8)
				if social.VerifyFacebookSignature(fb, changed, secrets) || social.VerifyXSignature(x, changed, secrets) {
					t.Fatal("a changed body verified")
				}
			}
		}
		// An arbitrary header verifies only if it is the correct signature, in a spelling the check
		// accepts (upper-case hex, surrounding spaces).
		if social.VerifyFacebookSignature(header, body, []string{secret}) && !strings.EqualFold(strings.TrimSpace(header), fb) {
			t.Fatalf("header %q verified", header)
		}
		if social.VerifyXSignature(header, body, []string{secret}) && strings.TrimSpace(header) != x {
			t.Fatalf("header %q verified", header)
		}
		_ = social.XCRCResponse(secret, header)
	})
}
