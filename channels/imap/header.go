package imap

import (
	"bytes"

	"github.com/emersion/go-message/textproto"
)

// Defects: what was wrong with a message and was worked around. They are listed on the request
// (Request.Defects) so that an agent knows the text may be incomplete or guessed.
const (
	DefectMboxFrom           = "mbox_from_line"           // a leading mbox "From " envelope line
	DefectBareCR             = "cr_line_endings"          // lines end in a bare CR (old Mac)
	DefectFirstContinuation  = "first_line_continuation"  // the header starts with a folded line
	DefectBadHeaderLine      = "malformed_header_line"    // a header line without "Name:", kept as a continuation
	DefectNoSeparator        = "missing_header_separator" // no blank line between header and body
	DefectNoHeader           = "no_header"                // no header at all: the whole message is body
	DefectHeaderTooLong      = "header_too_long"          // header cut at maxHeaderBytes
	DefectBadParams          = "malformed_parameters"     // Content-Type/Disposition parameters repaired
	DefectNoBoundary         = "multipart_without_boundary"
	DefectNoStartBoundary    = "start_boundary_not_found"
	DefectNoCloseBoundary    = "close_boundary_not_found"
	DefectUnknownCharset     = "unknown_charset"      // declared charset unknown: guessed
	DefectUndeclared8bit     = "undeclared_8bit"      // 8-bit text without a charset: detected
	DefectBadCharsetData     = "invalid_charset_data" // bytes invalid in the declared charset
	DefectRaw8bitHeader      = "raw_8bit_header"      // 8-bit bytes in a header: charset detected
	DefectTooDeep            = "nesting_too_deep"     // parts nested deeper than maxDepth were not read
	DefectTooManyParts       = "too_many_parts"
	DefectTNEF               = "tnef_unreadable" // a winmail.dat that could not be read whole
	DefectTextTruncated      = "text_truncated"
	DefectBadTransferEncoded = "bad_transfer_encoding"
)

// maxHeaderBytes bounds one header block; what follows is read as body.
const maxHeaderBytes = 256 << 10

// readHeader reads a header block the way lenient parsers do (Python's email feedparser, enmime),
// and returns it with the body that follows and the defects found:
//   - a leading mbox "From " line (or one in the middle of the header) is skipped;
//   - a folded line before any field is dropped;
//   - "Name : value" (obsolete syntax, RFC 5322 section 4.5) is a field;
//   - a line that is no field, when the next line continues the header, is taken as a lost fold
//     of the field before (a long DKIM value whose indentation a relay dropped);
//   - otherwise such a line starts the body: the blank separator line is missing;
//   - a line of blanks that is followed by body text is the separator.
//
// It never fails: a message with no header at all is all body (DefectNoHeader).
func readHeader(raw []byte) (textproto.Header, []byte, []string) {
	var h textproto.Header
	var defects []string
	var name string
	var value []byte
	have := false
	flush := func() {
		if have {
			h.AddRaw(appendField(nil, name, value))
		}
		have = false
	}
	pos := 0
	for pos < len(raw) {
		line, next := cutLine(raw, pos)
		if pos > maxHeaderBytes {
			defects = append(defects, DefectHeaderTooLong)
			break
		}
		switch {
		case len(line) == 0:
			flush()
			return h, raw[next:], defects
		case isWSP(line[0]):
			if allWSP(line) && !looksHeaderAt(raw, next) {
				if have || h.Len() > 0 {
					flush()
					return h, raw[next:], defects
				}
				if pos == 0 {
					defects = append(defects, DefectFirstContinuation)
				}
				pos = next
				continue
			}
			if !have {
				if h.Len() == 0 && !contains(defects, DefectFirstContinuation) {
					defects = append(defects, DefectFirstContinuation)
				}
				pos = next
				continue
			}
			value = append(append(value, "\r\n"...), line...)
		default:
			if n, v, ok := fieldLine(line); ok {
				flush()
				name, value, have = n, append([]byte(nil), v...), true
				break
			}
			if isMboxFrom(line) {
				if !contains(defects, DefectMboxFrom) {
					defects = append(defects, DefectMboxFrom)
				}
				break
			}
			if have && looksHeaderAt(raw, next) {
				defects = append(defects, DefectBadHeaderLine)
				value = append(append(value, "\r\n "...), line...)
				break
			}
			flush()
			if h.Len() == 0 {
				defects = append(defects, DefectNoHeader)
			} else {
				defects = append(defects, DefectNoSeparator)
			}
			return h, raw[pos:], defects
		}
		pos = next
	}
	flush()
	return h, raw[min(pos, len(raw)):], defects
}

// appendField renders one field for textproto.Header.AddRaw.
func appendField(dst []byte, name string, value []byte) []byte {
	dst = append(dst, name...)
	dst = append(dst, ':')
	if len(value) == 0 || !isWSP(value[0]) {
		dst = append(dst, ' ')
	}
	dst = append(dst, value...)
	return append(dst, "\r\n"...)
}

// cutLine returns the line starting at pos without its line ending, and where the next one starts.
func cutLine(raw []byte, pos int) (line []byte, next int) {
	i := bytes.IndexByte(raw[pos:], '\n')
	if i < 0 {
		line, next = raw[pos:], len(raw)
	} else {
		line, next = raw[pos:pos+i], pos+i+1
	}
	return bytes.TrimSuffix(line, []byte("\r")), next
}

// fieldLine splits "Name: value"; the name is printable ASCII without colon or blank, and blanks
// may stand between the name and the colon (obsolete syntax).
func fieldLine(line []byte) (string, []byte, bool) {
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return "", nil, false
	}
	n := bytes.TrimRight(line[:colon], " \t")
	if len(n) == 0 {
		return "", nil, false
	}
	for _, c := range n {
		if c <= ' ' || c >= 0x7f {
			return "", nil, false
		}
	}
	return string(n), line[colon+1:], true
}

// looksHeaderAt reports whether the line at pos continues a header block: a field or a fold.
func looksHeaderAt(raw []byte, pos int) bool {
	if pos >= len(raw) {
		return false
	}
	line, _ := cutLine(raw, pos)
	if len(line) == 0 {
		return false
	}
	if isWSP(line[0]) {
		return !allWSP(line)
	}
	_, _, ok := fieldLine(line)
	return ok
}

// isMboxFrom matches an mbox envelope line ("From sender date", or ">From " as some MTAs quote it).
func isMboxFrom(line []byte) bool {
	return bytes.HasPrefix(line, []byte("From ")) || bytes.HasPrefix(line, []byte(">From "))
}

// fixLineEndings turns bare-CR line endings (classic Mac OS) into LF.
func fixLineEndings(raw []byte) ([]byte, bool) {
	if bytes.IndexByte(raw, '\n') >= 0 || bytes.IndexByte(raw, '\r') < 0 {
		return raw, false
	}
	return bytes.ReplaceAll(raw, []byte("\r"), []byte("\n")), true
}

func isWSP(c byte) bool { return c == ' ' || c == '\t' }

func allWSP(b []byte) bool {
	for _, c := range b {
		if !isWSP(c) {
			return false
		}
	}
	return true
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
