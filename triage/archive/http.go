package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/runes"
	"golang.org/x/text/transform"
	"golang.org/x/text/unicode/norm"

	"github.com/ipn-cgsi/caud/channels/httpjson"
)

// CSP is the Content-Security-Policy of every archived download: nothing may load or run, and a
// browser that renders the bytes anyway does so in a sandbox with an opaque origin.
const CSP = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; sandbox"

// inlineTypes may be shown in the page (the console's <img> of a scanned memo) with ?inline=1;
// everything else is always a download.
var inlineTypes = map[string]bool{"image/png": true, "image/jpeg": true, "image/gif": true, "image/webp": true}

// Register adds GET /api/v1/requests/{id}/original and GET /api/v1/requests/{id}/attachments/{n}
// (n counted from 0, as in the request's attachments) to mux, wrapped by auth. Both stream the
// archived bytes with Content-Disposition: attachment and a sanitized file name,
// X-Content-Type-Options: nosniff, the CSP above, Cache-Control: no-store and an ETag of the SHA-256;
// the declared type is sent only when it is a raster image, PDF or plain text, else
// application/octet-stream. ?inline=1 shows a raster image in the page instead of downloading it.
func (a *Archive) Register(mux *http.ServeMux, auth func(http.Handler) http.Handler) {
	mux.Handle("GET /api/v1/requests/{id}/original", auth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		f, rc, err := a.Original(ctx, r.PathValue("id"))
		a.serve(w, r, f, rc, err)
	})))
	mux.Handle("GET /api/v1/requests/{id}/attachments/{n}", auth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.PathValue("n"))
		if err != nil || n < 0 {
			httpjson.Fail(w, http.StatusNotFound, "no existe ese adjunto")
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		f, rc, err := a.Attachment(ctx, r.PathValue("id"), n)
		a.serve(w, r, f, rc, err)
	})))
}

func (a *Archive) serve(w http.ResponseWriter, r *http.Request, f File, rc io.ReadCloser, err error) {
	switch {
	case errors.Is(err, ErrUnknownRequest):
		httpjson.Fail(w, http.StatusNotFound, "no existe una solicitud con ese id")
		return
	case errors.Is(err, ErrNoOriginal):
		httpjson.Fail(w, http.StatusNotFound, "la solicitud no tiene ese archivo, o ya no se conserva")
		return
	case err != nil:
		a.log.Error("open archived file", "id", r.PathValue("id"), "err", err)
		httpjson.Fail(w, http.StatusServiceUnavailable, "no se pudo leer el archivo; intente de nuevo")
		return
	}
	defer rc.Close()
	SetHeaders(w.Header(), f, r.URL.Query().Get("inline") == "1")
	if f.SHA256 != "" && r.Header.Get("If-None-Match") == `"`+f.SHA256+`"` {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	if _, err := io.Copy(w, rc); err != nil {
		// Headers are gone: cut the connection so the client sees a failed download, never a
		// damaged file that looks complete.
		a.log.Error("stream archived file", "object", f.Object, "err", err)
		panic(http.ErrAbortHandler)
	}
}

// SetHeaders sets the defensive headers of a download of f (see Register); inline asks to show a
// raster image in the page, and is ignored for any other type. The console uses it for its own
// download links.
func SetHeaders(h http.Header, f File, inline bool) {
	ct := ServedType(f.ContentType)
	disp := "attachment"
	if inline && inlineTypes[ct] {
		disp = "inline"
	}
	h.Set("Content-Type", ct)
	h.Set("Content-Disposition", Disposition(disp, f.Name))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", CSP)
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	if f.Size >= 0 {
		h.Set("Content-Length", strconv.FormatInt(f.Size, 10))
	}
	if f.SHA256 != "" {
		h.Set("ETag", `"`+f.SHA256+`"`)
	}
}

// ServedType is the Content-Type a download is served with: the declared type when it is a raster
// image, PDF, plain text or an e-mail, else application/octet-stream (a declared text/html or SVG is
// never served as such).
func ServedType(declared string) string {
	ct, _, _ := strings.Cut(strings.ToLower(declared), ";")
	ct = strings.TrimSpace(ct)
	switch {
	case inlineTypes[ct], ct == "image/tiff", ct == "application/pdf":
		return ct
	case ct == "text/plain", ct == "message/rfc822":
		return ct + "; charset=utf-8"
	}
	return "application/octet-stream"
}

// Disposition builds a Content-Disposition of type disp with a sanitized file name: an ASCII
// fallback (filename=) and the UTF-8 name (filename*=, RFC 6266/5987).
func Disposition(disp, name string) string {
	safe := SafeFilename(name)
	ascii := asciiFallback(safe)
	v := fmt.Sprintf("%s; filename=%q", disp, ascii)
	if ascii != safe {
		v += "; filename*=UTF-8''" + extValue(safe)
	}
	return v
}

// extValue percent-encodes s as an RFC 5987 value: every byte outside attr-char.
func extValue(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$&+-.^_`|~", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// maxFilename bounds a sanitized name, in bytes.
const maxFilename = 120

// SafeFilename makes name safe to offer as a download: no directory part, no control or format
// characters, no quotes, backslashes or characters Windows refuses, no leading dots or trailing
// dots and spaces, no Windows device name (CON.txt becomes _CON.txt), at most 121 bytes (keeping
// the extension), and "archivo" when nothing is left.
func SafeFilename(name string) string {
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	var b strings.Builder
	for _, r := range strings.ToValidUTF8(name, "") {
		switch {
		case r == utf8.RuneError, unicode.IsControl(r), unicode.Is(unicode.Cf, r), unicode.Is(unicode.Co, r):
		case strings.ContainsRune(`"*:<>?|%;`, r):
			b.WriteRune('_')
		case unicode.IsSpace(r):
			b.WriteRune(' ')
		default:
			b.WriteRune(r)
		}
	}
	s := strings.Join(strings.Fields(b.String()), " ")
	s = strings.TrimLeft(s, ". ")
	s = strings.TrimRight(s, ". ")
	if len(s) > maxFilename {
		ext := ""
		if i := strings.LastIndexByte(s, '.'); i > 0 && len(s)-i <= 10 {
			ext = s[i:]
		}
		cut := maxFilename - len(ext)
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = strings.TrimRight(s[:cut], ". ") + ext
	}
	if s == "" {
		return "archivo"
	}
	if base, _, _ := strings.Cut(s, "."); windowsReserved[strings.ToUpper(strings.TrimSpace(base))] {
		s = "_" + s
	}
	return s
}

// windowsReserved are device names Windows will not save a file under, whatever the extension.
var windowsReserved = map[string]bool{
	"CON": true, "PRN": true, "AUX": true, "NUL": true, "COM1": true, "COM2": true, "COM3": true, "COM4": true,
	"COM5": true, "COM6": true, "COM7": true, "COM8": true, "COM9": true, "LPT1": true, "LPT2": true, "LPT3": true,
	"LPT4": true, "LPT5": true, "LPT6": true, "LPT7": true, "LPT8": true, "LPT9": true,
}

// asciiFallback folds accents and replaces what is left outside printable ASCII by "_".
func asciiFallback(s string) string {
	t := transform.Chain(norm.NFD, runes.Remove(runes.In(unicode.Mn)), norm.NFC)
	if f, _, err := transform.String(t, s); err == nil {
		s = f
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '_'
		}
		return r
	}, s)
}
