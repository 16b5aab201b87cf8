package console

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// maxScanPages is the most pages of a scanned PDF the item view shows as images.
const maxScanPages = 10

var errNoRenderer = errors.New("pdftoppm not found")

// renderPDFPage renders page n (1-based) of a PDF to PNG with poppler's pdftoppm at 110 dpi, in a
// temporary directory, within 30 s.
func (c *Console) renderPDFPage(ctx context.Context, pdf []byte, n int) ([]byte, error) {
	bin, err := exec.LookPath("pdftoppm")
	if err != nil {
		return nil, errNoRenderer
	}
	select {
	case c.scanSlots <- struct{}{}:
		defer func() { <-c.scanSlots }()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	dir, err := os.MkdirTemp("", "caud-scan-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	in := filepath.Join(dir, "in.pdf")
	if err := os.WriteFile(in, pdf, 0o600); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	num := strconv.Itoa(n)
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "-r", "110", "-png", "-f", num, "-l", num, "-singlefile", in, filepath.Join(dir, "out"))
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, errors.New(err.Error() + ": " + stderr.String())
	}
	return os.ReadFile(filepath.Join(dir, "out.png"))
}

// scanPage serves page ?p=N of a scanned PDF original as a PNG image.
func (c *Console) scanPage(w http.ResponseWriter, r *http.Request, s *req) {
	n, err := strconv.Atoi(r.URL.Query().Get("p"))
	if err != nil || n < 1 || n > maxScanPages {
		n = 1
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
	defer cancel()
	raw, err := c.readOriginal(ctx, r.PathValue("id"))
	if err != nil || http.DetectContentType(raw) != "application/pdf" {
		c.fail(w, r, s, http.StatusNotFound, "Esta solicitud no tiene un oficio en PDF archivado.")
		return
	}
	png, err := c.renderPDFPage(ctx, raw, n)
	if err != nil {
		c.log.Warn("console scan page", "request", r.PathValue("id"), "page", n, "err", err)
		c.fail(w, r, s, http.StatusServiceUnavailable, "No se pudo mostrar la página del oficio; descargue el original.")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "image/png")
	h.Set("Content-Security-Policy", downloadCSP)
	h.Set("Cache-Control", "private, max-age=3600")
	_, _ = w.Write(png)
}
