package imap

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzNormalize: any input either fails with ErrUnparseable or yields valid UTF-8 text within the
// limits, without panicking. Seeds: testdata/fuzz/FuzzNormalize plus the fixture mails.
func FuzzNormalize(f *testing.F) {
	for _, dir := range []string{"testdata/mail", "testdata/mail-edge", "testdata/lenient"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.eml"))
		for _, p := range files {
			b, err := os.ReadFile(p)
			if err == nil {
				f.Add(b)
			}
		}
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var attBytes int64
		m, err := Normalize(bytes.NewReader(raw), func(name, ct string, r io.Reader) (string, error) {
			n, err := io.Copy(io.Discard, r)
			attBytes += n
			return "obj", err
		})
		if err != nil {
			return
		}
		if len(m.Body) > maxTextBytes || !utf8.ValidString(m.Body) || !utf8.ValidString(m.Subject) || !utf8.ValidString(m.FromName) {
			t.Fatalf("body %d bytes, valid %v", len(m.Body), utf8.ValidString(m.Body))
		}
		if attBytes > int64(len(raw))+16 {
			t.Fatalf("attachments decoded to %d bytes from %d input bytes", attBytes, len(raw))
		}
		sp := SplitBody(m.Body, m.FromName)
		if len(sp.Text)+len(sp.Signature)+len(sp.Quoted) > len(m.Body)+4 {
			t.Fatalf("split grew the text")
		}
	})
}

// FuzzSignature: the split never loses or invents text, and field extraction never panics.
func FuzzSignature(f *testing.F) {
	for _, r := range readJSONL[fixtureRequest](f, "testdata/requests.jsonl") {
		f.Add(r.Body, r.FromName)
	}
	units := testUnits(f)
	f.Fuzz(func(t *testing.T, body, from string) {
		if !utf8.ValidString(body) {
			return
		}
		sp := SplitBody(body, from)
		if squeeze(joinSplit(sp)) != squeeze(cleanText(body)) {
			t.Fatalf("split changed the text:\n%q\n%q", joinSplit(sp), cleanText(body))
		}
		if strings.TrimSpace(cleanText(body)) != "" && sp.Text == "" {
			t.Fatalf("empty text from %q", body)
		}
		_ = ExtractFieldsFrom(sp, "x@ipn.mx", units)
	})
}
