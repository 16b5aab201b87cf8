package console

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// unsafeHTML matches what must never survive the sanitizer: script and other active elements,
// event-handler attributes, javascript: URLs, and anything that loads from elsewhere.
var unsafeHTML = regexp.MustCompile(`(?i)<\s*(script|iframe|object|embed|form|base|meta|link|style|svg|math|video|audio)\b|<[^>]*(\son[a-z]+\s*=|javascript:|\ssrcset\s*=|\ssrc\s*=\s*"?(https?:)?//|\sstyle\s*=)`)

func FuzzMailHTML(f *testing.F) {
	files, _ := filepath.Glob("testdata/mail/*.eml")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("Content-Type: text/html\r\n\r\n<img src=//x onerror=alert(1)><a href=\"java\tscript:x\">y</a>"))
	f.Add([]byte("no headers at all <script>alert(1)</script>"))
	policy := mailPolicy()
	f.Fuzz(func(t *testing.T, raw []byte) {
		text, html, err := mailParts(raw)
		if err != nil {
			return
		}
		_ = text
		out := policy.Sanitize(html)
		if m := unsafeHTML.FindString(out); m != "" {
			t.Fatalf("sanitized mail HTML still has %q:\n%s", m, out)
		}
	})
}

func TestMailPartsOfTheHostileCorpus(t *testing.T) {
	for _, c := range []struct{ file, text, html string }{
		{"02-html-only-outlook.eml", "", "impresora del laboratorio"},
		{"07-missing-final-boundary.eml", "Necesito reservar la sala de videoconferencia", "videoconferencia"},
		{"01-script-everywhere.eml", "correo institucional", "correo institucional"},
		{"02-encoded-tricks.eml", "", "inalámbrica"},
	} {
		raw, err := os.ReadFile(filepath.Join("testdata/mail", c.file))
		if err != nil {
			t.Fatal(err)
		}
		text, html, err := mailParts(raw)
		if err != nil {
			t.Fatalf("%s: %v", c.file, err)
		}
		if !strings.Contains(text, c.text) {
			t.Errorf("%s: text %q lacks %q", c.file, text, c.text)
		}
		clean := mailPolicy().Sanitize(html)
		if !strings.Contains(clean, c.html) {
			t.Errorf("%s: sanitized HTML lost %q:\n%s", c.file, c.html, clean)
		}
		if m := unsafeHTML.FindString(clean); m != "" {
			t.Errorf("%s: sanitized HTML still has %q", c.file, m)
		}
	}
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"/atencion/X": "/atencion/X", "//evil.example/": "/tablero", "/\\evil": "/tablero", "https://evil": "/tablero",
		"": "/tablero", "/salir": "/tablero", "/buscar?q=a\r\nSet-Cookie: x": "/tablero",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}
