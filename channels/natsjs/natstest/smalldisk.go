package natstest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// smallDiskEnv names, in the child process SmallDisk starts, the test that runs there.
const smallDiskEnv = "CAU_TEST_SMALL_DISK"

// SmallDisk gives the calling test a filesystem of its own that really fills up: a tmpfs of size
// bytes in a private mount namespace, so "no space left on device" comes from the kernel and the
// mount goes away with the process, whatever happens to the test.
//
// The test runs in two processes. In the test process SmallDisk runs the test binary again for this
// one test in a new mount namespace (directly as root, as CI runs; in an unprivileged user
// namespace otherwise), waits for it, fails t when it fails or did not run the test, and returns ok
// false: the caller returns at once. In that child SmallDisk mounts the tmpfs and returns its path
// and ok true. A machine that allows neither mount namespaces nor user namespaces fails the test:
// it is never skipped. Only top-level tests can call it.
func SmallDisk(t *testing.T, size int64) (dir string, ok bool) {
	t.Helper()
	if os.Getenv(smallDiskEnv) == t.Name() {
		dir = filepath.Join(t.TempDir(), "disk")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
			t.Fatalf("mount a %d-byte tmpfs on %s in the test's own mount namespace: %v", size, dir, err)
		}
		t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
		return dir, true
	}
	args := []string{"-test.run=^" + regexp.QuoteMeta(t.Name()) + "$", "-test.count=1", "-test.v"}
	if d, ok := t.Deadline(); ok {
		args = append(args, "-test.timeout="+time.Until(d).Round(time.Second).String())
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), smallDiskEnv+"="+t.Name())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// Unshareflags CLONE_NEWNS: the child gets its own mount table, and Go makes "/" private in it,
	// so nothing mounted there reaches this process or the machine.
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	if uid, gid := os.Geteuid(), os.Getegid(); uid != 0 {
		cmd.SysProcAttr.Cloneflags = syscall.CLONE_NEWUSER
		cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: uid, Size: 1}}
		cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: gid, Size: 1}}
	}
	err := cmd.Run()
	if err != nil && cmd.ProcessState == nil {
		t.Fatalf("this test needs a small filesystem of its own: running it in a new mount namespace failed: %v "+
			"(it needs root, as CI runs, or unprivileged user namespaces)", err)
	}
	if err != nil {
		t.Fatalf("%s in its own mount namespace: %v\n%s", t.Name(), err, out.String())
	}
	if !strings.Contains(out.String(), "--- PASS: "+t.Name()+" ") {
		t.Fatalf("%s did not run in its own mount namespace:\n%s", t.Name(), out.String())
	}
	t.Log("in its own mount namespace:\n" + out.String())
	return "", false
}

// FillDisk writes a ballast file into dir until its filesystem is full, and returns the file's
// path: removing it gives the space back.
func FillDisk(t testing.TB, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "ballast")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, chunk := range [][]byte{make([]byte, 1<<20), make([]byte, 4<<10), make([]byte, 64)} {
		for {
			if _, err := f.Write(chunk); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("fill the disk: %v", err)
				}
				break
			}
		}
	}
	return path
}

// WaitFor polls cond until it holds, failing t after limit (a bound for failure, not a timing).
func WaitFor(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
