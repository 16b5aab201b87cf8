package memo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ipn-cgsi/caud/channels"
)

// Result says what became of one memo file.
type Result struct {
	ID        string
	Duplicate bool
	Fields    Fields
}

// record is the request id given to one scan, kept under .caud/records/<sha256>.json.
type record struct {
	ID         string    `json:"id"`
	File       string    `json:"file"`
	Source     string    `json:"source"`
	ReceivedAt time.Time `json:"received_at"`
	Published  bool      `json:"published"`
}

// upload is what an upload said besides the file, kept while it is in processing/.
type upload struct {
	Name  string `json:"name"`
	Email string `json:"email,omitempty"`
	Unit  string `json:"unit,omitempty"`
}

// process takes one file of processing/ to processed/ (published) or failed/ (a *Failure). Any
// other error leaves it in processing/ for a retry.
func (m *Memo) process(ctx context.Context, sink channels.Sink, name string) (Result, error) {
	path := filepath.Join(m.dirs.processing, name)
	var up *upload
	if b, err := os.ReadFile(filepath.Join(m.dirs.uploads, name+".json")); err == nil {
		up = new(upload)
		if err := json.Unmarshal(b, up); err != nil {
			up = nil
		}
	}
	origName, source := sanitizeName(name), "memo://spool/"
	if up != nil {
		origName, source = up.Name, "memo://upload/"
	}
	st, err := os.Stat(path)
	if err != nil {
		return Result{}, err
	}
	if st.Size() == 0 {
		return Result{}, m.failFile(name, "", fail("empty", 400, "El archivo está vacío.", "file is empty"))
	}
	if st.Size() > m.o.MaxBytes {
		return Result{}, m.failFile(name, "", fail("too_large", 413, fmt.Sprintf("El archivo excede %d MiB.", m.o.MaxBytes>>20),
			"file is %d bytes, over the limit of %d", st.Size(), m.o.MaxBytes))
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return Result{}, err
	}
	sum := sha256.Sum256(data)
	sha := hex.EncodeToString(sum[:])
	unlock := m.shaMu.lock(sha)
	defer unlock()

	recPath := filepath.Join(m.dirs.records, sha+".json")
	var rec record
	haveRec := false
	if b, err := os.ReadFile(recPath); err == nil && json.Unmarshal(b, &rec) == nil && rec.ID != "" {
		haveRec = true
	}
	if haveRec && rec.Published {
		m.m.dups.Inc()
		if err := m.finish(name); err != nil {
			return Result{}, err
		}
		return Result{ID: rec.ID, Duplicate: true}, nil
	}
	kind := sniff(data)
	if kind == "" {
		return Result{}, m.failFile(name, sha, unsupported(data))
	}
	if !haveRec {
		now := m.o.Now().UTC()
		rec = record{ID: m.ids.New(now), File: origName, Source: source + origName, ReceivedAt: now}
		if err := writeFileAtomic(recPath, mustJSON(rec)); err != nil {
			return Result{}, fmt.Errorf("record: %w", err)
		}
	}
	ex := m.extractor()
	if ex == nil {
		return Result{}, ErrToolsMissing
	}
	// The tools see a temporary copy named by the hash, never the name the file came with.
	tmp := filepath.Join(m.dirs.tmp, sha[:32]+extensions[kind])
	if err := writeFileAtomic(tmp, data); err != nil {
		return Result{}, err
	}
	defer os.Remove(tmp)
	text, err := ex.run(ctx, tmp, kind)
	var f *Failure
	if errors.As(err, &f) {
		return Result{}, m.failFile(name, sha, f)
	}
	if err != nil {
		return Result{}, err
	}
	m.m.pages.Add(float64(text.pages))
	if text.method == "ocr" {
		m.m.conf.Observe(text.confidence)
	}
	body := strings.TrimSpace(text.text)
	if countLetters([]byte(body)) < 20 {
		return Result{}, m.failFile(name, sha, fail("no_text", 422, "No se encontró texto legible en el documento.",
			"no readable text (%d pages, %s, confidence %.0f): blank or unreadable scan", text.pages, text.method, text.confidence))
	}
	if len(body) > channels.MaxTextBytes {
		return Result{}, m.failFile(name, sha, fail("text_too_long", 413, "El documento tiene demasiado texto.",
			"text is %d bytes, over %d", len(body), channels.MaxTextBytes))
	}
	fields := Extract(body, m.o.Units)
	req := m.request(rec, fields, text, body, up)

	pctx, cancel := context.WithTimeout(ctx, m.o.PublishTimeout)
	defer cancel()
	ctype := contentTypes[kind]
	obj, err := sink.Archive(pctx, channels.SubjectMemo, ctype, bytes.NewReader(data))
	if err != nil {
		return Result{}, fmt.Errorf("archive scan: %w", err)
	}
	req.Original = obj
	req.Attachments = []channels.Attachment{{Name: origName, ContentType: ctype, Size: obj.Size, SHA256: obj.SHA256, Object: obj.Object}}
	receipt, err := sink.Publish(pctx, channels.Submission{
		Request: req, Subject: channels.SubjectMemo, MsgID: "memo:" + sha, Source: rec.Source,
	})
	if errors.Is(err, channels.ErrInvalid) {
		return Result{}, m.failFile(name, sha, fail("invalid", 422, "El documento no produjo una solicitud válida.", "request refused: %v", err))
	}
	if err != nil {
		return Result{}, fmt.Errorf("publish: %w", err)
	}
	if m.afterPublish != nil {
		if err := m.afterPublish(name); err != nil {
			return Result{}, err
		}
	}
	rec.Published = true
	if err := writeFileAtomic(recPath, mustJSON(rec)); err != nil {
		return Result{}, fmt.Errorf("record: %w", err)
	}
	// Counted before the move: whoever sees the file in processed/ sees the counter too.
	if receipt.Duplicate {
		m.m.dups.Inc()
	}
	if err := m.finish(name); err != nil {
		return Result{}, err
	}
	return Result{ID: rec.ID, Duplicate: receipt.Duplicate, Fields: fields}, nil
}

func (m *Memo) request(rec record, f Fields, ex extraction, body string, up *upload) *channels.Request {
	memo := f.Memo()
	memo.Pages, memo.Method = ex.pages, ex.method
	if ex.method == "ocr" {
		memo.Confidence = float64(int(ex.confidence*10)) / 10
	}
	r := &channels.Request{
		ID: rec.ID, Channel: channels.MediumMemo, ReceivedAt: rec.ReceivedAt,
		Source:    channels.Source{File: rec.File},
		Requester: channels.Requester{Name: f.Signer},
		Subject:   clip(f.Subject, channels.MaxSubjectBytes),
		Text:      body,
		Memo:      memo,
	}
	if f.UnitKnown {
		r.Requester.Unit = f.Unit
	}
	if len(f.Emails) > 0 {
		r.Requester.Email = f.Emails[0]
	}
	if len(f.Extensions) > 0 {
		r.Requester.Extension = f.Extensions[0]
	}
	if up != nil {
		if up.Email != "" {
			r.Requester.Email = up.Email
		}
		if up.Unit != "" {
			r.Requester.Unit = up.Unit
		}
	}
	return r
}

// finish moves a published file to processed/.
func (m *Memo) finish(name string) error {
	if _, err := moveNoReplace(filepath.Join(m.dirs.processing, name), m.dirs.processed, name); err != nil {
		return fmt.Errorf("move to processed: %w", err)
	}
	os.Remove(filepath.Join(m.dirs.uploads, name+".json"))
	m.m.processed.Inc()
	return nil
}

// failFile moves a file to failed/ with NAME.reason.txt and returns f.
func (m *Memo) failFile(name, sha string, f *Failure) error {
	m.m.failed.WithLabelValues(f.Code).Inc()
	m.log.Warn("memo failed", "file", name, "reason", f.Code, "detail", f.Msg)
	// Pick the final name first so the reason sits beside it; the reason is written before the
	// move so a crash in between only repeats the work.
	final := name
	base, ext := strings.TrimSuffix(name, filepath.Ext(name)), filepath.Ext(name)
	for i := 2; ; i++ {
		if _, err := os.Lstat(filepath.Join(m.dirs.failed, final)); errors.Is(err, os.ErrNotExist) {
			break
		}
		final = fmt.Sprintf("%s-%d%s", base, i, ext)
		if i > 1000 {
			return f
		}
	}
	reason := fmt.Sprintf("file: %s\nfailed_at: %s\nreason: %s\ndetail: %s\nsha256: %s\n\n"+
		"This file did not become a request. Fix it (or scan it again) and drop it into the spool again.\n"+
		"Este archivo no se convirtió en solicitud: %s\n",
		sanitizeName(name), m.o.Now().UTC().Format(time.RFC3339), f.Code, f.Msg, sha, f.Spanish)
	if err := writeFileAtomic(filepath.Join(m.dirs.failed, final+".reason.txt"), []byte(reason)); err != nil {
		m.log.Error("memo: write reason", "file", name, "err", err)
	}
	if _, err := moveNoReplace(filepath.Join(m.dirs.processing, name), m.dirs.failed, final); err != nil {
		m.log.Error("memo: move to failed", "file", name, "err", err)
	}
	os.Remove(filepath.Join(m.dirs.uploads, name+".json"))
	return f
}

func unsupported(data []byte) *Failure {
	ct := http.DetectContentType(data)
	if i := strings.IndexByte(ct, ';'); i > 0 {
		ct = ct[:i]
	}
	return fail("unsupported_type", 415, "Tipo de archivo no admitido: "+ct+". Envíe PDF, PNG, JPEG o TIFF.",
		"unsupported file type: content is %s, not PDF, PNG, JPEG or TIFF (the file name does not decide)", ct)
}
