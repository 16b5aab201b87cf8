package main

import (
	"bytes"
	"context"
	"log/slog"
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
