package imap

import (
	"bytes"
	"encoding/base64"
	"io"
	"mime"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
	"github.com/saintfish/chardet"
	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/htmlindex"
	"golang.org/x/text/encoding/ianaindex"
)

// Bounds of charset detection: it reads at most detectSample bytes of 8-bit text, and trusts a
// guess only from detectMinBytes non-ASCII bytes and detectMinConfidence (chardet's 0-100 scale).
const (
	detectSample        = 32 << 10
	detectMinBytes      = 4
	detectMinConfidence = 10
	detectOwnBytes      = 24 // a text with this many 8-bit bytes is detected on its own
)

// charsetAliases are names seen in real mail that no registry knows, mapped to what their senders
// meant. Anything else unknown is detected from the bytes.
var charsetAliases = map[string]string{
	"uft-8": "utf-8", "utf8": "utf-8", "utf-8n": "utf-8", "unicode-1-1-utf-8": "utf-8",
	"ks_c_5601-1987": "euc-kr", "ks_c_5601": "euc-kr", "iso-8859-8-i": "iso-8859-8",
	"x-mac-cyrillic": "x-mac-cyrillic", "latin1": "windows-1252", "iso-8859-1": "windows-1252",
	"iso8859-1": "windows-1252", "us-ascii": "us-ascii", "ascii": "us-ascii", "ansi_x3.4-1968": "us-ascii",
	"gb2312": "gbk", "cp1252": "windows-1252", "cp1251": "windows-1251", "cp1250": "windows-1250",
}

// utf7Names are the labels of UTF-7 (RFC 2152), which x/text does not implement.
var utf7Names = map[string]bool{"utf-7": true, "unicode-1-1-utf-7": true, "x-unicode-2-0-utf-7": true, "csunicode11utf7": true}

// cleanCharset lowercases a charset label and strips what broken mailers wrap it in
// (quotes, "charset=", trailing junk from a lost line break).
func cleanCharset(cs string) string {
	cs = strings.ToLower(strings.TrimSpace(cs))
	cs = strings.TrimPrefix(cs, "charset=")
	cs = strings.Trim(cs, "\"' ;")
	if a, ok := charsetAliases[cs]; ok {
		return a
	}
	return cs
}

// lookupEncoding finds an x/text encoding for a label, via go-message's charset table, IANA and
// WHATWG names; a label with junk glued after a known name ("utf-8return-path…") is cut back to
// the longest known prefix. ok is false for an unknown label.
func lookupEncoding(cs string) (enc encoding.Encoding, name string, ok bool) {
	try := func(n string) encoding.Encoding {
		if e, err := ianaindex.MIME.Encoding(n); err == nil && e != nil {
			return e
		}
		if e, err := htmlindex.Get(n); err == nil && e != nil {
			return e
		}
		return nil
	}
	if e := try(cs); e != nil {
		return e, cs, true
	}
	for n := len(cs) - 1; n >= 4; n-- {
		p := cleanCharset(cs[:n])
		if e := try(p); e != nil {
			return e, p, true
		}
	}
	return nil, cs, false
}

// textDecoder turns the bytes of one message's text into UTF-8. It remembers the charset that
// detection found for the message, so that a short raw 8-bit subject is read like the body.
type textDecoder struct {
	raw       []byte // the whole message, sampled for detection
	guessed   string // "" until detect ran
	decl      string // the first 8-bit charset the message declares
	declFound bool
	defects   *[]string
}

func (d *textDecoder) defect(code string) {
	if d.defects != nil && !contains(*d.defects, code) {
		*d.defects = append(*d.defects, code)
	}
}

// decode converts raw text in the declared charset cs. It never fails: UTF-7 is decoded here, an
// unknown label or undeclared 8-bit text is detected, bytes invalid in the declared charset are
// read as the detected one.
func (d *textDecoder) decode(cs string, raw []byte) string {
	cs = cleanCharset(cs)
	switch {
	case utf7Names[cs]:
		return decodeUTF7(raw)
	case cs == "" || cs == "us-ascii" || cs == "utf-8" || cs == "none" || cs == "x-unknown":
		if utf8.Valid(raw) {
			return string(raw)
		}
		if cs == "utf-8" {
			d.defect(DefectBadCharsetData)
		} else {
			d.defect(DefectUndeclared8bit)
		}
		return d.asGuessed(raw)
	}
	enc, _, ok := lookupEncoding(cs)
	if !ok {
		if isASCII(raw) {
			return string(raw)
		}
		d.defect(DefectUnknownCharset)
		if utf8.Valid(raw) {
			return string(raw)
		}
		return d.asGuessed(raw)
	}
	r, err := charset.Reader(cs, bytes.NewReader(raw))
	if err != nil {
		r = enc.NewDecoder().Reader(bytes.NewReader(raw))
	}
	out, err := io.ReadAll(r)
	if err != nil {
		d.defect(DefectBadCharsetData)
		return d.asGuessed(raw)
	}
	return strings.ToValidUTF8(string(out), "\uFFFD")
}

// asGuessed decodes 8-bit bytes whose charset is unknown: long enough text is detected on its
// own, short text (a subject, a name) is read like the rest of the message.
func (d *textDecoder) asGuessed(raw []byte) string {
	cs := ""
	if decl := d.declared(); decl != "" {
		if enc, _, ok := lookupEncoding(decl); ok {
			if out, err := enc.NewDecoder().Bytes(raw); err == nil && !bytes.ContainsRune(out, utf8.RuneError) {
				return string(out)
			}
		}
	}
	if countHigh(raw) >= detectOwnBytes {
		cs = detect(raw)
	}
	if cs == "" {
		cs = d.guess()
	}
	if cs == "utf-8" {
		return strings.ToValidUTF8(string(raw), "\uFFFD")
	}
	if enc, _, ok := lookupEncoding(cs); ok {
		if out, err := enc.NewDecoder().Bytes(raw); err == nil {
			return strings.ToValidUTF8(string(out), "\uFFFD")
		}
	}
	return win1252(raw)
}

// guess is the message's charset for undeclared 8-bit text, found once: the first charset the
// message declares for any part (mailers write raw headers in the body's charset), else what
// detection makes of the lines holding 8-bit bytes, else Windows-1252 (the superset of Latin-1
// that most Western mail is in).
func (d *textDecoder) guess() string {
	if d.guessed != "" {
		return d.guessed
	}
	d.guessed = "windows-1252"
	if cs := d.declared(); cs != "" {
		d.guessed = cs
		return cs
	}
	var sample []byte
	for pos := 0; pos < len(d.raw) && len(sample) < detectSample; {
		line, next := cutLine(d.raw, pos)
		pos = next
		if !isASCII(line) {
			sample = append(append(sample, line...), '\n')
		}
	}
	if cs := detect(sample); cs != "" {
		d.guessed = cs
	}
	return d.guessed
}

// declared is declaredCharset of the message, found once.
func (d *textDecoder) declared() string {
	if !d.declFound {
		d.decl, d.declFound = declaredCharset(d.raw), true
	}
	return d.decl
}

// declaredCharset is the first charset parameter in the message that names a known 8-bit charset
// other than UTF-8 ("" when none).
func declaredCharset(raw []byte) string {
	rest := asciiLower(raw[:min(len(raw), detectSample)])
	for {
		i := bytes.Index(rest, []byte("charset="))
		if i < 0 {
			return ""
		}
		rest = rest[i+len("charset="):]
		v := rest
		if j := bytes.IndexAny(v, "; \t\r\n"); j >= 0 {
			v = v[:j]
		}
		cs := cleanCharset(string(v))
		if cs == "" || cs == "us-ascii" || cs == "utf-8" || utf7Names[cs] {
			continue
		}
		if _, name, ok := lookupEncoding(cs); ok {
			return name
		}
	}
}

// detect names the charset of 8-bit text: valid UTF-8, else chardet's best guess when it has
// enough bytes and confidence; "" when it cannot tell.
func detect(sample []byte) string {
	if len(sample) > detectSample {
		sample = sample[:detectSample]
	}
	if countHigh(sample) < detectMinBytes {
		return ""
	}
	if utf8.Valid(sample) {
		return "utf-8"
	}
	res, err := chardet.NewTextDetector().DetectAll(sample)
	if err != nil {
		return ""
	}
	for _, r := range res {
		if r.Confidence < detectMinConfidence {
			break
		}
		name := cleanCharset(r.Charset)
		if strings.HasPrefix(name, "utf-16") || strings.HasPrefix(name, "utf-32") || strings.HasPrefix(name, "ibm4") || name == "utf-8" {
			continue // never right for 8-bit mail text that is not valid UTF-8
		}
		if _, _, ok := lookupEncoding(name); ok {
			return name
		}
	}
	return ""
}

// asciiLower lowercases ASCII letters only, keeping every other byte (and so every offset).
func asciiLower(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return out
}

func countHigh(b []byte) int {
	n := 0
	for _, c := range b {
		if c >= 0x80 {
			n++
		}
	}
	return n
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

func win1252(raw []byte) string {
	out, err := charmap.Windows1252.NewDecoder().Bytes(raw)
	if err != nil {
		return strings.ToValidUTF8(string(raw), "\uFFFD")
	}
	return string(out)
}

// decodeUTF7 decodes UTF-7 (RFC 2152): "+" opens modified base64 of UTF-16BE, ended by "-" (which
// is dropped) or any character outside the base64 alphabet; "+-" is a literal "+". Malformed
// sequences are kept as written.
func decodeUTF7(raw []byte) string {
	var b strings.Builder
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c != '+' {
			if c < 0x80 {
				b.WriteByte(c)
			} else {
				b.WriteRune(utf8.RuneError)
			}
			continue
		}
		j := i + 1
		for j < len(raw) && isB64(raw[j]) {
			j++
		}
		if j == i+1 {
			if j < len(raw) && raw[j] == '-' {
				b.WriteByte('+')
				i = j
			} else {
				b.WriteByte('+')
			}
			continue
		}
		chunk := raw[i+1 : j]
		if len(chunk)%4 == 1 {
			chunk = chunk[:len(chunk)-1] // a lone sextet carries no whole byte
		}
		dec, err := base64.RawStdEncoding.DecodeString(string(chunk))
		if err != nil {
			b.Write(raw[i:j])
			i = j - 1
			continue
		}
		units := make([]uint16, 0, len(dec)/2)
		for k := 0; k+1 < len(dec); k += 2 {
			units = append(units, uint16(dec[k])<<8|uint16(dec[k+1]))
		}
		b.WriteString(string(utf16.Decode(units)))
		if j < len(raw) && raw[j] == '-' {
			j++
		}
		i = j - 1
	}
	return b.String()
}

func isB64(c byte) bool {
	return ('A' <= c && c <= 'Z') || ('a' <= c && c <= 'z') || ('0' <= c && c <= '9') || c == '+' || c == '/'
}

// decodeHeader decodes a header value: raw 8-bit bytes inside RFC 2047 Q words are escaped first
// (Go's decoder refuses them), remaining raw 8-bit text is read in the message's detected charset,
// then encoded words are decoded with the same charset rules as bodies.
func (d *textDecoder) decodeHeader(v string) string {
	if v == "" {
		return ""
	}
	v = escape8bitInWords(v)
	if !utf8.ValidString(v) {
		d.defect(DefectRaw8bitHeader)
		v = d.asGuessed([]byte(v))
	}
	wd := &mime.WordDecoder{CharsetReader: func(cs string, r io.Reader) (io.Reader, error) {
		raw, err := io.ReadAll(io.LimitReader(r, 64<<10))
		if err != nil {
			return nil, err
		}
		if cs == wordGuessLabel {
			cs = ""
		}
		return strings.NewReader(d.decode(cs, raw)), nil
	}}
	if s, err := wd.DecodeHeader(v); err == nil {
		v = s
	}
	return strings.ToValidUTF8(strings.TrimSpace(strings.Join(strings.Fields(v), " ")), "\uFFFD")
}

// wordGuessLabel relabels the encoded words that Go's decoder would read itself without checking
// (us-ascii, utf-8), so that their bytes go through decode: UTF-8 under a us-ascii label is kept,
// Latin-1 under a utf-8 label is detected.
const wordGuessLabel = "x-caud-unchecked"

// escape8bitInWords prepares encoded words for Go's decoder: raw 8-bit bytes inside
// "=?charset?Q?…?=" become =XX (what the sender meant), and us-ascii and utf-8 words are relabelled
// wordGuessLabel.
func escape8bitInWords(v string) string {
	if !strings.Contains(v, "=?") {
		return v
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	rest := v
	for {
		i := strings.Index(rest, "=?")
		if i < 0 {
			break
		}
		q := strings.IndexByte(rest[i+2:], '?')
		if q < 0 || i+2+q+3 > len(rest) || rest[i+2+q+2] != '?' {
			b.WriteString(rest[:i+2])
			rest = rest[i+2:]
			continue
		}
		label := rest[i+2 : i+2+q]
		encAt := i + 2 + q + 1
		end := strings.Index(rest[encAt+2:], "?=")
		if end < 0 {
			break
		}
		textEnd := encAt + 2 + end
		b.WriteString(rest[:i+2])
		cs, _, _ := strings.Cut(strings.ToLower(label), "*") // RFC 2231 language suffix
		switch cs {
		case "us-ascii", "ascii", "utf-8", "utf8":
			b.WriteString(wordGuessLabel)
		default:
			b.WriteString(label)
		}
		b.WriteString(rest[i+2+q : encAt+2])
		qEnc := rest[encAt] == 'q' || rest[encAt] == 'Q'
		for k := encAt + 2; k < textEnd; k++ {
			switch c := rest[k]; {
			case qEnc && c >= 0x80:
				b.WriteByte('=')
				b.WriteByte(hex[c>>4])
				b.WriteByte(hex[c&15])
			case qEnc && c == ' ':
				b.WriteByte('_')
			default:
				b.WriteByte(c)
			}
		}
		b.WriteString("?=")
		rest = rest[textEnd+2:]
	}
	b.WriteString(rest)
	return b.String()
}
