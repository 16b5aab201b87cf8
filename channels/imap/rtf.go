package imap

import (
	"encoding/binary"
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"
)

// maxRTFBytes bounds a decompressed RTF body.
const maxRTFBytes = 4 << 20

// rtfPrebuf is the dictionary that compressed RTF starts from ([MS-OXRTFCP] 2.1.2.1).
const rtfPrebuf = "{\\rtf1\\ansi\\mac\\deff0\\deftab720{\\fonttbl;}{\\f0\\fnil \\froman \\fswiss \\fmodern \\fscript \\fdecor MS Sans SerifSymbolArialTimes New RomanCourier{\\colortbl\\red0\\green0\\blue0\r\n\\par \\pard\\plain\\f0\\fs20\\b\\i\\u\\tab\\tx"

var errCompressedRTF = errors.New("bad compressed RTF")

// decompressRTF undoes the LZ77 variant of PR_RTF_COMPRESSED ("LZFu"), or unwraps an
// uncompressed one ("MELA"). The CRC is not checked: a wrong one still holds the text.
func decompressRTF(b []byte) ([]byte, error) {
	if len(b) < 16 {
		return nil, errCompressedRTF
	}
	rawSize := int(binary.LittleEndian.Uint32(b[4:]))
	kind := string(b[8:12])
	in := b[16:]
	switch kind {
	case "MELA":
		return in[:min(len(in), rawSize, maxRTFBytes)], nil
	case "LZFu":
	default:
		return nil, errCompressedRTF
	}
	var dict [4096]byte
	copy(dict[:], rtfPrebuf)
	wpos := len(rtfPrebuf)
	out := make([]byte, 0, min(rawSize, maxRTFBytes))
	for i := 0; i < len(in); {
		flags := in[i]
		i++
		for bit := 0; bit < 8 && i < len(in); bit++ {
			if flags&(1<<bit) == 0 {
				c := in[i]
				i++
				out = append(out, c)
				dict[wpos] = c
				wpos = (wpos + 1) % len(dict)
			} else {
				if i+1 >= len(in) {
					return out, nil
				}
				ref := int(in[i])<<8 | int(in[i+1])
				i += 2
				off, n := ref>>4, ref&0xF+2
				if off == wpos {
					return out, nil // the end marker
				}
				for k := 0; k < n; k++ {
					c := dict[(off+k)%len(dict)]
					out = append(out, c)
					dict[wpos] = c
					wpos = (wpos + 1) % len(dict)
				}
			}
			if len(out) >= maxRTFBytes {
				return out, nil
			}
		}
	}
	return out, nil
}

// rtfSkipDestinations are RTF groups that hold no body text.
var rtfSkipDestinations = map[string]bool{
	"fonttbl": true, "colortbl": true, "stylesheet": true, "info": true, "pict": true, "object": true,
	"header": true, "footer": true, "headerl": true, "headerr": true, "footerl": true, "footerr": true,
	"themedata": true, "datastore": true, "xmlnstbl": true, "listtable": true, "listoverridetable": true,
	"rsidtbl": true, "generator": true, "mmathPr": true, "latentstyles": true, "filetbl": true,
	"revtbl": true, "pgdsctbl": true, "colorschememapping": true, "fldinst": true, "bkmkstart": true,
	"bkmkend": true, "shppict": true, "nonshppict": true,
}

// rtfToText extracts the readable text of an RTF document: destinations that hold no text are
// skipped, \par and \line break lines, \'hh is read in the document's code page, \uN is a
// character (its \ucN fallback characters skipped), and in RTF that encapsulates HTML (Outlook's
// \fromhtml1) the \htmlrtf spans, which only repeat the HTML's formatting, are left out.
func rtfToText(rtf []byte) string {
	type group struct {
		skip, htmlrtf bool
		uc            int
	}
	var b strings.Builder
	var pending []byte // \'hh bytes waiting to be decoded together (multi-byte code pages)
	cp := 1252
	st := []group{{uc: 1}}
	skipChars := 0
	flush := func() {
		if len(pending) > 0 {
			b.WriteString(decodeCodepage(cp, pending))
			pending = pending[:0]
		}
	}
	top := func() *group { return &st[len(st)-1] }
	emit := func(s string) {
		g := top()
		if g.skip || g.htmlrtf {
			return
		}
		flush()
		b.WriteString(s)
	}
	for i := 0; i < len(rtf) && b.Len() < maxTextBytes; {
		c := rtf[i]
		switch c {
		case '{':
			if len(st) < 256 {
				st = append(st, *top())
			}
			i++
		case '}':
			flush()
			if len(st) > 1 {
				st = st[:len(st)-1]
			}
			i++
		case '\\':
			i++
			if i >= len(rtf) {
				break
			}
			c = rtf[i]
			switch {
			case c == '\'' && i+2 < len(rtf):
				v, err := strconv.ParseUint(string(rtf[i+1:i+3]), 16, 8)
				i += 3
				if skipChars > 0 {
					skipChars--
					continue
				}
				if err == nil && !top().skip && !top().htmlrtf {
					pending = append(pending, byte(v))
				}
			case c == '*':
				i++
				// \*\htmltag and other optional destinations: skip unless the text is plain RTF.
				top().skip = true
			case isLetter(c):
				j := i
				for j < len(rtf) && isLetter(rtf[j]) && j-i < 32 {
					j++
				}
				word := string(rtf[i:j])
				k := j
				if k < len(rtf) && (rtf[k] == '-' || isDigit(rtf[k])) {
					k++
					for k < len(rtf) && isDigit(rtf[k]) && k-j < 11 {
						k++
					}
				}
				param, hasParam := 0, k > j
				if hasParam {
					param, _ = strconv.Atoi(string(rtf[j:k]))
				}
				if k < len(rtf) && rtf[k] == ' ' {
					k++
				}
				i = k
				switch word {
				case "par", "line", "row":
					emit("\n")
				case "tab", "cell":
					emit("\t")
				case "ansicpg":
					cp = param
				case "uc":
					top().uc = param
				case "u":
					if param < 0 {
						param += 65536
					}
					if utf8.ValidRune(rune(param)) {
						emit(string(rune(param)))
					}
					skipChars = top().uc
				case "htmlrtf":
					top().htmlrtf = !hasParam || param != 0
				case "emdash":
					emit("—")
				case "endash":
					emit("–")
				case "bullet":
					emit("•")
				case "lquote", "rquote":
					emit("'")
				case "ldblquote", "rdblquote":
					emit("\"")
				default:
					if rtfSkipDestinations[word] {
						top().skip = true
					}
				}
			default:
				// \\, \{, \} and other control symbols stand for themselves; \~ is a space.
				i++
				switch c {
				case '~':
					emit(" ")
				case '\\', '{', '}':
					emit(string(c))
				case '\n', '\r':
					emit("\n")
				}
			}
		case '\r', '\n':
			i++
		default:
			i++
			if skipChars > 0 {
				skipChars--
				continue
			}
			if c < 0x80 {
				emit(string(c))
			} else if !top().skip && !top().htmlrtf {
				pending = append(pending, c)
			}
		}
	}
	flush()
	return strings.ReplaceAll(b.String(), "\x00", "")
}

func isLetter(c byte) bool { return ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') }
func isDigit(c byte) bool  { return '0' <= c && c <= '9' }
