package triage

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// replaceFile writes like an editor does: a temporary file renamed over the old one.
func replaceFile(t testing.TB, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	writeFile(t, tmp, content)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestStoreDefault(t *testing.T) {
	s, err := NewStore("", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Engine().Catalog() != DefaultCatalog() || s.Reload() != nil {
		t.Fatal("default store")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Watch(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestStoreReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "catalog.yaml")
	writeFile(t, path, smallCatalog)
	var reported atomic.Int32
	s, err := NewStore(path, quietLog(), func(error) { reported.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	v1 := s.Engine().Catalog().Version()

	writeFile(t, path, strings.Replace(smallCatalog, "group: Mesa de Correo", "group: \"\"", 1))
	err = s.Reload()
	if !errors.Is(err, ErrInvalidCatalog) || !strings.Contains(err.Error(), "catalog.yaml:11") {
		t.Fatalf("bad reload: %v", err)
	}
	if s.Engine().Catalog().Version() != v1 || reported.Load() != 1 {
		t.Fatal("bad catalog replaced the good one or was not reported")
	}

	writeFile(t, path, strings.Replace(smallCatalog, `version: "t1"`, `version: "t2"`, 1))
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if v := s.Engine().Catalog().Version(); !strings.HasPrefix(v, "t2+") {
		t.Fatalf("version after reload %q", v)
	}

	if _, err := NewStore(filepath.Join(t.TempDir(), "none.yaml"), nil, nil); err == nil {
		t.Fatal("NewStore with a missing file")
	}
}

func TestStoreWatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "catalog.yaml")
	writeFile(t, path, smallCatalog)
	var reported atomic.Int32
	s, err := NewStore(path, quietLog(), func(error) { reported.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Watch(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	// fsnotify may not be armed yet when the first write lands; the 2 s poll still sees it.
	waitFor(t, "good change", func() bool {
		return strings.HasPrefix(s.Engine().Catalog().Version(), "t2+")
	}, func() { replaceFile(t, path, strings.Replace(smallCatalog, `version: "t1"`, `version: "t2"`, 1)) })

	v2 := s.Engine().Catalog().Version()
	replaceFile(t, path, "version: [broken\n")
	waitFor(t, "bad change reported", func() bool { return reported.Load() >= 1 }, nil)
	if s.Engine().Catalog().Version() != v2 {
		t.Fatal("a broken file replaced the engine")
	}

	replaceFile(t, path, strings.Replace(smallCatalog, `version: "t1"`, `version: "t3"`, 1))
	waitFor(t, "recovery", func() bool {
		return strings.HasPrefix(s.Engine().Catalog().Version(), "t3+")
	}, nil)
}

// waitFor polls cond for up to 20 s, running act first. It asserts the outcome, never the speed.
func waitFor(t *testing.T, what string, cond func() bool, act func()) {
	t.Helper()
	if act != nil {
		act()
	}
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestStoreWithModel(t *testing.T) {
	dir := t.TempDir()
	m, _, err := Learn(DefaultCatalog(), nil, corrections(zeltiaTexts, OutcomeSAI, KindFalla, "SISTEMAS"), nil)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := WriteModel(&b, m); err != nil {
		t.Fatal(err)
	}
	path := dir + "/modelo.json"
	writeFile(t, path, b.String())
	var refused []error
	s, err := NewStoreWithModel("", path, nil, func(err error) { refused = append(refused, err) })
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultCatalog().Version() + "+m." + m.Version
	if v := s.Engine().Version(); v != want {
		t.Fatalf("version %q, want %q", v, want)
	}
	if d := s.Engine().Decide(Input{Text: "no puedo timbrar en Zeltia"}); d.Area != "SISTEMAS" || d.CatalogVersion != want {
		t.Errorf("%+v", d)
	}
	// A broken model file is refused; the engine with the good model stays.
	writeFile(t, path, strings.Replace(b.String(), "Zeltia", "Zelta", 1))
	if err := s.Reload(); !errors.Is(err, ErrInvalidModel) || len(refused) != 1 {
		t.Fatalf("reload: %v (refused %v)", err, refused)
	}
	if v := s.Engine().Version(); v != want {
		t.Errorf("after a refused model: %q", v)
	}
	if _, err := NewStoreWithModel("", dir+"/none.json", nil, nil); err == nil {
		t.Error("missing model file accepted")
	}
}
