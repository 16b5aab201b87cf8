package memo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ipn-cgsi/caud/channels"
)

// Defaults of ReaderOptions.
const (
	DefaultReaderMaxBytes    = 10 << 20
	DefaultReaderMaxPages    = 5
	DefaultReaderPageTimeout = 20 * time.Second
	DefaultReaderWorkers     = 2
)

// ReaderOptions configures a Reader. Zero values are documented defaults.
type ReaderOptions struct {
	// MaxBytes: larger files are not read (too_large); 0 means 10 MiB.
	MaxBytes int64
	// MaxPages: longer PDFs and TIFFs are not read (too_many_pages); 0 means 5.
	MaxPages int
	// PageTimeout bounds rendering and OCR of one page; 0 means 20 s. The caller's context bounds
	// the whole file.
	PageTimeout time.Duration
	// Workers is how many files are read at once, across all callers; 0 means 2. A caller waits
	// for a turn within its context.
	Workers int
	// MaxPixels: larger images are not read; 0 means 80 megapixels.
	MaxPixels int64
	// TmpDir holds the temporary copies the tools read; "" means os.TempDir().
	TmpDir string
	// Units resolves a letterhead to a canonical unit id; nil keeps it as printed.
	Units Units
}

// Reader reads attachments of other channels (mail) through the memo pipeline: the PDF text layer
// (pdftotext), else OCR (pdftoppm + tesseract, Spanish), with the memo fields (Extract) when the
// text reads as an oficio. It implements channels.AttachmentReader. Safe for concurrent use.
type Reader struct {
	o   ReaderOptions
	ex  *extractor
	sem chan struct{}
	// missing lists the tools not installed; files are then refused with tools_missing.
	missing []string
}

// NewReader looks for the tools and returns a Reader; a missing tool is not an error (Missing
// says which, and every file is then unread with reason tools_missing).
func NewReader(ctx context.Context, o ReaderOptions) (*Reader, error) {
	o.MaxBytes = channels.OrDefault(o.MaxBytes, DefaultReaderMaxBytes)
	o.MaxPages = channels.OrDefault(o.MaxPages, DefaultReaderMaxPages)
	o.PageTimeout = channels.OrDefault(o.PageTimeout, DefaultReaderPageTimeout)
	o.Workers = channels.OrDefault(o.Workers, DefaultReaderWorkers)
	o.MaxPixels = channels.OrDefault(o.MaxPixels, 80e6)
	if o.TmpDir == "" {
		o.TmpDir = os.TempDir()
	}
	tmp, err := os.MkdirTemp(o.TmpDir, "caud-attachments-")
	if err != nil {
		return nil, fmt.Errorf("attachment reader: %w", err)
	}
	t, missing := findTools(ctx)
	r := &Reader{o: o, sem: make(chan struct{}, o.Workers), missing: missing}
	r.ex = &extractor{t: t, pageWorkers: 1, pageTimeout: o.PageTimeout, maxPages: o.MaxPages, maxPixels: o.MaxPixels, tmp: tmp}
	return r, nil
}

// Missing names the tools that are not installed ("" each when all are).
func (r *Reader) Missing() []string { return r.missing }

// Reads reports whether name/contentType is a PDF or an image this reader reads, within MaxBytes.
// The content is sniffed again before reading; this is the cheap first look.
func (r *Reader) Reads(name, contentType string, size int64) bool {
	ct := strings.ToLower(strings.TrimSpace(contentType))
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = strings.TrimSpace(ct[:i])
	}
	switch ct {
	case "application/pdf", "application/x-pdf", "image/png", "image/jpeg", "image/jpg", "image/pjpeg", "image/tiff":
		return true
	case "application/octet-stream", "application/x-download", "binary/octet-stream", "":
		switch strings.ToLower(filepath.Ext(name)) {
		case ".pdf", ".png", ".jpg", ".jpeg", ".tif", ".tiff":
			return true
		}
	}
	return false
}

func unread(reason, format string, a ...any) error {
	return &channels.UnreadError{Reason: reason, Detail: fmt.Sprintf(format, a...)}
}

// ReadAttachment reads one file within the reader's bounds and ctx. A file that cannot be read
// gives an error wrapping channels.ErrUnread with the reason (too_large, too_many_pages, timeout,
// tools_missing, unreadable, no_text); ctx ending while waiting for a turn gives timeout too.
func (r *Reader) ReadAttachment(ctx context.Context, name string, data []byte) (channels.AttachmentText, error) {
	if int64(len(data)) > r.o.MaxBytes {
		return channels.AttachmentText{}, unread("too_large", "%d bytes, over %d", len(data), r.o.MaxBytes)
	}
	kind := sniff(data)
	if kind == "" {
		return channels.AttachmentText{}, unread("unreadable", "not a PDF, PNG, JPEG or TIFF")
	}
	if len(r.missing) > 0 {
		return channels.AttachmentText{}, unread("tools_missing", "%s", strings.Join(r.missing, ", "))
	}
	select {
	case r.sem <- struct{}{}:
	case <-ctx.Done():
		return channels.AttachmentText{}, unread("timeout", "no turn to read it: %v", context.Cause(ctx))
	}
	defer func() { <-r.sem }()
	sum := sha256.Sum256(data)
	tmp := filepath.Join(r.ex.tmp, hex.EncodeToString(sum[:16])+"-"+fmt.Sprint(time.Now().UnixNano())+extensions[kind])
	if err := writeFileAtomic(tmp, data); err != nil {
		return channels.AttachmentText{}, err
	}
	defer os.Remove(tmp)
	ex, err := r.ex.run(ctx, tmp, kind)
	var f *Failure
	switch {
	case errors.As(err, &f):
		reason := "unreadable"
		switch f.Code {
		case "too_many_pages":
			reason = "too_many_pages"
		case "image_too_large":
			reason = "too_large"
		case "ocr_timeout":
			reason = "timeout"
		}
		return channels.AttachmentText{}, unread(reason, "%s", f.Msg)
	case err != nil && ctx.Err() != nil:
		return channels.AttachmentText{}, unread("timeout", "%v", context.Cause(ctx))
	case err != nil:
		return channels.AttachmentText{}, err
	}
	text := strings.TrimSpace(ex.text)
	if countLetters([]byte(text)) < 20 {
		return channels.AttachmentText{}, unread("no_text", "no readable text (%d pages, %s)", ex.pages, ex.method)
	}
	if len(text) > channels.MaxTextBytes {
		text = strings.ToValidUTF8(text[:channels.MaxTextBytes], "")
	}
	out := channels.AttachmentText{Text: text, Method: ex.method, Pages: ex.pages}
	if ex.method == "ocr" {
		out.Confidence = float64(int(ex.confidence*10)) / 10
	}
	if fl := Extract(text, r.o.Units); isOficio(fl) {
		m := fl.Memo()
		m.Pages, m.Method, m.Confidence = ex.pages, ex.method, out.Confidence
		out.Memo = m
	}
	return out, nil
}

// isOficio reports whether the fields read are those of an official memo: an oficio number, or a
// subject line together with an addressee or a signer.
func isOficio(f Fields) bool {
	return f.Number != "" || (f.Subject != "" && (f.Addressee != "" || f.Signer != ""))
}
