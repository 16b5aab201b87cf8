package imap

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	netmail "net/mail"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
	"golang.org/x/text/encoding/charmap"
)

// Limits of the MIME normalizer. They bound memory whatever the input: text beyond maxTextBytes is
// cut (the original is archived whole), deeper nesting is not descended into.
const (
	maxTextBytes  = 256 << 10
	maxHTMLBytes  = 2 << 20
	maxDepth      = 8
	maxParts      = 200
	maxHeaderList = 50
)

// ErrUnparseable is wrapped by Normalize when a message has no usable header at all.
var ErrUnparseable = errors.New("unparseable message")

// Message is what Normalize reads off one RFC 5322 message.
type Message struct {
	MessageID  string // as written, with angle brackets
	InReplyTo  string
	References []string
	FromName   string
	FromEmail  string
	ReturnPath string // "" when absent; "<>" for a null return path
	Subject    string
	Date       time.Time
	// Body is the readable text of the whole message (new text, signature and quoted history).
	Body        string
	Attachments []Part
	// Auto is the reason this message is an auto-reply or a bounce ("" when a person wrote it).
	Auto string
	// AutoSubmitted is the RFC 3834 Auto-Submitted header (lowercased), "" when absent.
	AutoSubmitted string
}

// Part is an attachment as the AttachmentFunc reported it.
type Part struct {
	Name        string
	ContentType string
	Size        int64
	SHA256      string
	Object      string
}

// AttachmentFunc consumes one attachment's decoded bytes (streamed) and returns its archive
// reference in Object ("" when not archived). Normalize computes Size and SHA256 itself.
type AttachmentFunc func(name, contentType string, r io.Reader) (object string, err error)

// Normalize parses a raw message: headers (RFC 2047 decoded), the readable text (text/plain, else
// HTML turned into text, forwarded message/rfc822 parts included), attachments (streamed to att,
// which may be nil), and whether it is an auto-reply or bounce. It is lenient: a missing final
// boundary, bad quoted-printable, bad base64 or an unknown charset keep what can be read. It fails
// (wrapping ErrUnparseable) only when there is no header, or with att's error.
func Normalize(r io.Reader, att AttachmentFunc) (*Message, error) {
	br := bufio.NewReader(r)
	h, err := textproto.ReadHeader(br)
	if err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrUnparseable, err)
	}
	if h.Len() == 0 {
		return nil, fmt.Errorf("%w: no header fields", ErrUnparseable)
	}
	m := &Message{
		MessageID:  firstMsgID(h.Get("Message-Id")),
		InReplyTo:  firstMsgID(h.Get("In-Reply-To")),
		References: msgIDList(h.Get("References")),
		Subject:    decodeHeader(h.Get("Subject")),
	}
	if h.Has("Return-Path") {
		m.ReturnPath = strings.TrimSpace(h.Get("Return-Path"))
	}
	if d, err := netmail.ParseDate(h.Get("Date")); err == nil {
		m.Date = d
	}
	m.FromName, m.FromEmail = parseFrom(h.Get("From"))
	w := &walker{att: att, msg: m}
	text, err := w.entity(h, br, 0)
	if err != nil {
		return nil, err
	}
	m.Body = cleanText(text)
	m.AutoSubmitted, m.Auto = classifyAuto(h, m)
	return m, nil
}

type walker struct {
	att   AttachmentFunc
	msg   *Message
	parts int
}

// entity returns the readable text of one entity, archiving its attachments.
func (w *walker) entity(h textproto.Header, body io.Reader, depth int) (string, error) {
	w.parts++
	mt, params := contentType(h)
	disp, dparams, _ := mime.ParseMediaType(h.Get("Content-Disposition"))
	name := decodeParam(dparams["filename"])
	if name == "" {
		name = decodeParam(params["name"])
	}
	attachment := strings.EqualFold(disp, "attachment")
	switch {
	case strings.HasPrefix(mt, "multipart/") && depth < maxDepth && w.parts < maxParts:
		return w.multipart(mt, params, body, depth)
	case mt == "message/rfc822" && depth < maxDepth:
		return w.forwarded(body, depth)
	case (mt == "text/plain" || mt == "text/html") && !attachment:
		raw, _ := io.ReadAll(io.LimitReader(decodeTransfer(h.Get("Content-Transfer-Encoding"), body), maxHTMLBytes))
		s := decodeCharset(params["charset"], raw)
		if mt == "text/html" {
			s = htmlToText(s)
		}
		return s, nil
	case strings.HasPrefix(mt, "multipart/"), mt == "message/rfc822":
		_, err := io.Copy(io.Discard, body) // too deep: the original is archived anyway
		return "", err
	case mt == "message/delivery-status" || mt == "message/disposition-notification" || mt == "text/rfc822-headers":
		_, err := io.Copy(io.Discard, body)
		return "", err
	}
	if name == "" {
		name = "adjunto"
	}
	return "", w.attachment(name, mt, decodeTransfer(h.Get("Content-Transfer-Encoding"), body))
}

func (w *walker) attachment(name, mt string, r io.Reader) error {
	hs := sha256.New()
	cr := &countingReader{r: io.TeeReader(r, hs)}
	var obj string
	if w.att != nil {
		o, err := w.att(name, mt, cr)
		if err != nil {
			return fmt.Errorf("attachment %q: %w", name, err)
		}
		obj = o
	}
	if _, err := io.Copy(io.Discard, cr); err != nil {
		return nil // a truncated attachment keeps what was read; the original is archived whole
	}
	w.msg.Attachments = append(w.msg.Attachments, Part{
		Name: name, ContentType: mt, Size: cr.n, SHA256: hex.EncodeToString(hs.Sum(nil)), Object: obj,
	})
	return nil
}

func (w *walker) multipart(mt string, params map[string]string, body io.Reader, depth int) (string, error) {
	boundary := params["boundary"]
	if boundary == "" {
		raw, _ := io.ReadAll(io.LimitReader(body, maxHTMLBytes))
		return decodeCharset("", raw), nil
	}
	mr := textproto.NewMultipartReader(body, boundary)
	var texts []string
	var plain, html string
	for i := 0; w.parts < maxParts; i++ {
		p, err := mr.NextPart()
		if err != nil {
			break // io.EOF, or a missing final boundary: keep what was read
		}
		pmt, _ := contentType(p.Header)
		t, err := w.entity(p.Header, p, depth+1)
		if err != nil {
			return "", err
		}
		switch {
		case mt == "multipart/alternative":
			if pmt == "text/plain" && plain == "" && strings.TrimSpace(t) != "" {
				plain = t
			} else if strings.TrimSpace(t) != "" && html == "" {
				html = t
			}
		case mt == "multipart/report" && i > 0:
			// the machine-readable parts of a report are not text for a person
		default:
			if strings.TrimSpace(t) != "" {
				texts = append(texts, t)
			}
		}
	}
	if mt == "multipart/alternative" {
		if plain != "" {
			return plain, nil
		}
		return html, nil
	}
	return strings.Join(texts, "\n\n"), nil
}

// forwarded renders a message/rfc822 part as a forwarded block: its main headers and text.
func (w *walker) forwarded(body io.Reader, depth int) (string, error) {
	br := bufio.NewReader(body)
	h, err := textproto.ReadHeader(br)
	if err != nil {
		return "", nil
	}
	text, err := w.entity(h, br, depth+1)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("---------- Mensaje reenviado ----------\n")
	for _, k := range []string{"From", "Date", "Subject", "To"} {
		if v := decodeHeader(h.Get(k)); v != "" {
			label := map[string]string{"From": "De", "Date": "Fecha", "Subject": "Asunto", "To": "Para"}[k]
			fmt.Fprintf(&b, "%s: %s\n", label, v)
		}
	}
	b.WriteString("\n")
	b.WriteString(text)
	return b.String(), nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func contentType(h textproto.Header) (string, map[string]string) {
	v := h.Get("Content-Type")
	if v == "" {
		return "text/plain", map[string]string{}
	}
	mt, params, err := mime.ParseMediaType(v)
	if err != nil {
		// Lenient: take the type before any parameter, and the parameters we can find.
		mt = strings.ToLower(strings.TrimSpace(strings.SplitN(v, ";", 2)[0]))
		params = map[string]string{}
		for _, kv := range strings.Split(v, ";")[1:] {
			k, val, ok := strings.Cut(kv, "=")
			if ok {
				params[strings.ToLower(strings.TrimSpace(k))] = strings.Trim(strings.TrimSpace(val), `"`)
			}
		}
	}
	if mt == "" || !strings.Contains(mt, "/") {
		mt = "text/plain"
	}
	return mt, params
}

// decodeTransfer undoes a Content-Transfer-Encoding leniently: bad quoted-printable sequences are
// kept as written, base64 ignores junk characters, an unknown encoding is read as is.
func decodeTransfer(enc string, r io.Reader) io.Reader {
	switch strings.ToLower(strings.TrimSpace(enc)) {
	case "quoted-printable":
		return &qpReader{r: bufio.NewReader(r)}
	case "base64":
		return base64.NewDecoder(base64.RawStdEncoding, &b64Filter{r: r})
	}
	return r
}

// qpReader decodes quoted-printable, keeping invalid escapes literally instead of failing
// (Go's mime/quotedprintable stops at the first one).
type qpReader struct {
	r   *bufio.Reader
	out []byte
	err error
}

func (q *qpReader) Read(p []byte) (int, error) {
	for len(q.out) == 0 {
		if q.err != nil {
			return 0, q.err
		}
		line, err := q.r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			err = nil
		} else if err != nil {
			q.err = err
		}
		q.out = qpDecodeLine(q.out[:0], line)
	}
	n := copy(p, q.out)
	q.out = q.out[n:]
	return n, nil
}

func qpDecodeLine(dst, line []byte) []byte {
	hasNL := bytes.HasSuffix(line, []byte("\n"))
	body := bytes.TrimRight(line, "\r\n")
	trimmed := bytes.TrimRight(body, " \t")
	if hasNL && bytes.HasSuffix(trimmed, []byte("=")) {
		trimmed = trimmed[:len(trimmed)-1] // soft line break
		hasNL = false
	} else if !hasNL {
		trimmed = body
	}
	for i := 0; i < len(trimmed); i++ {
		c := trimmed[i]
		if c == '=' && i+2 < len(trimmed) && isHex(trimmed[i+1]) && isHex(trimmed[i+2]) {
			dst = append(dst, unhex(trimmed[i+1])<<4|unhex(trimmed[i+2]))
			i += 2
			continue
		}
		dst = append(dst, c)
	}
	if hasNL {
		dst = append(dst, '\n')
	}
	return dst
}

func isHex(c byte) bool {
	return ('0' <= c && c <= '9') || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// b64Filter passes only base64 alphabet bytes (padding included is dropped: the decoder is
// unpadded), so whitespace and junk do not abort decoding.
type b64Filter struct {
	r io.Reader
}

func (f *b64Filter) Read(p []byte) (int, error) {
	for {
		n, err := f.r.Read(p)
		j := 0
		for _, c := range p[:n] {
			if ('A' <= c && c <= 'Z') || ('a' <= c && c <= 'z') || ('0' <= c && c <= '9') || c == '+' || c == '/' {
				p[j] = c
				j++
			}
		}
		if j > 0 || err != nil {
			return j, err
		}
	}
}

// decodeCharset turns raw text in the declared charset into UTF-8. An unknown or wrong charset is
// not fatal: valid UTF-8 is kept, anything else is read as Windows-1252 so that the text stays
// readable.
func decodeCharset(cs string, raw []byte) string {
	cs = strings.ToLower(strings.TrimSpace(cs))
	switch cs {
	case "", "us-ascii", "ascii", "utf-8", "utf8":
		if utf8.Valid(raw) {
			return string(raw)
		}
		return win1252(raw)
	}
	r, err := charset.Reader(cs, bytes.NewReader(raw))
	if err == nil {
		if out, err := io.ReadAll(r); err == nil {
			return strings.ToValidUTF8(string(out), "\uFFFD")
		}
	}
	if utf8.Valid(raw) {
		return string(raw)
	}
	return win1252(raw)
}

func win1252(raw []byte) string {
	out, err := charmap.Windows1252.NewDecoder().Bytes(raw)
	if err != nil {
		return strings.ToValidUTF8(string(raw), "\uFFFD")
	}
	return string(out)
}

var wordDecoder = &mime.WordDecoder{CharsetReader: func(cs string, r io.Reader) (io.Reader, error) {
	raw, err := io.ReadAll(io.LimitReader(r, 64<<10))
	if err != nil {
		return nil, err
	}
	return strings.NewReader(decodeCharset(cs, raw)), nil
}}

// decodeHeader decodes RFC 2047 encoded words; raw 8-bit headers are taken as UTF-8 or Windows-1252.
func decodeHeader(v string) string {
	if v == "" {
		return ""
	}
	if !utf8.ValidString(v) {
		v = win1252([]byte(v))
	}
	if s, err := wordDecoder.DecodeHeader(v); err == nil {
		v = s
	}
	return strings.ToValidUTF8(strings.TrimSpace(strings.Join(strings.Fields(v), " ")), "\uFFFD")
}

// decodeParam decodes a MIME parameter that some clients still send RFC 2047 encoded.
func decodeParam(v string) string {
	if v == "" {
		return ""
	}
	return decodeHeader(v)
}

func parseFrom(v string) (name, addr string) {
	if v == "" {
		return "", ""
	}
	if !utf8.ValidString(v) {
		v = win1252([]byte(v))
	}
	if a, err := mail.ParseAddress(v); err == nil {
		return decodeHeader(a.Name), strings.ToValidUTF8(strings.ToLower(a.Address), "")
	}
	// Lenient fallback: "Name <addr>" or a bare address.
	dv := decodeHeader(v)
	if i := strings.LastIndex(dv, "<"); i >= 0 {
		if j := strings.Index(dv[i:], ">"); j > 0 {
			return strings.Trim(strings.TrimSpace(dv[:i]), `"`), strings.ToLower(strings.TrimSpace(dv[i+1 : i+j]))
		}
	}
	for _, f := range strings.Fields(dv) {
		if strings.Contains(f, "@") {
			return "", strings.ToLower(strings.Trim(f, "<>\"(),;"))
		}
	}
	return dv, ""
}

func firstMsgID(v string) string {
	ids := msgIDList(v)
	if len(ids) == 0 {
		return ""
	}
	return ids[0]
}

// msgIDList extracts the <...> message ids of a header; a bare id without brackets is taken whole.
func msgIDList(v string) []string {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil
	}
	var out []string
	for len(out) < maxHeaderList {
		i := strings.IndexByte(v, '<')
		if i < 0 {
			break
		}
		j := strings.IndexByte(v[i:], '>')
		if j < 0 {
			break
		}
		if id := strings.TrimSpace(v[i+1 : i+j]); id != "" {
			out = append(out, "<"+id+">")
		}
		v = v[i+j+1:]
	}
	if len(out) == 0 {
		if f := strings.Fields(v); len(f) == 1 {
			out = append(out, "<"+f[0]+">")
		}
	}
	return out
}

// cleanText normalizes newlines, trims trailing spaces of lines, squeezes runs of blank lines to
// one, trims the whole and cuts it to maxTextBytes on a rune boundary.
func cleanText(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	s = strings.ReplaceAll(s, "\u00a0", " ")
	lines := strings.Split(s, "\n")
	out := make([]string, 0, len(lines))
	blank := 0
	for _, l := range lines {
		l = strings.TrimRight(l, " \t")
		if l == "" {
			blank++
			if blank > 1 {
				continue
			}
		} else {
			blank = 0
		}
		out = append(out, l)
	}
	s = strings.TrimSpace(strings.Join(out, "\n"))
	if len(s) > maxTextBytes {
		cut := maxTextBytes
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}
