package imap

import "bytes"

// splitMultipart cuts a multipart body into its parts at the delimiter lines "--boundary" and the
// close "--boundary--" (trailing blanks allowed, as RFC 2046 permits; a longer boundary that only
// starts with this one is not a delimiter). It is line-based like Python's email parser, so a
// part's own broken header never hides the parts after it, and it recovers:
//   - no delimiter at all (DefectNoStartBoundary): no parts; the caller reads the body as text;
//   - no close delimiter (DefectNoCloseBoundary): the last part runs to the end.
//
// The line break before a delimiter belongs to the delimiter. At most maxParts parts are returned.
func splitMultipart(body []byte, boundary string) (parts [][]byte, defects []string) {
	dash := []byte("--" + boundary)
	start := -1 // where the current part's bytes start
	closed := false
	for pos := 0; pos < len(body); {
		i := bytes.Index(body[pos:], dash)
		if i < 0 {
			break
		}
		at := pos + i
		end := at + len(dash)
		if at > 0 && body[at-1] != '\n' {
			pos = end
			continue
		}
		rest, next := cutLine(body, end)
		isClose := bytes.HasPrefix(rest, []byte("--"))
		if isClose {
			rest = rest[2:]
		}
		if !allWSP(rest) {
			pos = end
			continue
		}
		if start >= 0 {
			parts = append(parts, trimLineEnd(body[start:at]))
			if len(parts) >= maxParts {
				defects = append(defects, DefectTooManyParts)
				return parts, defects
			}
		}
		if isClose {
			closed = true
			break
		}
		start = next
		pos = next
	}
	switch {
	case start < 0 && !closed:
		return nil, []string{DefectNoStartBoundary}
	case !closed && start >= 0:
		parts = append(parts, body[start:])
		defects = append(defects, DefectNoCloseBoundary)
	}
	return parts, defects
}

// trimLineEnd drops one trailing LF or CRLF.
func trimLineEnd(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte("\n"))
	return bytes.TrimSuffix(b, []byte("\r"))
}
