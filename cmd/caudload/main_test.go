package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// intakeOnly answers like a caud started with roles [intake]: desk intake, no queues.
func intakeOnly(n *atomic.Int64) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/requests", func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"id":"x"}`))
	})
	return mux
}

// Against an intake-only replica the load runs (it needs no queues), and --wait says where the
// queues must come from instead of failing before the first request.
func TestIntakeOnlyTarget(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(intakeOnly(&n))
	defer srv.Close()
	var out, errb bytes.Buffer
	if code := run([]string{"--server", srv.URL, "--n", "50", "--c", "4"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if n.Load() != 50 || !strings.Contains(out.String(), "50 accepted, 0 failed") {
		t.Fatalf("%d submitted; %s", n.Load(), out.String())
	}
	errb.Reset()
	if code := run([]string{"--server", srv.URL, "--n", "5", "--wait"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "--queues") {
		t.Fatalf("--wait against intake only: exit %d, %s", code, errb.String())
	}
}
