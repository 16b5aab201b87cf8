package memo

import (
	"os"
	"path/filepath"
	"testing"
)

func TestFailuresReadsTheReasonFiles(t *testing.T) {
	spool := t.TempDir()
	if fs, err := Failures(spool, 0); err != nil || len(fs) != 0 {
		t.Fatalf("empty spool: %v %v", fs, err)
	}
	dir := filepath.Join(spool, "failed")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, at, code string) {
		body := "file: " + name + "\nfailed_at: " + at + "\nreason: " + code + "\ndetail: d\nsha256: x\n\nThis file...\nEste archivo no se convirtió en solicitud: motivo " + code + "\n"
		if err := os.WriteFile(filepath.Join(dir, name+".reason.txt"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("viejo.pdf", "2026-01-01T10:00:00Z", "ocr_empty")
	write("nuevo.png", "2026-02-01T10:00:00Z", "too_large")
	fs, err := Failures(spool, 0)
	if err != nil || len(fs) != 2 {
		t.Fatalf("failures: %v %v", fs, err)
	}
	if fs[0].Name != "nuevo.png" || fs[0].Code != "too_large" || fs[0].Spanish != "motivo too_large" || fs[1].Name != "viejo.pdf" {
		t.Fatalf("failures: %+v", fs)
	}
	if fs, _ := Failures(spool, 1); len(fs) != 1 {
		t.Fatalf("max: %d", len(fs))
	}
}
