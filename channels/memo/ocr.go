package memo

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	_ "image/jpeg" // DecodeConfig of scans
	_ "image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Kinds of file the memo channel reads, decided by content.
const (
	kindPDF  = "pdf"
	kindPNG  = "png"
	kindJPEG = "jpeg"
	kindTIFF = "tiff"
)

var contentTypes = map[string]string{
	kindPDF: "application/pdf", kindPNG: "image/png", kindJPEG: "image/jpeg", kindTIFF: "image/tiff",
}

var extensions = map[string]string{kindPDF: ".pdf", kindPNG: ".png", kindJPEG: ".jpg", kindTIFF: ".tif"}

// sniff decides the kind of a file from its first bytes; "" when it is none the channel reads.
func sniff(b []byte) string {
	switch {
	case bytes.HasPrefix(b, []byte("%PDF-")):
		return kindPDF
	case bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")):
		return kindPNG
	case bytes.HasPrefix(b, []byte{0xFF, 0xD8, 0xFF}):
		return kindJPEG
	case bytes.HasPrefix(b, []byte("II*\x00")), bytes.HasPrefix(b, []byte("MM\x00*")):
		return kindTIFF
	}
	return ""
}

// Failure is a reason a file cannot become a request. Code is the metric label; Msg is for the
// operator (failed/NAME.reason.txt) and Spanish is the message for an agent uploading it.
type Failure struct {
	Code    string
	Msg     string
	Spanish string
	// Status is the HTTP status an upload gets for it.
	Status int
}

func (f *Failure) Error() string { return f.Msg }

func fail(code string, status int, es, format string, a ...any) *Failure {
	return &Failure{Code: code, Status: status, Spanish: es, Msg: fmt.Sprintf(format, a...)}
}

// tools are the external programs and their paths.
type tools struct {
	pdftotext, pdftoppm, pdfinfo, tesseract string
}

// findTools looks the programs up in PATH and checks tesseract has Spanish; it returns the names
// of what is missing.
func findTools(ctx context.Context) (tools, []string) {
	var t tools
	var missing []string
	for _, x := range []struct {
		name string
		p    *string
	}{{"pdftotext", &t.pdftotext}, {"pdftoppm", &t.pdftoppm}, {"pdfinfo", &t.pdfinfo}, {"tesseract", &t.tesseract}} {
		p, err := exec.LookPath(x.name)
		if err != nil {
			missing = append(missing, x.name+" (poppler-utils)")
			if x.name == "tesseract" {
				missing[len(missing)-1] = "tesseract (tesseract-ocr)"
			}
			continue
		}
		*x.p = p
	}
	if t.tesseract != "" {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, t.tesseract, "--list-langs").CombinedOutput()
		if err != nil || !regexp.MustCompile(`(?m)^spa\s*$`).Match(out) {
			missing = append(missing, "tesseract Spanish data (tesseract-ocr-spa)")
		}
	}
	return t, missing
}

// page is the text of one page.
type page struct {
	text       string
	confidence float64 // -1 when not OCR
	words      int
	seconds    float64
}

// extraction is the text of a whole memo.
type extraction struct {
	text       string
	pages      int
	method     string // text | ocr
	confidence float64
}

// extractor runs the tools. Safe for concurrent use.
type extractor struct {
	t           tools
	pageWorkers int
	pageTimeout time.Duration
	maxPages    int
	maxPixels   int64
	tmp         string // directory for temporary files
	onPage      func(p page)
}

// run reads the text of the file at path (already of kind). Failures are *Failure; other errors
// are transient (context ended).
func (x *extractor) run(ctx context.Context, path, kind string) (extraction, error) {
	switch kind {
	case kindPDF:
		return x.pdf(ctx, path)
	case kindPNG, kindJPEG:
		if err := x.checkImage(path); err != nil {
			return extraction{}, err
		}
		p, err := x.ocr(ctx, path, x.pageTimeout)
		if err != nil {
			return extraction{}, err
		}
		return collect("ocr", []page{p}), nil
	case kindTIFF:
		n, w, h, err := tiffInfo(path)
		if err != nil {
			return extraction{}, fail("bad_image", 415, "El archivo TIFF está dañado.", "TIFF cannot be read: %v", err)
		}
		if n > x.maxPages {
			return extraction{}, fail("too_many_pages", 413, fmt.Sprintf("El documento tiene %d páginas; el máximo es %d.", n, x.maxPages),
				"TIFF has %d pages, over the limit of %d", n, x.maxPages)
		}
		if int64(w)*int64(h) > x.maxPixels {
			return extraction{}, tooBig(w, h, x.maxPixels)
		}
		// tesseract reads every page of a multi-page TIFF in one run; the timeout grows with them.
		p, err := x.ocr(ctx, path, x.pageTimeout*time.Duration(n))
		if err != nil {
			return extraction{}, err
		}
		ex := collect("ocr", []page{p})
		ex.pages = n
		return ex, nil
	}
	return extraction{}, fail("unsupported_type", 415, "Tipo de archivo no admitido.", "unsupported file type")
}

func tooBig(w, h int, limit int64) *Failure {
	return fail("image_too_large", 413, fmt.Sprintf("La imagen mide %d×%d píxeles; el máximo es %d megapíxeles.", w, h, limit/1e6),
		"image is %d×%d px, over the limit of %d Mpx", w, h, limit/1e6)
}

func (x *extractor) checkImage(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	cfg, _, err := image.DecodeConfig(bufio.NewReader(f))
	if err != nil {
		return fail("bad_image", 415, "La imagen está dañada o incompleta.", "image cannot be decoded: %v", err)
	}
	if int64(cfg.Width)*int64(cfg.Height) > x.maxPixels {
		return tooBig(cfg.Width, cfg.Height, x.maxPixels)
	}
	if cfg.Width == 0 || cfg.Height == 0 {
		return fail("bad_image", 415, "La imagen está vacía.", "image has no pixels")
	}
	return nil
}

var pagesRe = regexp.MustCompile(`(?m)^Pages:\s+([0-9]+)`)
var encryptedRe = regexp.MustCompile(`(?m)^Encrypted:\s+yes`)

func (x *extractor) pdf(ctx context.Context, path string) (extraction, error) {
	out, err := x.cmd(ctx, 30*time.Second, x.t.pdfinfo, path)
	if err != nil {
		if ctx.Err() != nil {
			return extraction{}, ctx.Err()
		}
		msg := strings.ToLower(err.Error())
		if strings.Contains(msg, "password") || strings.Contains(msg, "encrypt") {
			return extraction{}, fail("encrypted", 415, "El PDF está protegido con contraseña; envíelo sin protección.", "PDF is encrypted (password required)")
		}
		if strings.Contains(msg, "page count 0") || strings.Contains(msg, "no pages") {
			return extraction{}, fail("no_pages", 415, "El PDF no tiene páginas.", "PDF has no pages")
		}
		return extraction{}, fail("bad_pdf", 415, "El PDF está dañado o no se puede leer.", "PDF cannot be read: %v", err)
	}
	if encryptedRe.Match(out) {
		return extraction{}, fail("encrypted", 415, "El PDF está cifrado; envíelo sin protección.", "PDF is encrypted")
	}
	m := pagesRe.FindSubmatch(out)
	n := 0
	if m != nil {
		n, _ = strconv.Atoi(string(m[1]))
	}
	switch {
	case n <= 0:
		return extraction{}, fail("no_pages", 415, "El PDF no tiene páginas.", "PDF has no pages")
	case n > x.maxPages:
		return extraction{}, fail("too_many_pages", 413, fmt.Sprintf("El documento tiene %d páginas; el máximo es %d.", n, x.maxPages),
			"PDF has %d pages, over the limit of %d", n, x.maxPages)
	}
	txt, err := x.cmd(ctx, x.pageTimeout*time.Duration(n), x.t.pdftotext, "-enc", "UTF-8", "-layout", "-l", strconv.Itoa(n), path, "-")
	if err != nil && ctx.Err() != nil {
		return extraction{}, ctx.Err()
	}
	// A text layer counts when it has real words on average on each page; scanners often add a
	// few stray characters or none at all.
	if err == nil && countLetters(txt) >= 40*n {
		pages := strings.Split(string(txt), "\f")
		ex := collect("text", []page{{text: strings.Join(pages, "\n"), confidence: -1}})
		ex.pages = n
		return ex, nil
	}
	pages := make([]page, n)
	errs := make([]error, n)
	sem := make(chan struct{}, x.pageWorkers)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			pages[i], errs[i] = x.pdfPage(ctx, path, i+1)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, e := range errs {
			var f *Failure
			if errors.As(e, &f) {
				return extraction{}, f
			}
		}
		return extraction{}, err
	}
	ex := collect("ocr", pages)
	ex.pages = n
	return ex, nil
}

// pdfPage renders one page at 300 dpi and reads it; the page timeout covers both.
func (x *extractor) pdfPage(ctx context.Context, path string, n int) (page, error) {
	ctx, cancel := context.WithTimeout(ctx, x.pageTimeout)
	defer cancel()
	dir, err := os.MkdirTemp(x.tmp, "page-")
	if err != nil {
		return page{}, err
	}
	defer os.RemoveAll(dir)
	base := filepath.Join(dir, "p")
	num := strconv.Itoa(n)
	if _, err := x.cmd(ctx, x.pageTimeout, x.t.pdftoppm, "-r", "300", "-gray", "-png", "-f", num, "-l", num, "-singlefile", path, base); err != nil {
		if ctx.Err() != nil {
			return page{}, x.timeoutOr(ctx, n)
		}
		return page{}, fail("bad_pdf", 415, "No se pudo convertir una página del PDF.", "page %d cannot be rendered: %v", n, err)
	}
	return x.ocr(ctx, base+".png", x.pageTimeout)
}

func (x *extractor) timeoutOr(ctx context.Context, n int) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fail("ocr_timeout", 422, "La lectura de una página tardó demasiado.", "page %d: timed out after %s", n, x.pageTimeout)
	}
	return ctx.Err()
}

// ocr runs tesseract (Spanish) on an image and reads its TSV: the text by lines and the mean word
// confidence.
func (x *extractor) ocr(ctx context.Context, path string, timeout time.Duration) (page, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out, err := x.cmd(ctx, timeout, x.t.tesseract, path, "stdout", "-l", "spa", "--psm", "3", "tsv")
	if err != nil {
		if ctx.Err() != nil {
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return page{}, fail("ocr_timeout", 422, "La lectura del documento tardó demasiado.", "OCR timed out after %s", timeout)
			}
			return page{}, ctx.Err()
		}
		return page{}, fail("ocr_error", 422, "No se pudo leer el documento.", "OCR failed: %v", err)
	}
	p := parseTSV(out)
	p.seconds = time.Since(start).Seconds()
	if x.onPage != nil {
		x.onPage(p)
	}
	return p, nil
}

// parseTSV rebuilds text from tesseract's TSV: words joined by spaces within a line, lines by
// newlines, a blank line between paragraphs, a form feed between pages.
func parseTSV(b []byte) page {
	var sb strings.Builder
	var sum float64
	var words int
	var lastKey [4]string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	first := true
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		if len(f) < 12 || f[0] != "5" {
			continue
		}
		word := strings.TrimSpace(f[11])
		if word == "" {
			continue
		}
		key := [4]string{f[1], f[2], f[3], f[4]} // page, block, paragraph, line
		switch {
		case first:
		case key[0] != lastKey[0]:
			sb.WriteString("\n\f")
		case key[1] != lastKey[1] || key[2] != lastKey[2]:
			sb.WriteString("\n\n")
		case key[3] != lastKey[3]:
			sb.WriteString("\n")
		default:
			sb.WriteString(" ")
		}
		first = false
		lastKey = key
		sb.WriteString(word)
		if c, err := strconv.ParseFloat(f[10], 64); err == nil && c >= 0 {
			sum += c
			words++
		}
	}
	p := page{text: sb.String(), words: words}
	if words > 0 {
		p.confidence = sum / float64(words)
	}
	return p
}

func collect(method string, pages []page) extraction {
	ex := extraction{method: method, pages: len(pages)}
	var texts []string
	var sum float64
	var words int
	for _, p := range pages {
		texts = append(texts, strings.TrimSpace(p.text))
		if p.confidence >= 0 {
			sum += p.confidence * float64(p.words)
			words += p.words
		}
	}
	ex.text = strings.Join(texts, "\n\n")
	if words > 0 {
		ex.confidence = sum / float64(words)
	}
	return ex
}

func countLetters(b []byte) int {
	n := 0
	for _, r := range string(b) {
		if r > ' ' && r != '\f' {
			n++
		}
	}
	return n
}

// cmd runs a tool without a shell, with a timeout and one OCR thread (pages run in parallel
// instead); stderr becomes the error.
func (x *extractor) cmd(ctx context.Context, timeout time.Duration, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c := exec.CommandContext(ctx, name, args...)
	c.Env = append(os.Environ(), "OMP_THREAD_LIMIT=1", "LC_ALL=C.UTF-8")
	c.WaitDelay = 2 * time.Second
	var stderr bytes.Buffer
	c.Stderr = &limitedBuffer{b: &stderr, n: 4 << 10}
	out, err := c.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if i := strings.IndexByte(msg, '\n'); i > 0 {
			msg = msg[:i]
		}
		return out, fmt.Errorf("%s: %w: %s", filepath.Base(name), err, msg)
	}
	return out, nil
}

type limitedBuffer struct {
	b *bytes.Buffer
	n int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.n - l.b.Len(); room > 0 {
		l.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// tiffInfo counts the pages of a TIFF by following its IFD chain and returns the largest page
// size. It bounds the walk so a looped chain cannot hang it.
func tiffInfo(path string) (pages, width, height int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, 0, 0, err
	}
	size := st.Size()
	hdr := make([]byte, 8)
	if _, err := f.ReadAt(hdr, 0); err != nil {
		return 0, 0, 0, errors.New("short header")
	}
	var bo binary.ByteOrder = binary.LittleEndian
	if hdr[0] == 'M' {
		bo = binary.BigEndian
	}
	off := int64(bo.Uint32(hdr[4:]))
	seen := map[int64]bool{}
	for off != 0 {
		if seen[off] || off+2 > size || len(seen) > 10000 {
			return 0, 0, 0, errors.New("bad IFD chain")
		}
		seen[off] = true
		nb := make([]byte, 2)
		if _, err := f.ReadAt(nb, off); err != nil {
			return 0, 0, 0, err
		}
		n := int64(bo.Uint16(nb))
		ents := make([]byte, n*12+4)
		if _, err := f.ReadAt(ents, off+2); err != nil {
			return 0, 0, 0, errors.New("truncated IFD")
		}
		var w, h int
		for i := range n {
			e := ents[i*12 : i*12+12]
			tag, typ := bo.Uint16(e), bo.Uint16(e[2:])
			var v int
			switch typ {
			case 3:
				v = int(bo.Uint16(e[8:]))
			case 4:
				v = int(bo.Uint32(e[8:]))
			}
			switch tag {
			case 256:
				w = v
			case 257:
				h = v
			}
		}
		if w*h > width*height {
			width, height = w, h
		}
		pages++
		off = int64(bo.Uint32(ents[n*12:]))
	}
	if pages == 0 {
		return 0, 0, 0, errors.New("no pages")
	}
	return pages, width, height, nil
}
