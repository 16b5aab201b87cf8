package console

import (
	"bytes"
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	_ "github.com/emersion/go-message/charset" // decode mail in any charset go-message knows
	"github.com/emersion/go-message/mail"
	"github.com/microcosm-cc/bluemonday"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/triage/archive"
)

// maxOriginal bounds what the console reads of an original to show it (bigger ones are only
// offered as a download).
const maxOriginal = 25 << 20

// OriginalCSP is the policy of the sanitized mail document shown in the item view's iframe: no
// script, no plugin, no style, images only from data: URIs (remote content is blocked even if the
// sanitizer missed it), no forms, and a sandbox (a unique origin: no cookies, no storage).
const OriginalCSP = "default-src 'none'; img-src data:; style-src 'none'; form-action 'none'; base-uri 'none'; " +
	"frame-ancestors 'self'; sandbox"

// downloadCSP sandboxes anything served for download, should a browser render it anyway.
const downloadCSP = "default-src 'none'; sandbox"

// originalInfo is what the item view shows of the original.
type originalInfo struct {
	Kind    string // correo | imagen | documento | datos | ninguno
	Text    string // the mail's text part, or the webhook body
	HasHTML bool
	Size    int64
	Error   string
	// Pages are the page numbers of a scanned PDF to show as images.
	Pages []int
}

// mailPolicy sanitizes mail HTML: the UGC policy (no script, no event handlers, no style, no
// forms, no frames), links opened outside with no referrer, and every image not inline (data:)
// removed, so that opening a mail never tells its sender it was read.
func mailPolicy() *bluemonday.Policy {
	p := bluemonday.UGCPolicy()
	p.AllowDataURIImages()
	p.RequireNoReferrerOnLinks(true)
	p.AddTargetBlankToFullyQualifiedLinks(true)
	p.RewriteSrc(func(u *url.URL) {
		if u.Scheme != "data" {
			*u = url.URL{}
		}
	})
	return p
}

// SanitizeMail returns what the item view shows of a raw mail: its text part, and its HTML part
// sanitized (to be served with OriginalCSP in a sandboxed frame). Tools that check the sanitizer
// against outside corpora use it.
func SanitizeMail(raw []byte) (text, html string) {
	text, h, _ := mailParts(raw)
	return text, mailPolicy().Sanitize(h)
}

// mailParts returns the first text/plain and text/html bodies of a mail, decoded to UTF-8. A mail
// that does not parse as MIME is shown as its raw text.
func mailParts(raw []byte) (text, html string, err error) {
	mr, err := mail.CreateReader(bytes.NewReader(raw))
	if err != nil && mr == nil {
		return strings.ToValidUTF8(string(raw), "\uFFFD"), "", nil
	}
	defer mr.Close()
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if text == "" && html == "" {
				return strings.ToValidUTF8(string(raw), "\uFFFD"), "", nil
			}
			break
		}
		h, ok := p.Header.(*mail.InlineHeader)
		if !ok {
			continue
		}
		ct, _, _ := h.ContentType()
		switch {
		case ct == "text/plain" && text == "", ct == "" && text == "":
			b, _ := io.ReadAll(io.LimitReader(p.Body, maxOriginal))
			text = strings.ToValidUTF8(string(b), "\uFFFD")
		case ct == "text/html" && html == "":
			b, _ := io.ReadAll(io.LimitReader(p.Body, maxOriginal))
			html = strings.ToValidUTF8(string(b), "\uFFFD")
		}
	}
	return text, html, nil
}

// readOriginal reads a request's original (at most maxOriginal bytes).
func (c *Console) readOriginal(ctx context.Context, id string) ([]byte, error) {
	if c.o.Archive == nil {
		return nil, archive.ErrNoOriginal
	}
	_, rc, err := c.o.Archive.Original(ctx, id)
	if err != nil {
		return nil, err
	}
	return archive.ReadAll(rc, maxOriginal)
}

// original describes the original of a request for the item view.
func (c *Console) original(ctx context.Context, r *channels.Request) *originalInfo {
	if r.Original == nil || r.Original.Object == "" {
		return &originalInfo{Kind: "ninguno"}
	}
	oi := &originalInfo{Size: r.Original.Size}
	raw, err := c.readOriginal(ctx, r.ID)
	if err != nil {
		c.log.Warn("console original", "request", r.ID, "err", err)
		oi.Kind, oi.Error = "ninguno", "No se pudo leer el original archivado; puede descargarlo."
		return oi
	}
	switch r.Channel {
	case channels.MediumEmail:
		oi.Kind = "correo"
		var html string
		oi.Text, html, _ = mailParts(raw)
		oi.HasHTML = strings.TrimSpace(html) != ""
	case channels.MediumMemo:
		switch ct := http.DetectContentType(raw); {
		case isImage(ct):
			oi.Kind = "imagen"
		case ct == "application/pdf":
			oi.Kind = "pdf"
			pages := 1
			if r.Memo != nil && r.Memo.Pages > 0 {
				pages = min(r.Memo.Pages, maxScanPages)
			}
			for i := 1; i <= pages; i++ {
				oi.Pages = append(oi.Pages, i)
			}
		default:
			oi.Kind = "documento"
		}
	default:
		oi.Kind = "datos"
		if utf8.Valid(raw) {
			oi.Text = string(raw)
		}
	}
	return oi
}

func isImage(ct string) bool {
	switch ct {
	case "image/png", "image/jpeg", "image/gif", "image/webp":
		return true
	}
	return false
}

func (c *Console) requestFor(w http.ResponseWriter, r *http.Request, s *req) (*channels.Request, bool) {
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	v, err := c.loadRequest(ctx, r.PathValue("id"))
	if err != nil {
		c.requestError(w, r, s, err)
		return nil, false
	}
	return &v.Request, true
}

// originalHTML serves the sanitized HTML of a mail as a sandboxed document for the item view's iframe.
func (c *Console) originalHTML(w http.ResponseWriter, r *http.Request, s *req) {
	rq, ok := c.requestFor(w, r, s)
	if !ok {
		return
	}
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	var body string
	if rq.Original != nil && rq.Channel == channels.MediumEmail {
		raw, err := c.readOriginal(ctx, rq.ID)
		if err == nil {
			_, html, _ := mailParts(raw)
			body = mailPolicy().Sanitize(html)
		}
	}
	h := w.Header()
	h.Set("Content-Security-Policy", OriginalCSP)
	h.Set("Content-Type", "text/html; charset=utf-8")
	var b strings.Builder
	b.WriteString("<!doctype html><html lang=\"es-MX\"><head><meta charset=\"utf-8\"><title>Original</title></head><body>")
	b.WriteString(body)
	b.WriteString("</body></html>")
	_, _ = io.WriteString(w, b.String())
}

// originalFile serves the archived original: inline when it is a scanned image (for the item view's
// <img>), else as a download.
func (c *Console) originalFile(w http.ResponseWriter, r *http.Request, s *req) {
	c.serveArchived(w, r, s, r.URL.Query().Get("ver") == "imagen", func(ctx context.Context, id string) (archive.File, io.ReadCloser, error) {
		return c.o.Archive.Original(ctx, id)
	})
}

// attachment serves one attachment, always as a download.
func (c *Console) attachment(w http.ResponseWriter, r *http.Request, s *req) {
	n, err := strconv.Atoi(r.PathValue("n"))
	if err != nil {
		c.fail(w, r, s, http.StatusNotFound, "Ese adjunto no existe o no se archivó.")
		return
	}
	c.serveArchived(w, r, s, false, func(ctx context.Context, id string) (archive.File, io.ReadCloser, error) {
		return c.o.Archive.Attachment(ctx, id, n)
	})
}

// serveArchived streams archived bytes. Whatever the source declared, a download is
// application/octet-stream with Content-Disposition: attachment, nosniff and a sandbox policy, so a
// hostile HTML or SVG attachment never renders in the console's origin; only a scanned page that
// really is PNG, JPEG, GIF or WebP (sniffed) is shown inline, when asked for.
func (c *Console) serveArchived(w http.ResponseWriter, r *http.Request, s *req, inlineImage bool, open func(context.Context, string) (archive.File, io.ReadCloser, error)) {
	if c.o.Archive == nil {
		c.fail(w, r, s, http.StatusNotFound, "No hay almacén de originales en este servidor.")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Minute)
	defer cancel()
	f, rc, err := open(ctx, r.PathValue("id"))
	switch {
	case errors.Is(err, archive.ErrUnknownRequest):
		c.fail(w, r, s, http.StatusNotFound, "No existe una solicitud con ese identificador.")
		return
	case errors.Is(err, archive.ErrNoOriginal):
		c.fail(w, r, s, http.StatusNotFound, "Ese archivo no existe o ya no está en el almacén de originales.")
		return
	case err != nil:
		c.log.Error("console archived file", "request", r.PathValue("id"), "err", err)
		c.fail(w, r, s, http.StatusServiceUnavailable, "No se pudo leer el archivo; intente de nuevo.")
		return
	}
	defer rc.Close()
	head := make([]byte, 512)
	n, _ := io.ReadFull(rc, head)
	head = head[:n]
	h := w.Header()
	h.Set("Content-Security-Policy", downloadCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.FormatInt(f.Size, 10))
	name := archive.SafeFilename(f.Name)
	if ct := http.DetectContentType(head); inlineImage && isImage(ct) {
		h.Set("Content-Type", ct)
		h.Set("Content-Disposition", mime.FormatMediaType("inline", map[string]string{"filename": name}))
	} else {
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
	}
	_, _ = w.Write(head)
	if _, err := io.Copy(w, rc); err != nil {
		c.log.Warn("console archived file", "request", r.PathValue("id"), "err", err)
	}
}
