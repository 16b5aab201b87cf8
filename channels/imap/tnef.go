package imap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"path/filepath"
	"strings"
	"unicode/utf16"
)

// TNEF (Transport Neutral Encapsulation Format, [MS-OXTNEF]) is what Outlook and Exchange put in a
// winmail.dat attachment: the real body (plain, HTML or compressed RTF) and the real attachments.
// No maintained Go module reads it here, so this is a small reader of just the body and attachment
// attributes, bounded in attributes, properties and output size whatever the input.

const (
	tnefSignature = 0x223E9F78
	maxTNEFAttrs  = 10000 // attributes read from one stream
	maxTNEFProps  = 5000  // MAPI properties read from one attribute
	maxTNEFFiles  = 100
)

// TNEF attribute tags (low word of the attribute id).
const (
	attSubject      = 0x8004
	attBody         = 0x800C
	attAttachData   = 0x800F
	attAttachTitle  = 0x8010
	attAttachRend   = 0x9002
	attMsgProps     = 0x9003
	attAttachment   = 0x9005
	attOemCodepage  = 0x9007
	levelMessage    = 1
	levelAttachment = 2
)

// MAPI property tags and types read from attMsgProps and attAttachment.
const (
	prBody            = 0x1000
	prRTFCompressed   = 0x1009
	prHTML            = 0x1013
	prAttachDataObj   = 0x3701
	prAttachFilename  = 0x3704
	prAttachLongName  = 0x3707
	prAttachMimeTag   = 0x370E
	prDisplayName     = 0x3001
	prInternetCPID    = 0x3FDE
	ptString8         = 0x001E
	ptUnicode         = 0x001F
	ptBinary          = 0x0102
	ptObject          = 0x000D
	mvFlag            = 0x1000
	namedPropertyBase = 0x8000
)

// ErrTNEF is wrapped by readTNEF when the stream is no TNEF or is cut before anything was read.
var ErrTNEF = errors.New("not a readable TNEF stream")

// tnefFile is one attachment inside a TNEF stream.
type tnefFile struct {
	Name        string
	ContentType string
	Data        []byte
}

// tnefContent is what readTNEF found: the body in the best form available and the attachments.
type tnefContent struct {
	Subject  string
	Text     string // plain body, decoded
	HTML     string // HTML body, decoded
	RTF      []byte // decompressed RTF body
	Files    []tnefFile
	codepage int
	// Truncated is true when the stream ended or went wrong after something was read.
	Truncated bool
}

// readTNEF parses a TNEF stream. It returns what it read up to the first inconsistency
// (Truncated), or ErrTNEF when not even the signature is right.
func readTNEF(data []byte) (*tnefContent, error) {
	if len(data) < 6 || binary.LittleEndian.Uint32(data) != tnefSignature {
		return nil, ErrTNEF
	}
	c := &tnefContent{}
	var cur *tnefFile
	var rawText []byte
	pos := 6
	for n := 0; pos < len(data) && n < maxTNEFAttrs; n++ {
		if len(data)-pos < 9 {
			c.Truncated = true
			break
		}
		level := data[pos]
		id := binary.LittleEndian.Uint32(data[pos+1:])
		size := int(binary.LittleEndian.Uint32(data[pos+5:]))
		pos += 9
		if size < 0 || size > len(data)-pos {
			c.Truncated = true
			break
		}
		val := data[pos : pos+size]
		pos += size + 2 // the checksum is not verified: a wrong one still holds the data
		tag := id & 0xFFFF
		switch {
		case level == levelAttachment && tag == attAttachRend:
			if len(c.Files) >= maxTNEFFiles {
				c.Truncated = true
				return c.finish(rawText), nil
			}
			c.Files = append(c.Files, tnefFile{})
			cur = &c.Files[len(c.Files)-1]
		case level == levelAttachment && tag == attAttachTitle && cur != nil:
			if cur.Name == "" {
				cur.Name = cString(val)
			}
		case level == levelAttachment && tag == attAttachData && cur != nil:
			cur.Data = val
		case level == levelAttachment && tag == attAttachment && cur != nil:
			c.attachProps(cur, val)
		case level == levelMessage && tag == attBody:
			rawText = val
		case level == levelMessage && tag == attSubject:
			c.Subject = cString(val)
		case level == levelMessage && tag == attOemCodepage && len(val) >= 4:
			c.codepage = int(binary.LittleEndian.Uint32(val))
		case level == levelMessage && tag == attMsgProps:
			c.messageProps(val)
		}
	}
	return c.finish(rawText), nil
}

func (c *tnefContent) finish(rawText []byte) *tnefContent {
	if c.Text == "" && len(rawText) > 0 {
		c.Text = decodeCodepage(c.codepage, bytes.TrimRight(rawText, "\x00"))
	}
	for i := range c.Files {
		if c.Files[i].Name == "" {
			c.Files[i].Name = "Untitled Attachment"
		}
	}
	return c
}

// mapiProp is one property of a MAPI property list: its tag, type and (first) value.
type mapiProp struct {
	tag, typ uint16
	val      []byte
}

// readMAPIProps decodes a MAPI property list ([MS-OXTNEF] 2.1.3.4); it stops at the first
// property it cannot size, keeping those before.
func readMAPIProps(b []byte) (props []mapiProp, ok bool) {
	r := &leReader{b: b}
	count, ok := r.u32()
	if !ok {
		return nil, false
	}
	for i := uint32(0); i < count && i < maxTNEFProps; i++ {
		typ, ok1 := r.u16()
		tag, ok2 := r.u16()
		if !ok1 || !ok2 {
			return props, false
		}
		if tag >= namedPropertyBase {
			r.skip(16) // property set GUID
			kind, _ := r.u32()
			if kind == 0 {
				r.skip(4)
			} else {
				n, _ := r.u32()
				r.skip(pad4(int(n)))
			}
		}
		values := uint32(1)
		base := typ &^ mvFlag
		variable := base == ptString8 || base == ptUnicode || base == ptBinary || base == ptObject
		if typ&mvFlag != 0 || variable {
			if values, ok = r.u32(); !ok || values > 1<<16 {
				return props, false
			}
		}
		var first []byte
		for v := uint32(0); v < values; v++ {
			var val []byte
			if variable {
				n, ok := r.u32()
				if !ok {
					return props, false
				}
				val = r.take(int(n))
				r.skip(pad4(int(n)) - int(n))
			} else {
				size := fixedSize(base)
				if size < 0 {
					return props, false
				}
				val = r.take(size)
			}
			if r.bad {
				return props, false
			}
			if v == 0 {
				first = val
			}
		}
		props = append(props, mapiProp{tag: tag, typ: base, val: first})
	}
	return props, !r.bad
}

func (c *tnefContent) messageProps(b []byte) {
	props, ok := readMAPIProps(b)
	if !ok {
		c.Truncated = true
	}
	for _, p := range props {
		if p.tag == prInternetCPID && len(p.val) >= 4 && c.codepage == 0 {
			c.codepage = int(binary.LittleEndian.Uint32(p.val))
		}
	}
	for _, p := range props {
		switch p.tag {
		case prBody:
			if c.Text == "" {
				c.Text = c.propString(p)
			}
		case prHTML:
			if c.HTML == "" {
				c.HTML = c.propString(p)
			}
		case prRTFCompressed:
			if c.RTF == nil {
				if rtf, err := decompressRTF(p.val); err == nil {
					c.RTF = rtf
				} else {
					c.Truncated = true
				}
			}
		}
	}
}

func (c *tnefContent) attachProps(f *tnefFile, b []byte) {
	props, ok := readMAPIProps(b)
	if !ok {
		c.Truncated = true
	}
	for _, p := range props {
		switch p.tag {
		case prAttachLongName:
			if s := c.propString(p); s != "" {
				f.Name = s
			}
		case prAttachFilename, prDisplayName:
			if f.Name == "" {
				f.Name = c.propString(p)
			}
		case prAttachMimeTag:
			f.ContentType = strings.ToLower(c.propString(p))
		case prAttachDataObj:
			if f.Data == nil {
				v := p.val
				if p.typ == ptObject && len(v) >= 16 {
					v = v[16:] // interface identifier before the data
				}
				f.Data = v
			}
		}
	}
}

// propString decodes a string (or binary text) property: UTF-16LE for PT_UNICODE, else the
// message's code page.
func (c *tnefContent) propString(p mapiProp) string {
	v := p.val
	if p.typ == ptUnicode {
		u := make([]uint16, 0, len(v)/2)
		for i := 0; i+1 < len(v); i += 2 {
			u = append(u, binary.LittleEndian.Uint16(v[i:]))
		}
		return strings.TrimRight(string(utf16.Decode(u)), "\x00")
	}
	return strings.TrimRight(decodeCodepage(c.codepage, v), "\x00")
}

// decodeCodepage decodes bytes in a Windows code page number.
func decodeCodepage(cp int, b []byte) string {
	d := &textDecoder{raw: b}
	return d.decode(codepageCharset(cp), b)
}

func codepageCharset(cp int) string {
	switch {
	case cp == 0:
		return ""
	case cp == 65001:
		return "utf-8"
	case cp == 20866:
		return "koi8-r"
	case cp == 21866:
		return "koi8-u"
	case cp == 932:
		return "shift_jis"
	case cp == 936:
		return "gbk"
	case cp == 949:
		return "euc-kr"
	case cp == 950:
		return "big5"
	case cp == 50220 || cp == 50221 || cp == 50222:
		return "iso-2022-jp"
	case cp >= 28591 && cp <= 28606:
		return fmt.Sprintf("iso-8859-%d", cp-28590)
	case cp == 437 || cp == 850 || cp == 866 || cp == 874 || (cp >= 1250 && cp <= 1258):
		if cp < 1250 {
			return fmt.Sprintf("ibm%d", cp)
		}
		return fmt.Sprintf("windows-%d", cp)
	}
	return ""
}

func fixedSize(typ uint16) int {
	switch typ {
	case 0x0000, 0x0001, 0x0002, 0x0003, 0x0004, 0x000A, 0x000B:
		return 4
	case 0x0005, 0x0006, 0x0007, 0x0014, 0x0040:
		return 8
	case 0x0048:
		return 16
	}
	return -1
}

func pad4(n int) int { return (n + 3) &^ 3 }

func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return decodeCodepage(0, b)
}

// leReader reads little-endian values from a byte slice; once past the end it stays bad.
type leReader struct {
	b   []byte
	bad bool
}

func (r *leReader) take(n int) []byte {
	if n < 0 || n > len(r.b) {
		r.bad = true
		r.b = nil
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *leReader) skip(n int) { r.take(n) }

func (r *leReader) u16() (uint16, bool) {
	v := r.take(2)
	if v == nil {
		return 0, false
	}
	return binary.LittleEndian.Uint16(v), true
}

func (r *leReader) u32() (uint32, bool) {
	v := r.take(4)
	if v == nil {
		return 0, false
	}
	return binary.LittleEndian.Uint32(v), true
}

// tnef reads a winmail.dat: its body joins the text, its attachments are archived one by one.
// An unreadable stream is archived as it came (DefectTNEF).
func (w *walker) tnef(name, mt string, data []byte) (string, error) {
	if name == "" {
		name = "winmail.dat"
	}
	c, err := readTNEF(data)
	if err != nil {
		// Not TNEF at all (a PNG labelled ms-tnef has been seen): archive it as what it is.
		w.defect(DefectTNEF)
		if sniffed := http.DetectContentType(data); !strings.HasPrefix(sniffed, "application/octet-stream") {
			mt, _, _ = strings.Cut(sniffed, ";")
		}
		return "", w.attachment(name, mt, bytes.NewReader(data))
	}
	if c.Truncated {
		w.defect(DefectTNEF)
	}
	for _, f := range c.Files {
		ct := f.ContentType
		if ct == "" || ct == "application/octet-stream" {
			ct = "application/octet-stream"
			if byExt := mime.TypeByExtension(filepath.Ext(f.Name)); byExt != "" {
				ct, _, _ = strings.Cut(byExt, ";")
			}
		}
		if err := w.attachment(f.Name, ct, bytes.NewReader(f.Data)); err != nil {
			return "", err
		}
	}
	return c.body(), nil
}

// body is the text of the best body form present: plain, else HTML, else RTF.
func (c *tnefContent) body() string {
	switch {
	case strings.TrimSpace(c.Text) != "":
		return c.Text
	case strings.TrimSpace(c.HTML) != "":
		return htmlToText(c.HTML)
	case len(c.RTF) > 0:
		return rtfToText(c.RTF)
	}
	return ""
}

// TNEFSummary is what the intake reads from a winmail.dat stream: the body text (from the plain,
// HTML or RTF body, in that order), the attachment names, and whether the stream was cut or broken.
type TNEFSummary struct {
	Text      string
	Files     []string
	Truncated bool
}

// InspectTNEF reads a raw TNEF stream the way the mail reader does (for `cauctl mail check`).
func InspectTNEF(data []byte) (*TNEFSummary, error) {
	c, err := readTNEF(data)
	if err != nil {
		return nil, err
	}
	s := &TNEFSummary{Truncated: c.Truncated, Text: cleanText(c.body())}
	for _, f := range c.Files {
		s.Files = append(s.Files, f.Name)
	}
	return s, nil
}
