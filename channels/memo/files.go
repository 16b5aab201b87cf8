package memo

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"unicode"
	"unicode/utf8"
)

func moveNoReplace(src, dir, name string) (string, error) {
	return moveUnique(src, dir, name, nil)
}

// moveUnique moves src into dir under name, or name-2, name-3... when that exists or skip says so.
func moveUnique(src, dir, name string, skip func(cand string) bool) (string, error) {
	for i := 1; i < 1000; i++ {
		cand := numbered(name, i)
		if skip != nil && skip(cand) {
			continue
		}
		err := linkExact(src, filepath.Join(dir, cand))
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return "", err
		}
		syncDir(dir)
		return cand, nil
	}
	return "", fmt.Errorf("move %s: too many files of that name in %s", name, dir)
}

func numbered(name string, i int) string {
	if i <= 1 {
		return name
	}
	ext := filepath.Ext(name)
	return fmt.Sprintf("%s-%d%s", strings.TrimSuffix(name, ext), i, ext)
}

// linkExact moves src to dst without replacing dst (os.ErrExist then). os.Link fails when the target
// exists, so two claimers (or two replicas on one spool) never take the same name.
func linkExact(src, dst string) error {
	err := os.Link(src, dst)
	if err == nil {
		if err := os.Remove(src); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	if errors.Is(err, os.ErrExist) {
		return os.ErrExist
	}
	if errors.Is(err, syscall.EXDEV) || errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.ENOTSUP) {
		// No hard links here (some SMB or FUSE mounts): rename after checking.
		if _, err := os.Lstat(dst); err == nil {
			return os.ErrExist
		}
		return os.Rename(src, dst)
	}
	return err
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// sanitizeName keeps the last element of a client-supplied name, without control characters,
// separators or leading dots, and at most 100 bytes; "memo" when nothing is left.
func sanitizeName(s string) string {
	s = strings.ToValidUTF8(s, "")
	if i := strings.LastIndexAny(s, `/\`); i >= 0 {
		s = s[i+1:]
	}
	s = strings.Map(func(r rune) rune {
		switch {
		case r < ' ' || r == 0x7f || !unicode.IsPrint(r):
			return -1
		case strings.ContainsRune(`<>:"|?*`, r):
			return '_'
		}
		return r
	}, s)
	s = strings.TrimLeft(strings.TrimSpace(s), ".")
	if len(s) > 100 {
		ext := filepath.Ext(s)
		if len(ext) > 10 || !utf8.ValidString(ext) {
			ext = ""
		}
		s = clip(s, 100-len(ext)) + ext
	}
	if s == "" {
		s = "memo"
	}
	return s
}

func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return err
	}
	syncDir(filepath.Dir(path))
	return nil
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// keyedMutex serializes work on one key (a scan's SHA-256), so a scan dropped and uploaded at the
// same moment gets one request id.
type keyedMutex struct {
	mu sync.Mutex
	m  map[string]*keyed
}

type keyed struct {
	mu   sync.Mutex
	refs int
}

func (k *keyedMutex) lock(key string) func() {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyed{}
	}
	e := k.m[key]
	if e == nil {
		e = &keyed{}
		k.m[key] = e
	}
	e.refs++
	k.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}
