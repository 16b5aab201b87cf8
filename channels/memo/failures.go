package memo

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// FailedFile is a spool file that did not become a request, as failed/NAME.reason.txt records it.
type FailedFile struct {
	Name     string    `json:"name"`
	FailedAt time.Time `json:"failed_at"`
	Code     string    `json:"code"` // machine reason (e.g. ocr_empty, too_large)
	Detail   string    `json:"detail"`
	// Spanish is the reason for people.
	Spanish string `json:"reason"`
}

// Failures lists the files in the spool's failed/ folder with their reasons, newest first, at most
// max (0: all). A spool without a failed/ folder has none.
func Failures(spoolDir string, max int) ([]FailedFile, error) {
	dir := filepath.Join(spoolDir, "failed")
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []FailedFile
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".reason.txt")
		if !ok || e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		f := FailedFile{Name: name}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			line := sc.Text()
			k, v, _ := strings.Cut(line, ": ")
			switch k {
			case "failed_at":
				f.FailedAt, _ = time.Parse(time.RFC3339, v)
			case "reason":
				f.Code = v
			case "detail":
				f.Detail = v
			}
			if s, ok := strings.CutPrefix(line, "Este archivo no se convirtió en solicitud: "); ok {
				f.Spanish = s
			}
		}
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].FailedAt.After(out[j].FailedAt) })
	if max > 0 && len(out) > max {
		out = out[:max]
	}
	return out, nil
}
