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
	"net/http"
	netmail "net/mail"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
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
	// Bulk says why this is list or bulk mail ("list", "bulk"; "" otherwise): it becomes a request
	// that is never answered automatically.
	Bulk string
	// ListID is the List-Id header of list mail, decoded.
	ListID string
	// Forwarded is true when Body includes a forwarded message (message/rfc822 or inline).
	Forwarded bool
	// Defects lists what was wrong with the message and was worked around (Defect* values).
	Defects []string
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

// Normalize reads a raw message leniently: headers (RFC 2047 decoded), the readable text
// (text/plain, else HTML turned into text, forwarded message/rfc822 parts and TNEF bodies included),
// attachments (streamed to att, which may be nil), and whether it is an auto-reply, a bounce or
// list mail. What is broken is worked around and listed in Message.Defects: an mbox "From " line,
// broken header blocks, bad parameters, multipart without or with lost boundaries, bad
// quoted-printable or base64, unknown, missing or wrong charsets. It fails (wrapping
// ErrUnparseable) only when nothing readable is left, or with att's error.
func Normalize(r io.Reader, att AttachmentFunc) (*Message, error) {
	raw, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read message: %w", err)
	}
	m := &Message{}
	raw, cr := fixLineEndings(raw)
	if cr {
		m.Defects = append(m.Defects, DefectBareCR)
	}
	h, body, defects := readHeader(raw)
	m.Defects = append(m.Defects, defects...)
	d := &textDecoder{raw: raw, defects: &m.Defects}
	m.MessageID = firstMsgID(h.Get("Message-Id"))
	m.InReplyTo = firstMsgID(h.Get("In-Reply-To"))
	m.References = msgIDList(h.Get("References"))
	m.Subject = d.decodeHeader(h.Get("Subject"))
	if _, p, _ := parseMediaType(h.Get("Content-Type")); utf7Names[cleanCharset(p["charset"])] &&
		!strings.Contains(h.Get("Subject"), "=?") {
		// Old clients wrote the subject in the body's UTF-7 without encoded words.
		m.Subject = strings.TrimSpace(decodeUTF7([]byte(m.Subject)))
	}
	if h.Has("Return-Path") {
		m.ReturnPath = strings.TrimSpace(h.Get("Return-Path"))
	}
	if dt, err := netmail.ParseDate(h.Get("Date")); err == nil {
		m.Date = dt
	}
	m.FromName, m.FromEmail = parseFrom(d, h.Get("From"))
	w := &walker{att: att, msg: m, dec: d}
	text, err := w.entity(h, body, 0)
	if err != nil {
		return nil, err
	}
	m.Body = cleanText(text)
	if len(text) > maxTextBytes {
		m.Defects = append(m.Defects, DefectTextTruncated)
	}
	if h.Len() == 0 && !readableText(m.Body) {
		return nil, fmt.Errorf("%w: no header and no readable text", ErrUnparseable)
	}
	m.AutoSubmitted, m.Auto, m.Bulk = classifyAuto(h, m, body)
	m.ListID = d.decodeHeader(h.Get("List-Id"))
	return m, nil
}

type walker struct {
	att   AttachmentFunc
	msg   *Message
	dec   *textDecoder
	parts int
}

func (w *walker) defect(code string) { w.dec.defect(code) }

// entity returns the readable text of one entity, archiving its attachments.
func (w *walker) entity(h textproto.Header, body []byte, depth int) (string, error) {
	w.parts++
	mt, params := w.contentType(h)
	disp, dparams := w.disposition(h)
	name := decodeParam(w.dec, dparams["filename"])
	if name == "" {
		name = decodeParam(w.dec, params["name"])
	}
	attachment := disp == "attachment"
	cte := h.Get("Content-Transfer-Encoding")
	switch {
	case strings.HasPrefix(mt, "multipart/") && (depth >= maxDepth || w.parts >= maxParts):
		w.defect(DefectTooDeep)
		return "", nil // the original is archived anyway
	case strings.HasPrefix(mt, "multipart/"):
		return w.multipart(mt, params, body, depth)
	case mt == "message/rfc822" || mt == "message/global":
		if depth >= maxDepth {
			w.defect(DefectTooDeep)
			return "", nil
		}
		return w.forwarded(decodeTransferBytes(cte, body), depth)
	case (mt == "text/plain" || mt == "text/html" || mt == "text/enriched" || mt == "text/richtext") && !attachment:
		raw := decodeTransferBytes(cte, limit(body, maxHTMLBytes))
		if sniffed := sniffBinary(raw); sniffed != "" {
			// An image or PDF labelled as text (seen from broken mailers): an attachment.
			if name == "" {
				name = "adjunto"
			}
			return "", w.attachment(name, sniffed, bytes.NewReader(decodeTransferBytes(cte, body)))
		}
		s := w.dec.decode(params["charset"], raw)
		if mt == "text/html" {
			s = htmlToText(s)
		}
		return s, nil
	case mt == "message/delivery-status" || mt == "message/disposition-notification" || mt == "text/rfc822-headers" ||
		mt == "message/feedback-report" || mt == "message/global-delivery-status" || mt == "message/global-headers":
		return "", nil
	case mt == "application/ms-tnef" || mt == "application/vnd.ms-tnef" || strings.EqualFold(name, "winmail.dat"):
		return w.tnef(name, mt, decodeTransferBytes(cte, body))
	}
	if name == "" {
		name = "adjunto"
	}
	return "", w.attachment(name, mt, bytes.NewReader(decodeTransferBytes(cte, body)))
}

// sniffBinary names the type of an image, PDF or archive by its magic bytes; "" for anything else.
func sniffBinary(b []byte) string {
	t, _, _ := strings.Cut(http.DetectContentType(b), ";")
	switch {
	case strings.HasPrefix(t, "image/"), t == "application/pdf", t == "application/zip", t == "application/x-gzip":
		return t
	}
	return ""
}

func limit(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
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

func (w *walker) multipart(mt string, params map[string]string, body []byte, depth int) (string, error) {
	boundary := params["boundary"]
	if boundary == "" {
		w.defect(DefectNoBoundary)
		boundary = guessBoundary(body)
		if boundary == "" {
			return w.dec.decode("", limit(body, maxHTMLBytes)), nil
		}
	}
	parts, defects := splitMultipart(body, boundary)
	for _, d := range defects {
		w.defect(d)
	}
	if parts == nil {
		// No delimiter: read the body as the text it most likely is.
		return w.dec.decode(params["charset"], limit(body, maxHTMLBytes)), nil
	}
	var texts []string
	var plain, html string
	for i, p := range parts {
		if w.parts >= maxParts {
			w.defect(DefectTooManyParts)
			break
		}
		ph, pbody, pdefects := readHeader(p)
		for _, d := range pdefects {
			if d != DefectNoHeader && d != DefectNoSeparator {
				w.defect(d)
			}
		}
		if mt == "multipart/digest" && !ph.Has("Content-Type") {
			ph.Set("Content-Type", "message/rfc822")
		}
		pmt, _ := w.contentType(ph)
		t, err := w.entity(ph, pbody, depth+1)
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
		case mt == "multipart/report" && i > 0 && !strings.HasPrefix(pmt, "message/rfc822"):
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

// guessBoundary finds the boundary of a multipart body that declares none, as enmime and Python
// do: the first line that looks like a delimiter ("--" and a token, later repeated).
func guessBoundary(body []byte) string {
	for pos := 0; pos < len(body) && pos < 64<<10; {
		line, next := cutLine(body, pos)
		pos = next
		if len(line) > 3 && bytes.HasPrefix(line, []byte("--")) && !bytes.ContainsAny(line, " \t") {
			b := strings.TrimSuffix(string(line[2:]), "--")
			if bytes.Count(body, []byte("--"+b)) >= 2 {
				return b
			}
		}
	}
	return ""
}

// forwarded renders a message/rfc822 part as a forwarded block: its main headers and text.
func (w *walker) forwarded(body []byte, depth int) (string, error) {
	h, rest, defects := readHeader(body)
	for _, d := range defects {
		if d != DefectNoHeader {
			w.defect(d)
		}
	}
	text, err := w.entity(h, rest, depth+1)
	if err != nil {
		return "", err
	}
	if h.Len() == 0 && strings.TrimSpace(text) == "" {
		return "", nil
	}
	w.msg.Forwarded = true
	var b strings.Builder
	b.WriteString(forwardMarker + "\n")
	for _, k := range []string{"From", "Date", "Subject", "To"} {
		if v := w.dec.decodeHeader(h.Get(k)); v != "" {
			label := map[string]string{"From": "De", "Date": "Fecha", "Subject": "Asunto", "To": "Para"}[k]
			fmt.Fprintf(&b, "%s: %s\n", label, v)
		}
	}
	b.WriteString("\n")
	b.WriteString(text)
	return b.String(), nil
}

// forwardMarker opens the text of a forwarded message inside a request.
const forwardMarker = "---------- Mensaje reenviado ----------"

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// contentType reads Content-Type leniently: a type without "/" or none at all is text/plain,
// parameters are recovered when mime.ParseMediaType refuses them (DefectBadParams).
func (w *walker) contentType(h textproto.Header) (string, map[string]string) {
	v := h.Get("Content-Type")
	if strings.TrimSpace(v) == "" {
		return "text/plain", map[string]string{}
	}
	mt, params, bad := parseMediaType(v)
	if bad {
		w.defect(DefectBadParams)
	}
	if mt == "" || !strings.Contains(mt, "/") {
		mt = "text/plain"
	}
	return mt, params
}

func (w *walker) disposition(h textproto.Header) (string, map[string]string) {
	v := h.Get("Content-Disposition")
	if strings.TrimSpace(v) == "" {
		return "", map[string]string{}
	}
	d, params, bad := parseMediaType(v)
	if bad {
		w.defect(DefectBadParams)
	}
	return d, params
}

// parseMediaType is mime.ParseMediaType with a fallback for what it refuses (a missing "=", an
// unclosed quote, a bare word, duplicate or RFC 2231 parameters gone wrong): the type before the
// first ";", then every "key=value" that can be found; an unclosed quote ends at the next blank.
func parseMediaType(v string) (mt string, params map[string]string, bad bool) {
	mt, params, err := mime.ParseMediaType(v)
	if err == nil {
		return mt, params, false
	}
	mt = strings.ToLower(strings.TrimSpace(strings.SplitN(v, ";", 2)[0]))
	if i := strings.IndexAny(mt, " \t\r\n"); i >= 0 {
		mt = mt[:i]
	}
	params = map[string]string{}
	for _, kv := range strings.Split(v, ";")[1:] {
		k, val, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		k = strings.ToLower(strings.TrimSpace(k))
		k = strings.TrimSuffix(k, "*")
		val = strings.TrimSpace(val)
		if strings.HasPrefix(val, "\"") {
			if end := strings.IndexByte(val[1:], '"'); end >= 0 {
				val = val[1 : end+1]
			} else if f := strings.Fields(val[1:]); len(f) > 0 {
				val = f[0] // an unclosed quote ends at the first blank
			} else {
				val = ""
			}
		} else if f := strings.Fields(val); len(f) > 0 {
			val = f[0]
		}
		if _, dup := params[k]; !dup && k != "" {
			params[k] = val
		}
	}
	return mt, params, true
}

// decodeTransferBytes undoes a Content-Transfer-Encoding leniently (see decodeTransfer).
func decodeTransferBytes(enc string, body []byte) []byte {
	switch strings.ToLower(strings.TrimSpace(enc)) {
	case "quoted-printable", "base64":
		out, _ := io.ReadAll(decodeTransfer(enc, bytes.NewReader(body)))
		return out
	}
	return body
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

// decodeHeader decodes a header value with no message context (raw 8-bit read as UTF-8 or
// Windows-1252).
func decodeHeader(v string) string {
	return (&textDecoder{}).decodeHeader(v)
}

// decodeParam decodes a MIME parameter that some clients still send RFC 2047 encoded.
func decodeParam(d *textDecoder, v string) string {
	if v == "" {
		return ""
	}
	return d.decodeHeader(v)
}

func parseFrom(d *textDecoder, v string) (name, addr string) {
	if v == "" {
		return "", ""
	}
	if !utf8.ValidString(v) {
		v = d.asGuessed([]byte(v))
	}
	if a, err := mail.ParseAddress(v); err == nil {
		return d.decodeHeader(a.Name), strings.ToValidUTF8(strings.ToLower(a.Address), "")
	}
	// Lenient fallback: "Name <addr>" or a bare address.
	dv := d.decodeHeader(v)
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
