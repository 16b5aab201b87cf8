package imap

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/memo"
)

// mailWith is a mail with body (may be empty) and one attachment.
func mailWith(id, subject, body, name, ct string, data []byte) []byte {
	enc := base64.StdEncoding.EncodeToString(data)
	var lines []string
	for len(enc) > 76 {
		lines, enc = append(lines, enc[:76]), enc[76:]
	}
	lines = append(lines, enc)
	return []byte(fmt.Sprintf("From: Dirección CECyT 9 <direccion.cecyt9@ipn.mx>\r\nTo: cau@ipn.mx\r\nSubject: %s\r\n"+
		"Message-ID: <%s@ipn.mx>\r\nDate: Tue, 14 Oct 2025 10:00:00 -0600\r\nMIME-Version: 1.0\r\n"+
		"Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n"+
		"--b1\r\nContent-Type: %s; name=\"%s\"\r\nContent-Disposition: attachment; filename=\"%s\"\r\nContent-Transfer-Encoding: base64\r\n\r\n%s\r\n--b1--\r\n",
		subject, id, body, ct, name, name, strings.Join(lines, "\r\n")))
}

// TestAttachedScannedOficioIsRead: a mail whose only content is a scanned oficio becomes a request
// whose attachment carries the OCR text and whose memo fields (and empty subject) come from it.
func TestAttachedScannedOficioIsRead(t *testing.T) {
	env := startNATS(t)
	srv := startMemServer(t, serverOpts{})
	c := dialIMAP(t, srv.Addr)
	scan := readFile(t, "testdata/attachments/oficio-escaneado.jpg")
	appendRaw(t, c, "INBOX", mailWith("oficio-1", "", "", "oficio.jpg", "image/jpeg", scan))
	appendRaw(t, c, "INBOX", mailWith("docx-1", "Formato", "Les envío el formato.", "formato.docx",
		"application/vnd.openxmlformats-officedocument.wordprocessingml.document", []byte("PK\x03\x04 not read")))
	reader, err := memo.NewReader(context.Background(), memo.ReaderOptions{TmpDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if m := reader.Missing(); len(m) > 0 {
		t.Fatalf("tools missing (CI installs tesseract-ocr-spa and poppler-utils): %v", m)
	}
	o := env.options(srv.Addr)
	o.Attachments, o.AttachmentTimeout = reader, 2*time.Minute
	r := runMailbox(t, o, env.Sink)
	waitFor(t, 3*time.Minute, "2 requests", func() bool { return r.mb.Stats().Published == 2 })
	byMID := map[string]channels.Request{}
	for _, req := range env.inbound(t) {
		byMID[req.Source.MessageID] = req
	}
	req := byMID["<oficio-1@ipn.mx>"]
	if len(req.Attachments) != 1 {
		t.Fatalf("oficio mail: attachments %+v", req.Attachments)
	}
	a := req.Attachments[0]
	if a.Method != "ocr" || a.Pages != 1 || !strings.Contains(a.Text, "nodos de red") || a.Unread != "" || a.Object == "" {
		t.Errorf("attachment %+v", a)
	}
	if req.Memo == nil || req.Memo.Number != "CECyT9/DIR/0673/2025" || req.Subject != "Instalación de nodos de red" {
		t.Errorf("memo %+v subject %q", req.Memo, req.Subject)
	}
	if txt := req.AttachmentText(1 << 20); !strings.HasPrefix(txt, "[adjunto oficio.jpg]\n") {
		t.Errorf("attachment text %q", txt)
	}
	docx := byMID["<docx-1@ipn.mx>"]
	if len(docx.Attachments) != 1 || docx.Attachments[0].Text != "" || docx.Attachments[0].Unread != "" || docx.Memo != nil {
		t.Errorf("docx mail: %+v memo %+v", docx.Attachments, docx.Memo)
	}
}

// stuckReader never finishes reading before its context ends.
type stuckReader struct{}

func (stuckReader) Reads(string, string, int64) bool { return true }
func (stuckReader) ReadAttachment(ctx context.Context, _ string, _ []byte) (channels.AttachmentText, error) {
	<-ctx.Done()
	return channels.AttachmentText{}, ctx.Err()
}

// TestAttachmentReadingIsBounded: a reader that does not answer costs a mail AttachmentTimeout at
// most; the request is published with the attachment marked unread (timeout).
func TestAttachmentReadingIsBounded(t *testing.T) {
	env := startNATS(t)
	srv := startMemServer(t, serverOpts{})
	c := dialIMAP(t, srv.Addr)
	appendRaw(t, c, "INBOX", mailWith("slow-1", "Oficio", "Adjunto el oficio.", "oficio.pdf", "application/pdf", []byte("%PDF-1.4 whatever")))
	o := env.options(srv.Addr)
	o.Attachments, o.AttachmentTimeout = stuckReader{}, 100*time.Millisecond
	r := runMailbox(t, o, env.Sink)
	waitFor(t, 30*time.Second, "published", func() bool { return r.mb.Stats().Published == 1 })
	reqs := env.inbound(t)
	if len(reqs) != 1 || len(reqs[0].Attachments) != 1 || reqs[0].Attachments[0].Unread != "timeout" {
		t.Fatalf("requests %+v", reqs)
	}
}

// gatedReader reads nothing until release is closed.
type gatedReader struct{ release chan struct{} }

func (gatedReader) Reads(string, string, int64) bool { return true }
func (g gatedReader) ReadAttachment(ctx context.Context, _ string, _ []byte) (channels.AttachmentText, error) {
	select {
	case <-g.release:
		return channels.AttachmentText{Text: "Solicito la instalación de nodos de red en el laboratorio.", Method: "text", Pages: 1}, nil
	case <-ctx.Done():
		return channels.AttachmentText{}, ctx.Err()
	}
}

// TestMailBeingReadDoesNotHoldTheMailbox: while one mail's attachment is being read, the mails
// after it are published and filed; the read one is published once read, then filed, and the
// checkpoint passes it only then.
func TestMailBeingReadDoesNotHoldTheMailbox(t *testing.T) {
	env := startNATS(t)
	srv := startMemServer(t, serverOpts{})
	c := dialIMAP(t, srv.Addr)
	g := gatedReader{release: make(chan struct{})}
	o := env.options(srv.Addr)
	o.Attachments, o.AttachmentTimeout = g, time.Minute
	appendRaw(t, c, "INBOX", mailWith("slow-2", "Oficio", "Adjunto el oficio.", "oficio.pdf", "application/pdf", []byte("%PDF-1.4 whatever")))
	for i := range 3 {
		appendRaw(t, c, "INBOX", synthMail(200+i))
	}
	r := runMailbox(t, o, env.Sink)
	waitFor(t, time.Minute, "the 3 plain mails", func() bool { return r.mb.Stats().Published == 3 })
	waitFor(t, time.Minute, "the plain mails filed", func() bool { return folderCount(t, c, "INBOX") == 1 })
	if cp, err := loadCheckpoint(context.Background(), env.State, o.Name); err != nil || cp.cp.LastUID != 0 {
		t.Fatalf("checkpoint %+v (%v) passed the mail still being read", cp.cp, err)
	}
	close(g.release)
	waitFor(t, time.Minute, "the read mail", func() bool { return r.mb.Stats().Published == 4 })
	waitFor(t, time.Minute, "inbox emptied", func() bool { return folderCount(t, c, "INBOX") == 0 })
	waitFor(t, time.Minute, "checkpoint past the read mail", func() bool {
		cp, err := loadCheckpoint(context.Background(), env.State, o.Name)
		return err == nil && cp.cp.LastUID >= 1 && cp.cp.Move == nil
	})
	if n := folderCount(t, c, "Procesados"); n != 4 {
		t.Errorf("Procesados holds %d, want 4", n)
	}
	var read *channels.Request
	for _, req := range env.inbound(t) {
		if req.Source.MessageID == "<slow-2@ipn.mx>" {
			read = &req
		}
	}
	if read == nil || len(read.Attachments) != 1 || read.Attachments[0].Method != "text" || env.inboundCount(t) != 4 {
		t.Fatalf("read mail %+v, %d requests", read, env.inboundCount(t))
	}
}
