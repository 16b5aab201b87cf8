package channels

import (
	"context"
	"errors"
)

// AttachmentReader reads the text of an attachment: a PDF's text layer, or OCR of a scan or
// photo (channels/memo.Reader, with pdftotext and tesseract). Channels that receive files (mail)
// take one as an option; none means attachments are archived unread.
type AttachmentReader interface {
	// Reads reports whether the reader handles a file of this content type, name and size: a
	// cheap check before the bytes are kept for reading.
	Reads(name, contentType string, size int64) bool
	// ReadAttachment reads data. The error wraps ErrUnread (with the reason) when the file is of
	// a readable type but cannot be read within the reader's bounds; other errors are transient
	// (ctx ended).
	ReadAttachment(ctx context.Context, name string, data []byte) (AttachmentText, error)
}

// AttachmentText is what an AttachmentReader read.
type AttachmentText struct {
	Text       string
	Method     string // text | ocr
	Pages      int
	Confidence float64 // mean OCR word confidence 0-100; 0 for a text layer
	// Memo holds the fields of an official memo (oficio) when the text reads as one.
	Memo *Memo
}

// ErrUnread is wrapped by an AttachmentReader for a file it will not read; UnreadReason gives the
// short reason (too_large, too_many_pages, timeout, tools_missing, unreadable).
var ErrUnread = errors.New("attachment not read")

// UnreadError is the error of an attachment not read, with its reason.
type UnreadError struct {
	Reason string
	Detail string
}

func (e *UnreadError) Error() string { return "attachment not read: " + e.Reason + ": " + e.Detail }

// Unwrap makes errors.Is(err, ErrUnread) true.
func (e *UnreadError) Unwrap() error { return ErrUnread }

// UnreadReason is the reason of an ErrUnread error, "" for other errors.
func UnreadReason(err error) string {
	var ue *UnreadError
	if errors.As(err, &ue) {
		return ue.Reason
	}
	return ""
}
