package main

import (
	"context"
	"crypto/subtle"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ipn-cgsi/caud/channels/httpjson"
	"github.com/ipn-cgsi/caud/channels/memo"
	"github.com/ipn-cgsi/caud/channels/natsjs"
)

// auth returns the middleware of the /api/ endpoints: a bearer token when one is configured, else
// loopback clients only.
func (a *App) auth() func(http.Handler) http.Handler {
	token := []byte(a.cfg.HTTP.Token)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if len(token) == 0 {
				host, _, _ := net.SplitHostPort(r.RemoteAddr)
				if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
					httpjson.Fail(w, http.StatusForbidden, "la API solo acepta conexiones locales mientras no haya un token configurado")
					return
				}
				next.ServeHTTP(w, r)
				return
			}
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), token) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="caud"`)
				httpjson.Fail(w, http.StatusUnauthorized, "falta el token de acceso o no es válido")
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// Check is one readiness check. Warning marks a check that passes but needs someone's attention
// (a refused catalog reload: the previous catalog stays in force).
type Check struct {
	Name    string `json:"name"`
	OK      bool   `json:"ok"`
	Warning bool   `json:"warning,omitempty"`
	Detail  string `json:"detail,omitempty"`
	Since   string `json:"since,omitempty"`
}

func (a *App) registerOps(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		checks := a.readiness(ctx)
		ready := true
		for _, c := range checks {
			ready = ready && c.OK
		}
		status := http.StatusOK
		if !ready {
			status = http.StatusServiceUnavailable
		}
		httpjson.Write(w, status, map[string]any{"ready": ready, "checks": checks})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{Registry: a.reg}))
}

func (a *App) readiness(ctx context.Context) []Check {
	var checks []Check
	a.mu.Lock()
	conn, waiting, down := a.nc, a.waiting, a.natsDown
	a.mu.Unlock()
	nc := Check{Name: "nats", OK: conn != nil && conn.Status() == nats.CONNECTED}
	if conn != nil {
		nc.Detail = strings.ToLower(conn.Status().String())
		if u := natsjs.ConnURL(conn, a.ns); u != "" {
			nc.Detail += " " + u
		}
	} else {
		nc.Detail = "not connected yet"
	}
	if !down.IsZero() {
		nc.Since = down.UTC().Format(time.RFC3339)
	}
	checks = append(checks, nc)
	if !a.started.Load() {
		// The rest is not wired yet; say what start-up waits for.
		waiting.Name, waiting.OK = "startup", false
		return append(checks, waiting)
	}
	for _, name := range []string{natsjs.StreamInbound, natsjs.StreamTriaged, natsjs.StreamDLQ} {
		c := Check{Name: "stream " + name, OK: true}
		if a.h == nil {
			c.OK, c.Detail = false, "not created"
		} else if a.guard != nil && !a.guard.Writing() {
			c.OK, c.Detail = false, "JetStream is paused until the disk has room (see embedded store)"
		} else if _, err := a.h.JS.Stream(ctx, name); err != nil {
			c.OK, c.Detail = false, err.Error()
		}
		checks = append(checks, c)
	}
	checks = append(checks, a.catalogCheck())
	for _, r := range a.health {
		for _, h := range r.Health(ctx) {
			c := Check{Name: h.Name, OK: h.OK, Detail: h.Detail}
			if !h.Since.IsZero() {
				c.Since = h.Since.UTC().Format(time.RFC3339)
			}
			checks = append(checks, c)
		}
	}
	return checks
}

// catalogCheck reports the catalog in force and, while it is the one a refused reload left in
// place, the refusal: a new file with an error must not look like "catalog ok".
func (a *App) catalogCheck() Check {
	cat := Check{Name: "catalog", OK: a.catalog != nil}
	if a.catalog == nil {
		return cat
	}
	eng := a.catalog.Engine()
	cat.Detail = eng.Catalog().Version()
	a.mu.Lock()
	err, at, kept := a.catalogErr, a.catalogErrAt, a.catalogErrKept
	a.mu.Unlock()
	if err != nil && kept == eng {
		cat.Warning = true
		cat.Since = at.UTC().Format(time.RFC3339)
		cat.Detail += "; the new file was refused, this catalog stays in force: " + err.Error()
	}
	return cat
}

// spoolFailures answers GET /api/v1/spool/failures: the memo files that did not become requests
// (failed/ of the spool), with their reasons, newest first; cauctl dlq list shows them with the
// dead letters.
func (a *App) handleSpoolFailures(w http.ResponseWriter, _ *http.Request) {
	out := []memo.FailedFile{}
	if a.cfg.Memo.Enabled {
		ff, err := memo.Failures(a.cfg.Memo.SpoolDir, 1000)
		if err != nil {
			a.log.Error("list spool failures", "err", err)
			httpjson.Fail(w, http.StatusServiceUnavailable, "no se pudo leer la carpeta de oficios fallidos")
			return
		}
		out = append(out, ff...)
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"spool_dir": a.cfg.Memo.SpoolDir, "failures": out})
}

// warnUnready logs, right after start-up, every readiness check that fails: a "caud ready" line
// while /readyz answers 503 (missing OCR tools, a mailbox that cannot log in) would mislead whoever
// reads the log. A mailbox still connecting is no warning: it is reported when its session fails.
func (a *App) warnUnready(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	var failing []string
	for _, c := range a.readiness(ctx) {
		if !c.OK && c.Detail != "starting" {
			failing = append(failing, c.Name+": "+c.Detail)
		}
	}
	if len(failing) > 0 {
		a.log.Warn("caud runs but is not ready: /readyz answers 503 until this is fixed", "failing", strings.Join(failing, "; "))
	}
}
