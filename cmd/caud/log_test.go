package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipn-cgsi/caud/config"
)

// syncBuffer is a log sink safe for the daemon's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The log never says only "caud ready" while /readyz answers 503 (here: the OCR tools are missing),
// and a normal stop logs no warning an operator would have to look into.
func TestLogWarnsWhenUnreadyAndStopsQuietly(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // no tesseract, no poppler
	t.Setenv("CAU_NATS_EMBEDDED_LISTEN", "none")
	cfg, err := config.Load([]string{"--data-dir", t.TempDir(), "--http-listen", "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	app := NewApp(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := app.Start(ctx); err != nil {
		_ = app.Stop(ctx)
		t.Fatal(err)
	}
	started := logs.String()
	if !strings.Contains(started, "caud ready") || !strings.Contains(started, "level=WARN msg=\"caud runs but is not ready") || !strings.Contains(started, "memo.tools") {
		t.Errorf("start-up log does not warn about the failing readiness check:\n%s", started)
	}
	if !strings.Contains(started, "in-process (embedded server, no listener)") {
		t.Errorf("the NATS URL logged is not the embedded server's:\n%s", started)
	}
	if err := app.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	stopping := strings.TrimPrefix(logs.String(), started)
	for _, line := range strings.Split(stopping, "\n") {
		if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
			t.Errorf("normal stop logged: %s", line)
		}
	}
}

// A catalog file that is refused on reload shows in /readyz (and so in cauctl status) as a warning
// on the catalog check, not as a plain "ok"; readiness itself stays up (the old catalog works).
// Failed memo files are listed by GET /api/v1/spool/failures, beside the dead letters.
func TestRefusedCatalogAndSpoolFailuresAreVisible(t *testing.T) {
	dir := t.TempDir()
	catalog := filepath.Join(dir, "catalogo.yaml")
	def, err := os.ReadFile(filepath.Join("..", "..", "triage", "default_catalog.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(catalog, def, 0o644); err != nil {
		t.Fatal(err)
	}
	spool := filepath.Join(dir, "spool")
	if err := os.MkdirAll(filepath.Join(spool, "failed"), 0o755); err != nil {
		t.Fatal(err)
	}
	reason := "file: x.pdf\nfailed_at: 2025-10-14T16:05:00Z\nreason: encrypted\ndetail: pdf is encrypted\nsha256: 00\n\nThis file did not become a request.\nEste archivo no se convirtió en solicitud: El PDF está protegido.\n"
	for name, body := range map[string]string{"x.pdf": "%PDF-1.4", "x.pdf.reason.txt": reason} {
		if err := os.WriteFile(filepath.Join(spool, "failed", name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("CAU_TRIAGE_CATALOG", catalog)
	t.Setenv("CAU_MEMO_SPOOL_DIR", spool)
	_, base := startApp(t)

	if err := os.WriteFile(catalog, []byte("services: [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	type check struct {
		Name    string
		OK      bool
		Warning bool
		Detail  string
	}
	var cat check
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		_, body := call(t, "GET", base+"/readyz", "")
		var r struct{ Checks []check }
		_ = json.Unmarshal(body, &r)
		for _, c := range r.Checks {
			if c.Name == "catalog" {
				cat = c
			}
		}
		if cat.Warning || time.Now().After(deadline) {
			break
		}
	}
	if !cat.OK || !cat.Warning || !strings.Contains(cat.Detail, "refused") {
		t.Fatalf("catalog check after a refused reload: %+v", cat)
	}

	code, body := call(t, "GET", base+"/api/v1/spool/failures", "")
	if code != 200 || !strings.Contains(string(body), `"name":"x.pdf"`) || !strings.Contains(string(body), "El PDF está protegido.") {
		t.Fatalf("spool failures: %d %s", code, body)
	}
}
