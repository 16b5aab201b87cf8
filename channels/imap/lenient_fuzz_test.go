package imap

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"unicode/utf8"
)

// seedFiles adds every file of the given testdata directories as a fuzz seed.
func seedFiles(f *testing.F, globs ...string) {
	for _, g := range globs {
		files, _ := filepath.Glob(g)
		for _, p := range files {
			if b, err := os.ReadFile(p); err == nil {
				f.Add(b)
			}
		}
	}
}

// FuzzReadHeader: the lenient header reader never fails or panics, the body it returns is a
// suffix of its input, and every field it keeps can be read back.
func FuzzReadHeader(f *testing.F) {
	seedFiles(f, "testdata/lenient/*.eml", "testdata/mail-edge/*.eml")
	f.Fuzz(func(t *testing.T, raw []byte) {
		h, body, _ := readHeader(raw)
		if !bytes.HasSuffix(raw, body) {
			t.Fatalf("body is not the rest of the input")
		}
		for fs := h.Fields(); fs.Next(); {
			if fs.Key() == "" {
				t.Fatalf("empty field name")
			}
		}
	})
}

// FuzzSplitMultipart: parts are pieces of the body, in order, at most maxParts.
func FuzzSplitMultipart(f *testing.F) {
	f.Add([]byte("--b\r\nContent-Type: text/plain\r\n\r\nuno\r\n--b\r\n\r\ndos\r\n--b--\r\n"), "b")
	f.Add([]byte("pre\n--ab\n\nx\n--abc\n\ny\n--ab--\nepilogue"), "ab")
	f.Add([]byte("no delimiter at all"), "zz")
	f.Fuzz(func(t *testing.T, body []byte, boundary string) {
		if boundary == "" {
			return
		}
		parts, _ := splitMultipart(body, boundary)
		if len(parts) > maxParts {
			t.Fatalf("%d parts", len(parts))
		}
		total := 0
		for _, p := range parts {
			if !bytes.Contains(body, p) {
				t.Fatalf("part not taken from the body")
			}
			total += len(p)
		}
		if total > len(body) {
			t.Fatalf("parts hold %d bytes of a %d-byte body", total, len(body))
		}
	})
}

// FuzzUTF7: any input decodes to valid UTF-8 without panicking, and plain ASCII without "+"
// stays as it is.
func FuzzUTF7(f *testing.F) {
	for _, s := range []string{"Fr+APY-sche", "a+-b", "+AGEAYgBj-", "+2D3eAA-", "+", "+ZeVnLIqe-", "Hi Mom -+Jjo--!"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		out := decodeUTF7(raw)
		if !utf8.ValidString(out) {
			t.Fatalf("invalid UTF-8 from %q", raw)
		}
		if isASCII(raw) && !bytes.ContainsRune(raw, '+') && out != string(raw) {
			t.Fatalf("%q changed to %q", raw, out)
		}
	})
}

// FuzzDecodeHeader: header decoding always yields valid UTF-8 on one line.
func FuzzDecodeHeader(f *testing.F) {
	for _, s := range []string{"=?utf-8?Q?Contrase\xc3\xb1a?=", "=?iso-2022-jp?B?GyRCJUYlOSVIGyhC?=", "\xd4\xc5\xd3\xd4",
		"=?unicode-1-1-utf-7?Q?+AOk-?=", "=?x-unknown?Q?caf=E9?=", "=?utf-8?B?", "plain"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		d := &textDecoder{raw: []byte(v)}
		out := d.decodeHeader(v)
		if !utf8.ValidString(out) || bytes.ContainsAny([]byte(out), "\r\n") {
			t.Fatalf("%q decoded to %q", v, out)
		}
	})
}

// FuzzTNEF: the TNEF reader is bounded by its input: no panic, attachments are pieces of it, and
// the body text stays within the limits.
func FuzzTNEF(f *testing.F) {
	seedFiles(f, "testdata/tnef/*.tnef")
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := readTNEF(raw)
		if err != nil {
			return
		}
		if len(c.Files) > maxTNEFFiles {
			t.Fatalf("%d files", len(c.Files))
		}
		for _, fl := range c.Files {
			if len(fl.Data) > len(raw) {
				t.Fatalf("attachment larger than the stream")
			}
		}
		if len(c.RTF) > maxRTFBytes {
			t.Fatalf("RTF of %d bytes", len(c.RTF))
		}
		if s := c.body(); !utf8.ValidString(s) {
			t.Fatalf("body is not UTF-8")
		}
	})
}

// FuzzRTF: decompression and text extraction of arbitrary compressed RTF never panic and stay
// within their bounds.
func FuzzRTF(f *testing.F) {
	f.Add([]byte("\x2d\x00\x00\x00\x2b\x00\x00\x00LZFu\xf1\xc5\xc7\xa7\x03\x00\x0a\x00rcpg125B2\x0a\xf3 hel\x09\x00 bw\x05\xb0ld}\x0a\x80\x0f\xa0"))
	f.Add([]byte("\x10\x00\x00\x00\x10\x00\x00\x00MELA\x00\x00\x00\x00{\\rtf1 hola\\par}"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		out, err := decompressRTF(raw)
		if err != nil {
			return
		}
		if len(out) > maxRTFBytes {
			t.Fatalf("%d bytes", len(out))
		}
		if s := rtfToText(out); len(s) > maxTextBytes+8 {
			t.Fatalf("text of %d bytes", len(s))
		}
	})
}

// BenchmarkNormalize reads the fixture mails (clean and broken) as the mailbox does, twice per
// message (the decision pass and the archiving pass), to keep the lenient reader's cost in view.
func BenchmarkNormalize(b *testing.B) {
	var raws [][]byte
	for _, g := range []string{"testdata/mail/*.eml", "testdata/mail-edge/*.eml", "testdata/lenient/*.eml"} {
		files, _ := filepath.Glob(g)
		for _, p := range files {
			if raw, err := os.ReadFile(p); err == nil {
				raws = append(raws, raw)
			}
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, raw := range raws {
			_ = Assess(raw, 0)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(raws))/1e3, "µs/mail")
}
