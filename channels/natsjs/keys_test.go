package natsjs

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

// A Message-ID is found whatever brackets, blanks or case a mailer wrote it with: mail taken in and
// the notices caud sends index under the same key.
func TestMessageIDKeyNormalizes(t *testing.T) {
	id := "caud.01JD3ABCDEF.acuse@ipn.mx"
	sum := sha256.Sum256([]byte("caud.01jd3abcdef.acuse@ipn.mx"))
	want := RequestKey("mid." + hex.EncodeToString(sum[:]))
	for _, v := range []string{id, "<" + id + ">", " <" + strings.ToUpper(id) + "> ", "<caud.01JD3ABCDEF.acuse\r\n @ipn.mx>"} {
		if got := MessageIDKey(v); got != want {
			t.Errorf("MessageIDKey(%q) = %s, want %s", v, got, want)
		}
	}
}

// The prefixes are the keyspace's contract: each kind of key lives apart, and none collides with a
// request id (a ULID has no dot).
func TestRequestKeysKeepTheirPrefixes(t *testing.T) {
	for _, c := range []struct {
		key    RequestKey
		prefix string
	}{
		{MessageIDKey("<a@b>"), "mid."},
		{RawMailKey([]byte("x")), "mid.raw-"},
		{DeskIdempotencyKey("k1"), "idem.desk."},
		{SocialKey("facebook", "m_1"), "social.facebook."},
		{StateKey("01JD3ABCDEF"), "01JD3ABCDEF"},
	} {
		if !strings.HasPrefix(c.key.String(), c.prefix) {
			t.Errorf("%s does not start with %s", c.key, c.prefix)
		}
	}
	if DeskIdempotencyKey("k1") == DeskIdempotencyKey("k2") || SocialKey("x", "1") == SocialKey("facebook", "1") {
		t.Error("distinct inputs share a key")
	}
}
