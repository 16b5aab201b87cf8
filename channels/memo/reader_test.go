package memo

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ipn-cgsi/caud/channels"
)

// TestReaderReadsAttachedScans: the reader behind mail attachments reads a scanned oficio (JPEG,
// OCR) and a PDF with the memo fields, and refuses, with a reason, what it must not read.
func TestReaderReadsAttachedScans(t *testing.T) {
	r, err := NewReader(context.Background(), ReaderOptions{Units: testUnits(t), TmpDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if m := r.Missing(); len(m) > 0 {
		t.Fatalf("tools missing (install tesseract-ocr, tesseract-ocr-spa, poppler-utils): %v", m)
	}
	byID := map[string]fixture{}
	for _, f := range fixtures(t) {
		byID[f.ID] = f
	}
	for _, id := range []string{"D016", "D012"} {
		f := byID[id]
		data, err := os.ReadFile("testdata/scans/" + f.File)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		got, err := r.ReadAttachment(ctx, f.File, data)
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		if got.Memo == nil || got.Memo.Number != f.Number || got.Memo.Subject != f.Subject || got.Pages < 1 {
			t.Errorf("%s: memo %+v pages %d, want number %q subject %q", id, got.Memo, got.Pages, f.Number, f.Subject)
		}
		if !strings.Contains(got.Text, f.Subject) || (got.Method != "ocr" && got.Method != "text") {
			t.Errorf("%s: method %q text %q", id, got.Method, got.Text)
		}
	}
	for _, c := range []struct {
		name, reason string
		data         []byte
		ctx          func() (context.Context, context.CancelFunc)
	}{
		{"big.pdf", "too_large", append([]byte("%PDF-1.4\n"), make([]byte, DefaultReaderMaxBytes)...), nil},
		{"notes.pdf", "unreadable", []byte("these are not the bytes of a PDF"), nil},
		{"broken.pdf", "unreadable", []byte("%PDF-1.4\n1 0 obj garbage"), nil},
		{"blank.png", "unreadable", []byte("\x89PNG\r\n\x1a\nnot really"), nil},
		{"late.jpg", "timeout", mustRead(t, "testdata/scans/D016.jpg"), func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), time.Millisecond)
		}},
	} {
		ctx, cancel := context.Background(), context.CancelFunc(func() {})
		if c.ctx != nil {
			ctx, cancel = c.ctx()
		}
		_, err := r.ReadAttachment(ctx, c.name, c.data)
		cancel()
		if !errors.Is(err, channels.ErrUnread) || channels.UnreadReason(err) != c.reason {
			t.Errorf("%s: %v, want unread %s", c.name, err, c.reason)
		}
	}
	for _, c := range []struct {
		name, ct string
		want     bool
	}{{"a.pdf", "application/pdf", true}, {"scan.JPG", "application/octet-stream", true}, {"x", "image/png; name=x", true},
		{"a.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document", false}, {"a.pdf", "text/plain", false}} {
		if got := r.Reads(c.name, c.ct, -1); got != c.want {
			t.Errorf("Reads(%q, %q) = %v", c.name, c.ct, got)
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
