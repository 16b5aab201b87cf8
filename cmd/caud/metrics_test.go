package main

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// metricName matches the metrics a PromQL expression names (every caud metric starts with caud_).
var metricName = regexp.MustCompile(`\bcaud_[a-z0-9_]+\b`)

// ruleExprs returns the expressions of config/prometheus/rules.yml.
func ruleExprs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "config", "prometheus", "rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Groups []struct {
			Rules []struct {
				Alert, Expr string
			}
		}
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, g := range doc.Groups {
		for _, r := range g.Rules {
			out = append(out, r.Expr)
		}
	}
	return out
}

// dashboardExprs returns the query of every panel of config/grafana/dashboards/*.json.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "..", "config", "grafana", "dashboards", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards: %v", err)
	}
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Panels []struct {
				Title   string
				Targets []struct{ Expr string }
			}
		}
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, p := range d.Panels {
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", f, p.Title)
			}
			for _, tg := range p.Targets {
				out = append(out, tg.Expr)
			}
		}
	}
	return out
}

// TestAlertAndDashboardMetricsExist: every metric the alert rules and the Grafana dashboard name is
// exported by a running caud with every channel configured, from the start (a rule over a series
// that appears only after the first failure would stay silent until then, or never evaluate).
func TestAlertAndDashboardMetricsExist(t *testing.T) {
	// Unreachable servers on purpose: the metrics must exist before the first connection succeeds.
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := closed.Addr().String()
	closed.Close()
	_, port, _ := net.SplitHostPort(dead)
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "caud.yaml")
	cfgText := "imap:\n  mailboxes:\n    - {name: cau, address: cau@ipn.mx, host: \"" + dead + "\", tls: insecure, username: cau@ipn.mx, password: x}\n" +
		"notify: {enabled: true, smtp: {host: 127.0.0.1, port: " + port + ", tls: none, from: \"CAU <cau@ipn.mx>\"}}\n"
	if err := os.WriteFile(cfgFile, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	_, base := startApp(t, "--config", cfgFile)
	_, id := submit(t, base, `{"channel":"phone","description":"No hay internet en el laboratorio 3 de la ESCOM"}`)
	waitQueued(t, base, id)

	exported := map[string]bool{}
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		code, body := call(t, "GET", base+"/metrics", "")
		if code != 200 {
			t.Fatalf("/metrics: %d", code)
		}
		for _, line := range strings.Split(string(body), "\n") {
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			name := line[:strings.IndexAny(line, "{ ")]
			exported[name] = true
		}
		if exported["caud_queue_pending"] && exported["caud_stream_messages"] {
			break
		}
		if time.Now().After(deadline) {
			break
		}
	}
	named := 0
	for _, expr := range append(ruleExprs(t), dashboardExprs(t)...) {
		names := metricName.FindAllString(expr, -1)
		if len(names) == 0 {
			t.Errorf("%q names no caud metric", expr)
		}
		for _, n := range names {
			named++
			if !exported[n] {
				t.Errorf("%q names %s, which /metrics does not export", expr, n)
			}
		}
	}
	if named < 20 {
		t.Fatalf("only %d metric references found in the rules and the dashboard", named)
	}
}
