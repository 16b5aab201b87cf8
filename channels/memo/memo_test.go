package memo

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/png"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/channels/natsjs/natstest"
)

// requireTools fails (not skips) without the OCR tools: .ci/run installs them.
func requireTools(t testing.TB) {
	t.Helper()
	if _, missing := findTools(context.Background()); len(missing) > 0 {
		t.Fatalf("memo tests need %s: apt-get install -y tesseract-ocr tesseract-ocr-spa poppler-utils", strings.Join(missing, ", "))
	}
}

type testEnv struct {
	env   *natstest.Env
	sink  *natsjs.Sink
	memo  *Memo
	spool string
	reg   *prometheus.Registry
}

func newEnv(t testing.TB, mod func(*Options)) *testEnv {
	t.Helper()
	env := natstest.Start(t, natsjs.Topology{})
	te := &testEnv{env: env, sink: natsjs.NewSink(env.Handles, natsjs.SinkOptions{}), spool: t.TempDir(), reg: prometheus.NewRegistry()}
	te.memo = te.newMemo(t, mod)
	return te
}

func (te *testEnv) newMemo(t testing.TB, mod func(*Options)) *Memo {
	t.Helper()
	o := Options{SpoolDir: te.spool, Units: testUnits(t), StableFor: 100 * time.Millisecond, RescanInterval: 500 * time.Millisecond,
		PageWorkers: 1, Workers: 2, PageTimeout: 60 * time.Second, Registerer: prometheus.NewRegistry(), Sink: te.sink}
	if os.Getenv("MEMO_TEST_LOG") != "" {
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if mod != nil {
		mod(&o)
	}
	m, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func (te *testEnv) run(t testing.TB, m *Memo) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, te.sink) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// requests reads every request on CAU_INBOUND.
func (te *testEnv) requests(t testing.TB) []channels.Request {
	t.Helper()
	ctx := context.Background()
	info, err := te.env.Inbound.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []channels.Request
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		msg, err := te.env.Inbound.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		var r channels.Request
		if err := json.Unmarshal(msg.Data, &r); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func files(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if e.Type().IsRegular() {
			out = append(out, e.Name())
		}
	}
	return out
}

// dropFile writes a file the way a careful scanner does: temporary dot-name, then rename.
func dropFile(t testing.TB, spool, name string, data []byte) {
	t.Helper()
	tmp := filepath.Join(spool, ".~"+name)
	if err := os.WriteFile(tmp, data, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(spool, name)); err != nil {
		t.Fatal(err)
	}
}

func checkFixtureRequests(t *testing.T, reqs []channels.Request, source string) {
	t.Helper()
	byFile := map[string]channels.Request{}
	for _, r := range reqs {
		byFile[r.Source.File] = r
	}
	ok := map[string]int{}
	fx := fixtures(t)
	for _, f := range fx {
		r, found := byFile[f.File]
		if !found {
			t.Errorf("%s %s: no request", source, f.ID)
			continue
		}
		if r.Channel != channels.MediumMemo || r.Memo == nil || len(r.Attachments) != 1 || r.Original == nil || r.Original.Object != r.Attachments[0].Object {
			t.Errorf("%s %s: bad envelope %+v", source, f.ID, r)
			continue
		}
		if sameText(r.Subject, f.Subject) {
			ok["subject"]++
		} else {
			t.Errorf("%s %s: subject %q, want %q", source, f.ID, r.Subject, f.Subject)
		}
		if r.Requester.Unit == f.Unit {
			ok["unit"]++
		} else {
			t.Errorf("%s %s: unit %q, want %q (letterhead %q)", source, f.ID, r.Requester.Unit, f.Unit, r.Memo.Unit)
		}
		if sameNumber(r.Memo.Number, f.Number) {
			ok["number"]++
		} else {
			t.Errorf("%s %s: number %q, want %q", source, f.ID, r.Memo.Number, f.Number)
		}
		if r.Memo.Method != "ocr" || r.Memo.Confidence < 50 || r.Memo.Pages < 1 {
			t.Errorf("%s %s: method %q confidence %.1f pages %d", source, f.ID, r.Memo.Method, r.Memo.Confidence, r.Memo.Pages)
		}
	}
	t.Logf("%s: subject %d/%d, unit %d/%d, number %d/%d", source, ok["subject"], len(fx), ok["unit"], len(fx), ok["number"], len(fx))
}

// TestFixtureScans runs the 12 fixture scans through the spool and through the upload, at once.
func TestFixtureScans(t *testing.T) {
	requireTools(t)
	fx := fixtures(t)
	t.Run("spool", func(t *testing.T) {
		t.Parallel()
		te := newEnv(t, nil)
		te.run(t, te.memo)
		for _, f := range fx {
			b, err := os.ReadFile("testdata/scans/" + f.File)
			if err != nil {
				t.Fatal(err)
			}
			dropFile(t, te.spool, f.File, b)
		}
		waitFor(t, 150*time.Second, "12 files in processed/", func() bool {
			return len(files(t, filepath.Join(te.spool, "processed"))) == len(fx) || len(files(t, filepath.Join(te.spool, "failed"))) > 0
		})
		if f := files(t, filepath.Join(te.spool, "failed")); len(f) > 0 {
			t.Fatalf("failed: %v", f)
		}
		reqs := te.requests(t)
		if len(reqs) != len(fx) {
			t.Fatalf("%d requests, want %d", len(reqs), len(fx))
		}
		checkFixtureRequests(t, reqs, "spool")
		if n := testutil.ToFloat64(te.memo.m.processed); n != float64(len(fx)) {
			t.Errorf("processed_total = %v", n)
		}
		// The same scan dropped again is the same request.
		b, _ := os.ReadFile("testdata/scans/" + fx[0].File)
		dropFile(t, te.spool, "again-"+fx[0].File, b)
		waitFor(t, 30*time.Second, "the duplicate in processed/", func() bool {
			return len(files(t, filepath.Join(te.spool, "processed"))) == len(fx)+1
		})
		if reqs := te.requests(t); len(reqs) != len(fx) {
			t.Errorf("%d requests after a duplicate drop, want %d", len(reqs), len(fx))
		}
		// And uploaded after it was dropped: 200 with the first id.
		code, id := postMemo(t, te.memo, fx[0].File, b, nil)
		if code != http.StatusOK || id != byFileID(reqs, fx[0].File) {
			t.Errorf("upload of a dropped scan: %d %q, want 200 %q", code, id, byFileID(reqs, fx[0].File))
		}
	})
	t.Run("upload", func(t *testing.T) {
		t.Parallel()
		te := newEnv(t, nil)
		te.run(t, te.memo)
		var wg sync.WaitGroup
		ids := make([]string, len(fx))
		for i, f := range fx {
			b, err := os.ReadFile("testdata/scans/" + f.File)
			if err != nil {
				t.Fatal(err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				code, id := postMemo(t, te.memo, f.File, b, map[string]string{"email": "jefe.ui@ipn.mx"})
				if code != http.StatusCreated {
					t.Errorf("%s: status %d: %s", f.File, code, id)
				}
				ids[i] = id
			}()
		}
		wg.Wait()
		reqs := te.requests(t)
		if len(reqs) != len(fx) {
			t.Fatalf("%d requests, want %d", len(reqs), len(fx))
		}
		checkFixtureRequests(t, reqs, "upload")
		for i, f := range fx {
			if byFileID(reqs, f.File) != ids[i] {
				t.Errorf("%s: answered id %q, published %q", f.File, ids[i], byFileID(reqs, f.File))
			}
		}
		for _, r := range reqs {
			if r.Requester.Email != "jefe.ui@ipn.mx" {
				t.Errorf("%s: email %q", r.Source.File, r.Requester.Email)
			}
		}
		if got := files(t, filepath.Join(te.spool, "processed")); len(got) != len(fx) {
			t.Errorf("processed/ = %v", got)
		}
	})
}

func byFileID(reqs []channels.Request, file string) string {
	for _, r := range reqs {
		if r.Source.File == file {
			return r.ID
		}
	}
	return ""
}

// postMemo posts a file to the handler and returns the status and the id (or the error message).
func postMemo(t testing.TB, h http.Handler, name string, data []byte, fields map[string]string) (int, string) {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for k, v := range fields {
		_ = mw.WriteField(k, v)
	}
	if data != nil {
		fw, err := mw.CreateFormFile(FieldFile, name)
		if err != nil {
			t.Error(err)
			return 0, ""
		}
		fw.Write(data)
	}
	mw.Close()
	req := httptest.NewRequest(http.MethodPost, "/api/v1/memos", &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var out struct {
		ID    string `json:"id"`
		Error string `json:"error"`
	}
	_ = json.Unmarshal(rec.Body.Bytes(), &out)
	if out.ID == "" {
		return rec.Code, out.Error
	}
	return rec.Code, out.ID
}

// TestCrashBetweenPublishAndMove abandons a memo right after JetStream acknowledged it (as a kill
// would), then restarts on the same spool: one request, the file in processed/.
func TestCrashBetweenPublishAndMove(t *testing.T) {
	requireTools(t)
	te := newEnv(t, nil)
	crashed := make(chan struct{})
	te.memo.afterPublish = func(string) error {
		close(crashed)
		return errors.New("simulated crash")
	}
	stop := te.run(t, te.memo)
	b, err := os.ReadFile("testdata/scans/D053.png")
	if err != nil {
		t.Fatal(err)
	}
	dropFile(t, te.spool, "D053.png", b)
	select {
	case <-crashed:
	case <-time.After(60 * time.Second):
		t.Fatal("no publish")
	}
	stop()
	if got := files(t, filepath.Join(te.spool, "processing")); len(got) != 1 {
		t.Fatalf("processing/ after the crash = %v", got)
	}
	first := te.requests(t)
	if len(first) != 1 {
		t.Fatalf("%d requests after the crash", len(first))
	}

	m2 := te.newMemo(t, nil)
	te.run(t, m2)
	waitFor(t, 60*time.Second, "the file in processed/", func() bool {
		return len(files(t, filepath.Join(te.spool, "processed"))) == 1
	})
	reqs := te.requests(t)
	if len(reqs) != 1 || reqs[0].ID != first[0].ID {
		t.Fatalf("requests after restart: %d (ids %v)", len(reqs), reqs)
	}
	if got := files(t, filepath.Join(te.spool, "processing")); len(got) != 0 {
		t.Errorf("processing/ = %v", got)
	}
	if n := testutil.ToFloat64(m2.m.dups); n != 1 {
		t.Errorf("duplicates_total = %v, want 1 (JetStream dropped the republish)", n)
	}
}

// minimal PDFs for the bad-input cases.
func pdfDoc(objs []string, trailer string) []byte {
	var b bytes.Buffer
	b.WriteString("%PDF-1.4\n")
	offs := make([]int, len(objs))
	for i, o := range objs {
		offs[i] = b.Len()
		fmt.Fprintf(&b, "%d 0 obj\n%s\nendobj\n", i+1, o)
	}
	x := b.Len()
	fmt.Fprintf(&b, "xref\n0 %d\n0000000000 65535 f \n", len(objs)+1)
	for _, o := range offs {
		fmt.Fprintf(&b, "%010d 00000 n \n", o)
	}
	fmt.Fprintf(&b, "trailer\n<< /Size %d /Root 1 0 R %s >>\nstartxref\n%d\n%%%%EOF\n", len(objs)+1, trailer, x)
	return b.Bytes()
}

func pagesPDF(n int) []byte {
	objs := []string{"<< /Type /Catalog /Pages 2 0 R >>", ""}
	var kids []string
	for i := range n {
		kids = append(kids, fmt.Sprintf("%d 0 R", i+3))
		objs = append(objs, "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>")
	}
	objs[1] = fmt.Sprintf("<< /Type /Pages /Kids [%s] /Count %d >>", strings.Join(kids, " "), n)
	return pdfDoc(objs, "")
}

func encryptedPDF() []byte {
	objs := []string{"<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
		"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>",
		"<< /Filter /Standard /V 1 /R 2 /O <" + strings.Repeat("11", 32) + "> /U <" + strings.Repeat("22", 32) + "> /P -44 >>"}
	return pdfDoc(objs, "/Encrypt 4 0 R /ID [<00112233445566778899aabbccddeeff> <00112233445566778899aabbccddeeff>]")
}

// hugePNG is a small file whose header claims 50000×50000 pixels.
func hugePNG(t testing.TB) []byte {
	var b bytes.Buffer
	img := image.NewGray(image.Rect(0, 0, 1, 1))
	img.Set(0, 0, color.White)
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	data := b.Bytes()
	// IHDR width and height at bytes 16-23, then the chunk's CRC at 29-32.
	copy(data[16:], []byte{0, 0, 0xC3, 0x50, 0, 0, 0xC3, 0x50})
	binary.BigEndian.PutUint32(data[29:], crc32.ChecksumIEEE(data[12:29]))
	return data
}

// blankPNG is a white page with no text.
func blankPNG(t testing.TB) []byte {
	var b bytes.Buffer
	img := image.NewGray(image.Rect(0, 0, 200, 200))
	for i := range img.Pix {
		img.Pix[i] = 255
	}
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestBadInput drops each bad file, then a good one: each bad file lands in failed/ with its reason,
// the good one is still published. The same files through the upload get the right status.
func TestBadInput(t *testing.T) {
	requireTools(t)
	te := newEnv(t, func(o *Options) { o.MaxPages = 20; o.MaxBytes = 2 << 20 })
	bad := []struct {
		name   string
		data   []byte
		reason string
		status int
	}{
		{"empty.pdf", []byte{}, "empty", 400},
		{"notes.png", []byte("these are just notes, not an image\n"), "unsupported_type", 415},
		{"zero.pdf", pagesPDF(0), "no_pages", 415},
		{"locked.pdf", encryptedPDF(), "encrypted", 415},
		{"long.pdf", pagesPDF(60), "too_many_pages", 413},
		{"huge.png", hugePNG(t), "image_too_large", 413},
		{"blank.png", blankPNG(t), "no_text", 422},
		{"big.tif", append([]byte("II*\x00"), make([]byte, 3<<20)...), "too_large", 413},
	}
	te.run(t, te.memo)
	for _, b := range bad {
		dropFile(t, te.spool, b.name, b.data)
	}
	good, _ := os.ReadFile("testdata/scans/D025.png")
	dropFile(t, te.spool, "good.png", good)
	waitFor(t, 60*time.Second, "every file handled", func() bool {
		return len(files(t, filepath.Join(te.spool, "failed"))) == 2*len(bad) && len(files(t, filepath.Join(te.spool, "processed"))) == 1
	})
	for _, b := range bad {
		reason, err := os.ReadFile(filepath.Join(te.spool, "failed", b.name+".reason.txt"))
		if err != nil {
			t.Errorf("%s: %v", b.name, err)
			continue
		}
		if !strings.Contains(string(reason), "reason: "+b.reason+"\n") {
			t.Errorf("%s: reason\n%s\nwant %s", b.name, reason, b.reason)
		}
		t.Logf("%s: %s", b.name, strings.SplitN(strings.SplitN(string(reason), "detail: ", 2)[1], "\n", 2)[0])
	}
	if reqs := te.requests(t); len(reqs) != 1 || reqs[0].Requester.Unit != "UPIBI" {
		t.Errorf("requests = %+v", reqs)
	}
	if n := testutil.ToFloat64(te.memo.m.failed.WithLabelValues("encrypted")); n != 1 {
		t.Errorf("failed_total{encrypted} = %v", n)
	}

	// Uploads: the same files get a clear status; the traversal name never leaves the spool.
	for _, b := range bad {
		if b.reason == "no_text" {
			continue // already in failed/ from the spool run: a duplicate now only by content
		}
		code, msg := postMemo(t, te.memo, "../../"+b.name, b.data, nil)
		if code != b.status || msg == "" {
			t.Errorf("upload %s: %d %q, want %d", b.name, code, msg, b.status)
		}
	}
	code, msg := postMemo(t, te.memo, `..\..\..\etc/passwd`, []byte("root:x:0:0"), nil)
	if code != http.StatusUnsupportedMediaType || !strings.HasPrefix(msg, "Tipo de archivo no admitido: text/plain") {
		t.Errorf("traversal upload: %d %q", code, msg)
	}
	if code, _ := postMemo(t, te.memo, "x.png", nil, nil); code != http.StatusBadRequest {
		t.Errorf("no file: %d", code)
	}
	if code, _ := postMemo(t, te.memo, "x.png", good, map[string]string{"email": "no es correo"}); code != http.StatusBadRequest {
		t.Errorf("bad email: %d", code)
	}
	filepath.Walk(filepath.Dir(te.spool), func(p string, info os.FileInfo, err error) error {
		if err == nil && strings.Contains(info.Name(), "passwd") {
			t.Errorf("traversal name reached the file system: %s", p)
		}
		return nil
	})
}

func TestSanitizeName(t *testing.T) {
	for in, want := range map[string]string{
		"../../etc/passwd":                "passwd",
		`..\..\boot.ini`:                  "boot.ini",
		".hidden.pdf":                     "hidden.pdf",
		"ok name (1).pdf":                 "ok name (1).pdf",
		"a\x00b\nc.png":                   "abc.png",
		"":                                "memo",
		"..":                              "memo",
		"<script>.jpg":                    "_script_.jpg",
		strings.Repeat("x", 300) + ".tif": strings.Repeat("x", 96) + ".tif",
	} {
		if got := sanitizeName(in); got != want {
			t.Errorf("sanitizeName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestIgnoredNames(t *testing.T) {
	for name, want := range map[string]bool{
		".scan.pdf": true, "scan.pdf.part": true, "scan.tmp": true, "~scan.pdf": true, "scan.pdf.crdownload": true,
		"scan.pdf": false, "D003.png": false,
	} {
		if ignored(name) != want {
			t.Errorf("ignored(%q) = %v", name, !want)
		}
	}
}

// TestMissingToolsWait: with no tools in PATH the health says which, and files wait in the spool.
func TestMissingToolsWait(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	te := newEnv(t, nil)
	h := te.memo.Health(context.Background())
	var tools *channels.Health
	for i := range h {
		if h[i].Name == "memo.tools" {
			tools = &h[i]
		}
	}
	if tools == nil || tools.OK || !strings.Contains(tools.Detail, "tesseract") || !strings.Contains(tools.Detail, "pdftoppm") {
		t.Fatalf("health = %+v", h)
	}
	te.run(t, te.memo)
	dropFile(t, te.spool, "wait.png", blankPNG(t))
	// The watcher has seen the file and holds it back (it would claim it at this look otherwise).
	waitFor(t, 10*time.Second, "the spool holds the file back", func() bool { return te.memo.Waiting() == 1 })
	if got := files(t, te.spool); len(got) != 1 {
		t.Errorf("spool = %v, want the file waiting", got)
	}
	if code, _ := postMemo(t, te.memo, "x.png", blankPNG(t), nil); code != http.StatusServiceUnavailable {
		t.Errorf("upload without tools: %d", code)
	}
}

// TestHealthNeverRunsTheTools: /readyz asks Health often; with a tool missing it reports the
// cached check instead of running tesseract again on each call.
func TestHealthNeverRunsTheTools(t *testing.T) {
	bin := t.TempDir()
	count := filepath.Join(t.TempDir(), "runs")
	script := "#!/bin/sh\necho run >> " + count + "\necho spa\n"
	if err := os.WriteFile(filepath.Join(bin, "tesseract"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin) // tesseract only: the poppler tools are missing
	te := newEnv(t, nil)
	runs := func() int {
		b, _ := os.ReadFile(count)
		return strings.Count(string(b), "run")
	}
	before := runs()
	if before == 0 {
		t.Fatal("New did not look for the tools")
	}
	for range 5 {
		for _, h := range te.memo.Health(context.Background()) {
			if h.Name == "memo.tools" && (h.OK || !strings.Contains(h.Detail, "pdftoppm")) {
				t.Fatalf("tools check %+v", h)
			}
		}
	}
	if got := runs(); got != before {
		t.Fatalf("Health ran tesseract %d more times", got-before)
	}
}
