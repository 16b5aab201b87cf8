package archive_test

import (
	"mime"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/ipn-cgsi/caud/triage/archive"
)

// FuzzSafeFilename: whatever name a mail or a scan carries, the offered name is short, valid UTF-8,
// has no directory part, control, quote or reserved character, and its Content-Disposition parses
// back to it (or to its ASCII fallback).
func FuzzSafeFilename(f *testing.F) {
	for _, s := range []string{
		"", "oficio.pdf", "../../etc/passwd", `C:\Users\x\evil.exe`, "<script>alert(1)</script>.html",
		"fotografía del equipo.png", "a\x00b\r\nc.txt", "\u202egnp.exe", "...", " . ", strings.Repeat("á", 200) + ".pdf",
		"name\"; filename=evil.exe", "%41%42.txt", "\xff\xfe.doc", "CON.txt", "nul", "com1.tar.gz",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		s := archive.SafeFilename(name)
		switch {
		case s == "", len(s) > 121, !utf8.ValidString(s):
			t.Fatalf("%q -> %q: empty, long or invalid", name, s)
		case strings.ContainsAny(s, "/\\\"*:<>?|%;"), strings.HasPrefix(s, "."), strings.HasSuffix(s, "."), strings.HasSuffix(s, " "):
			t.Fatalf("%q -> %q: unsafe character or edge", name, s)
		}
		for _, r := range s {
			if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
				t.Fatalf("%q -> %q: control or format character %U", name, s, r)
			}
		}
		if archive.SafeFilename(s) != s {
			t.Fatalf("%q -> %q: not idempotent", name, s)
		}
		d := archive.Disposition("attachment", name)
		typ, params, err := mime.ParseMediaType(d)
		if err != nil || typ != "attachment" {
			t.Fatalf("%q: disposition %q does not parse: %v", name, d, err)
		}
		if got := params["filename"]; got != s && !isASCII(got) {
			t.Fatalf("%q: disposition %q gives %q, want %q", name, d, got, s)
		}
	})
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
