package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// instance is this process's identity in mailbox leases. It is kept in <data_dir>/instance.id so
// that a restarted caud recognises the lease its previous run held (after a crash, too) and
// resumes at once instead of waiting for it to expire. The file is locked while caud runs: a second
// process on the same data dir gets a one-off identity, so two live processes never share one.
type instance struct {
	id     string // stable across restarts of the same data dir
	holder string // host and id, as written in leases
	lock   *os.File
}

func openInstance(dataDir string, log *slog.Logger) (*instance, error) {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "caud"
	}
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dataDir, "instance.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("instance lock: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = lock.Close()
		id := newInstanceID()
		log.Warn("another caud runs on this data dir; using a one-off instance id (its mailbox leases are not resumed after a restart)", "data_dir", dataDir, "instance", id)
		return &instance{id: id, holder: host + "/" + id}, nil
	}
	path := filepath.Join(dataDir, "instance.id")
	b, err := os.ReadFile(path)
	id := strings.TrimSpace(string(b))
	if errors.Is(err, fs.ErrNotExist) || (err == nil && id == "") {
		id = newInstanceID()
		if err := os.WriteFile(path, []byte(id+"\n"), 0o644); err != nil {
			_ = lock.Close()
			return nil, fmt.Errorf("instance id: %w", err)
		}
	} else if err != nil {
		_ = lock.Close()
		return nil, fmt.Errorf("instance id: %w", err)
	}
	return &instance{id: id, holder: host + "/" + id, lock: lock}, nil
}

func newInstanceID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// close releases the lock; nil-safe.
func (i *instance) close() {
	if i != nil && i.lock != nil {
		_ = i.lock.Close()
		i.lock = nil
	}
}
