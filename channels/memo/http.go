package memo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/mail"
	"os"
	"path/filepath"
	"strings"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/httpjson"
)

// Form fields of POST /api/v1/memos (multipart/form-data).
const (
	FieldFile  = "file"  // the scan (required)
	FieldEmail = "email" // the sender's e-mail for notifications (optional)
	FieldUnit  = "unit"  // the unit, when the agent knows it better than the letterhead (optional)
)

// ServeHTTP handles POST /api/v1/memos: the file goes into processing/ and through the same
// pipeline as the spool, synchronously. It answers 201 {"id"} for a new request, 200 {"id"} for a
// scan already received (same SHA-256), 400 (empty file, bad e-mail or unit), 413 (over MaxBytes,
// too many pages, image too large), 415 (not PDF, PNG, JPEG or TIFF by content), 422 (no readable
// text), 503 (tools missing, no sink yet, JetStream unreachable: the file stays in processing/ and is
// finished by Run; a retry gets its id). The sink is Options.Sink, or the one given to Run.
func (m *Memo) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		httpjson.Fail(w, http.StatusMethodNotAllowed, "Use POST para enviar un oficio.")
		return
	}
	m.mu.Lock()
	sink := m.sink
	m.mu.Unlock()
	if sink == nil {
		httpjson.Fail(w, http.StatusServiceUnavailable, "El canal de oficios aún no está listo; reintente en unos segundos.")
		return
	}
	if m.extractor() == nil && !m.refreshTools(r.Context()) {
		w.Header().Set("Retry-After", "60")
		httpjson.Fail(w, http.StatusServiceUnavailable, "El reconocimiento de texto no está disponible en el servidor; avise al administrador.")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, m.o.MaxBytes+1<<20)
	mr, err := r.MultipartReader()
	if err != nil {
		httpjson.Fail(w, http.StatusBadRequest, "Se esperaba un formulario multipart/form-data con el campo file.")
		return
	}
	var (
		up      upload
		tmp     string
		size    int64
		gotFile bool
	)
	defer func() {
		if tmp != "" {
			os.Remove(tmp)
		}
	}()
	tooLarge := func() {
		m.m.failed.WithLabelValues("too_large").Inc()
		httpjson.Fail(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("El archivo excede el máximo de %d MiB.", m.o.MaxBytes>>20))
	}
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			tooLarge()
			return
		}
		if err != nil {
			httpjson.Fail(w, http.StatusBadRequest, "El formulario está mal formado.")
			return
		}
		switch p.FormName() {
		case FieldFile:
			if gotFile {
				httpjson.Fail(w, http.StatusBadRequest, "Envíe un solo archivo por oficio.")
				return
			}
			gotFile = true
			up.Name = sanitizeName(p.FileName())
			tmp, size, err = m.receive(p)
			if errors.Is(err, errTooLarge) || errors.As(err, &mbe) {
				tooLarge()
				return
			}
			if err != nil {
				httpjson.Fail(w, http.StatusBadRequest, "No se pudo recibir el archivo.")
				return
			}
		case FieldEmail, FieldUnit:
			b, err := io.ReadAll(io.LimitReader(p, 1024))
			if err != nil {
				httpjson.Fail(w, http.StatusBadRequest, "El formulario está mal formado.")
				return
			}
			v := strings.TrimSpace(string(b))
			if p.FormName() == FieldEmail {
				up.Email = v
			} else {
				up.Unit = v
			}
		default:
			_, _ = io.Copy(io.Discard, p)
		}
	}
	fields := map[string]string{}
	if up.Email != "" {
		if a, err := mail.ParseAddress(up.Email); err != nil || a.Address != up.Email {
			fields[FieldEmail] = "Correo electrónico no válido; escríbalo como usuario@ipn.mx."
		}
	}
	if up.Unit != "" && m.o.Units != nil {
		if id, ok := m.o.Units.Canonical(up.Unit); ok {
			up.Unit = id
		} else {
			fields[FieldUnit] = fmt.Sprintf("Unidad %q desconocida.", up.Unit)
		}
	}
	switch {
	case !gotFile:
		fields[FieldFile] = "Adjunte el oficio escaneado (PDF, PNG, JPEG o TIFF)."
		httpjson.Write(w, http.StatusBadRequest, httpjson.Error{Error: "Falta el archivo del oficio.", Fields: fields})
		return
	case len(fields) > 0:
		httpjson.Write(w, http.StatusBadRequest, httpjson.Error{Error: "El formulario tiene datos inválidos; revise los campos marcados.", Fields: fields})
		return
	case size == 0:
		m.m.failed.WithLabelValues("empty").Inc()
		httpjson.Fail(w, http.StatusBadRequest, "El archivo está vacío.")
		return
	}
	head := make([]byte, 512)
	if f, err := os.Open(tmp); err == nil {
		n, _ := io.ReadFull(f, head)
		head = head[:n]
		f.Close()
	}
	if sniff(head) == "" {
		f := unsupported(head)
		m.m.failed.WithLabelValues(f.Code).Inc()
		httpjson.Fail(w, f.Status, f.Spanish)
		return
	}

	// Into processing/ with what the upload said beside it, so a crash from here on is finished by
	// the next Run like any spool file.
	proc, err := m.claimUpload(tmp, up)
	if err != nil {
		m.log.Error("memo upload", "err", err)
		httpjson.Fail(w, http.StatusServiceUnavailable, "No se pudo guardar el archivo; reintente.")
		return
	}
	tmp = ""
	defer m.doneProcessing(proc)
	select {
	case m.sem <- struct{}{}:
	case <-r.Context().Done():
		return
	}
	defer func() { <-m.sem }()
	// The memo is finished even when the client goes away; its retry then gets the id.
	res, err := m.process(context.WithoutCancel(r.Context()), sink, proc)
	var f *Failure
	switch {
	case errors.As(err, &f):
		httpjson.Fail(w, f.Status, f.Spanish+" ("+f.Msg+")")
	case errors.Is(err, channels.ErrNotReady) || err != nil:
		m.log.Error("memo upload", "file", proc, "err", err)
		w.Header().Set("Retry-After", "30")
		httpjson.Fail(w, http.StatusServiceUnavailable, "El oficio se recibió pero no se pudo registrar todavía; se reintentará automáticamente.")
	case res.Duplicate:
		httpjson.Write(w, http.StatusOK, map[string]string{"id": res.ID})
	default:
		httpjson.Write(w, http.StatusCreated, map[string]string{"id": res.ID})
	}
}

var errTooLarge = errors.New("file too large")

// receive writes an uploaded part to a temporary file under .caud/tmp, at most MaxBytes.
func (m *Memo) receive(p *multipart.Part) (string, int64, error) {
	f, err := os.CreateTemp(m.dirs.tmp, ".upload-")
	if err != nil {
		return "", 0, err
	}
	n, err := io.Copy(f, io.LimitReader(p, m.o.MaxBytes+1))
	if err == nil && n > m.o.MaxBytes {
		err = errTooLarge
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", 0, err
	}
	return f.Name(), n, nil
}

// claimUpload moves a received upload into processing/ under its sanitized name (made unique) and
// marks it in flight; the caller calls doneProcessing.
// The metadata file is created first, exclusively: it reserves the name against other uploads, and
// spool claims skip reserved names.
func (m *Memo) claimUpload(tmp string, up upload) (string, error) {
	for i := 1; i < 1000; i++ {
		cand := numbered(up.Name, i)
		meta := filepath.Join(m.dirs.uploads, cand+".json")
		f, err := os.OpenFile(meta, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return "", err
		}
		f.Close()
		// In flight before it appears in processing/, so a rescan of processing/ leaves it alone.
		if !m.startProcessing(cand) {
			os.Remove(meta)
			continue
		}
		if err := writeFileAtomic(meta, mustJSON(up)); err != nil {
			m.doneProcessing(cand)
			os.Remove(meta)
			return "", err
		}
		err = linkExact(tmp, filepath.Join(m.dirs.processing, cand))
		if err != nil {
			m.doneProcessing(cand)
			os.Remove(meta)
			if errors.Is(err, os.ErrExist) {
				continue
			}
			return "", err
		}
		syncDir(m.dirs.processing)
		return cand, nil
	}
	return "", fmt.Errorf("upload %s: too many files of that name", up.Name)
}
