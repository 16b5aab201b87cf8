// Command diskload measures caud on its embedded server when the disk under the store really runs
// full, the figure of issue 13's "Store full or disk full" item: desk clients keep sending (each
// retrying with its idempotency key, as the API asks), a ballast file fills the filesystem, stays
// for --full, and is removed. Per round it reports how long /readyz said 503 and why, the time from
// space returning to /readyz 200 and to the last waiting request accepted; at the end it counts
// CAU_INBOUND and CAU_TRIAGED: every accepted key exactly once, none lost, none doubled.
//
// The filesystem is a tmpfs of --size, mounted in a mount namespace of the harness's own (it runs
// itself again in one: as root, or in an unprivileged user namespace), so nothing outside sees it
// and it goes away with the harness. caud runs as a separate process of the binary built from
// ./cmd/caud (or --caud PATH), with its data directory on that filesystem. Run it from the
// repository root:
//
//	go run ./cmd/diskload                          # defaults: 3 rounds, disk full for 5 s, 4 clients
//	go run ./cmd/diskload --rounds 5 --full 20s --clients 8 --size 256MiB
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/cmd/internal/clusterrig"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// insideEnv marks the harness process that runs in its own mount namespace.
const insideEnv = "CAU_DISKLOAD_INSIDE"

type options struct {
	rounds, clients int
	full            time.Duration
	size            string
	caud            string
	keep            bool
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("diskload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.IntVar(&o.rounds, "rounds", 3, "times the disk runs full")
	fs.IntVar(&o.clients, "clients", 4, "desk clients sending all the time")
	fs.DurationVar(&o.full, "full", 5*time.Second, "how long the disk stays full each round")
	fs.StringVar(&o.size, "size", "128m", "size of the tmpfs under caud's data directory (tmpfs size= syntax)")
	fs.StringVar(&o.caud, "caud", "", "caud binary (default: go build ./cmd/caud)")
	fs.BoolVar(&o.keep, "keep", false, "print caud's log at the end")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if os.Getenv(insideEnv) == "" {
		return reexec(args, stdout, stderr)
	}
	if err := measure(o, stdout); err != nil {
		fmt.Fprintln(stderr, "diskload:", err)
		return 1
	}
	return 0
}

// reexec runs the harness again in a new mount namespace, as root directly, else in a user
// namespace of its own.
func reexec(args []string, stdout, stderr io.Writer) int {
	cmd := exec.Command("/proc/self/exe", args...)
	cmd.Env = append(os.Environ(), insideEnv+"=1")
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	if uid := os.Geteuid(); uid != 0 {
		cmd.SysProcAttr.Cloneflags = syscall.CLONE_NEWUSER
		cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: uid, Size: 1}}
		cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}}
	}
	if err := cmd.Run(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return exit.ExitCode()
		}
		fmt.Fprintln(stderr, "diskload: a mount namespace of its own is needed (root, or unprivileged user namespaces):", err)
		return 1
	}
	return 0
}

type harness struct {
	o    options
	out  io.Writer
	dir  string // work directory (binary, config, log); not on the small disk
	disk string // the tmpfs
	base string // caud's HTTP base URL
	log  string
	cmd  *exec.Cmd
	done chan error
}

func (h *harness) printf(format string, a ...any) {
	fmt.Fprintf(h.out, "%s  %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, a...))
}

func measure(o options, out io.Writer) error {
	dir, err := os.MkdirTemp("", "diskload-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	h := &harness{o: o, out: out, dir: dir, disk: filepath.Join(dir, "disk"), log: filepath.Join(dir, "caud.log")}
	if err := os.Mkdir(h.disk, 0o700); err != nil {
		return err
	}
	if err := syscall.Mount("tmpfs", h.disk, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "size="+o.size+",mode=0700"); err != nil {
		return fmt.Errorf("mount a tmpfs of %s: %w", o.size, err)
	}
	defer syscall.Unmount(h.disk, syscall.MNT_DETACH)
	if o.caud == "" {
		h.o.caud = filepath.Join(dir, "caud")
		build := exec.Command("go", "build", "-o", h.o.caud, "./cmd/caud")
		build.Stderr = os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("go build ./cmd/caud: %w", err)
		}
	}
	if err := h.start(); err != nil {
		return err
	}
	defer h.stop()
	js, err := h.connect()
	if err != nil {
		return err
	}
	h.printf("caud %s on a %s tmpfs (%s); %d desk clients; %d rounds, disk full for %s each", h.base, o.size, h.disk, o.clients, o.rounds, o.full)

	ctx, cancel := context.WithCancel(context.Background())
	load := &clusterrig.DeskLoad{Targets: func() []string { return []string{h.base} }, Clients: o.clients, Run: "disk"}
	wait := load.Start(ctx)
	var readyAfter, drainAfter, unready []time.Duration
	for r := 1; r <= o.rounds; r++ {
		// Some load on a healthy store first.
		before := load.Accepted()
		if !waitFor(time.Minute, func() bool { return load.Accepted() >= before+20 }) {
			cancel()
			return fmt.Errorf("round %d: the desk accepts nothing on a healthy store", r)
		}
		ballast, err := fillDisk(h.disk)
		if err != nil {
			cancel()
			return err
		}
		filled := time.Now()
		var reason string
		if !waitFor(time.Minute, func() bool {
			code, b := h.ready()
			reason = b
			return code == 503 && strings.Contains(b, "no space left")
		}) {
			cancel()
			return fmt.Errorf("round %d: /readyz did not report the full disk: %s", r, reason)
		}
		unreadyAt := time.Since(filled)
		time.Sleep(o.full) // the scenario: the disk stays full this long
		if err := os.Remove(ballast); err != nil {
			cancel()
			return err
		}
		freed := time.Now()
		if !waitFor(time.Minute, func() bool { code, _ := h.ready(); return code == 200 }) {
			cancel()
			return fmt.Errorf("round %d: not ready within a minute of space returning", r)
		}
		ready := time.Since(freed)
		// The requests sent before space returned, all waiting (or retried after a 503) in the
		// clients: the round is over when every one of them is accepted.
		if !waitFor(time.Minute, func() bool { return load.WaitingSince(freed) == 0 }) {
			cancel()
			return fmt.Errorf("round %d: waiting requests not accepted within a minute of space returning", r)
		}
		drain := time.Since(freed)
		readyAfter, drainAfter, unready = append(readyAfter, ready), append(drainAfter, drain), append(unready, unreadyAt)
		h.printf("round %d: /readyz 503 %s after the disk filled (%s); space back: ready after %s, waiting clients served after %s",
			r, unreadyAt.Round(time.Millisecond), excerpt(reason), ready.Round(time.Millisecond), drain.Round(time.Millisecond))
	}
	cancel()
	wait()
	res := load.Result()
	cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer ccancel()
	if !waitFor(2*time.Minute, func() bool { return triaged(cctx, js) >= len(res.Accepted) }) {
		return fmt.Errorf("not every accepted request was triaged: %d of %d", triaged(cctx, js), len(res.Accepted))
	}
	desk, _, err := clusterrig.Count(cctx, js)
	if err != nil {
		return err
	}
	lost, doubled := 0, 0
	for key := range res.Accepted {
		switch n := desk[key]; {
		case n == 0:
			lost++
		case n > 1:
			doubled++
		}
	}
	h.printf("DISK FULL ON THE EMBEDDED SERVER (%d rounds, full for %s each, %d clients): /readyz 503 after %v; ready after space returned %v (max %s); waiting clients served %v (max %s)",
		o.rounds, o.full, o.clients, round(unready), round(readyAfter), maxOf(readyAfter).Round(time.Millisecond), round(drainAfter), maxOf(drainAfter).Round(time.Millisecond))
	h.printf("COUNT: %d keys accepted, %d requests in CAU_INBOUND, %d triaged; %d lost, %d doubled; %d answers 503 and %d without an answer were retried with their keys",
		len(res.Accepted), sum(desk), triaged(cctx, js), lost, doubled, res.Statuses[503], res.Statuses[0])
	if lost > 0 || doubled > 0 || sum(desk) != len(res.Accepted) {
		return errors.New("requests lost or doubled")
	}
	return nil
}

func (h *harness) start() error {
	cfg := filepath.Join(h.dir, "caud.yaml")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	h.base = "http://" + addr
	// The client port of the embedded server lets the harness count the streams; port 0 picks a
	// free one, which caud's log names.
	conf := fmt.Sprintf("data_dir: %s\nhttp:\n  listen: %q\nnats:\n  embedded:\n    listen: \"127.0.0.1:0\"\n    resume_free: 8MiB\nconsole:\n  enabled: false\n", filepath.Join(h.disk, "data"), addr)
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		return err
	}
	logf, err := os.Create(h.log)
	if err != nil {
		return err
	}
	h.cmd = exec.Command(h.o.caud, "--config", cfg, "--log-level", "info")
	h.cmd.Stdout, h.cmd.Stderr = logf, logf
	if err := h.cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	h.done = make(chan error, 1)
	go func() { h.done <- h.cmd.Wait(); logf.Close() }()
	if !waitFor(time.Minute, func() bool { code, _ := h.ready(); return code == 200 }) {
		return fmt.Errorf("caud not ready within a minute (log: %s)", h.log)
	}
	return nil
}

func (h *harness) stop() {
	if h.cmd == nil || h.cmd.Process == nil {
		return
	}
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.done:
	case <-time.After(15 * time.Second):
		_ = h.cmd.Process.Kill()
		<-h.done
	}
	if h.o.keep {
		if b, err := os.ReadFile(h.log); err == nil {
			fmt.Fprintf(h.out, "caud's log:\n%s", b)
		}
	}
}

var clientURL = regexp.MustCompile(`client_url=(nats://\S+)`)

// connect reaches the embedded server through the client port caud's log names, with its token.
func (h *harness) connect() (jetstream.JetStream, error) {
	var url string
	waitFor(10*time.Second, func() bool {
		f, err := os.Open(h.log)
		if err != nil {
			return false
		}
		defer f.Close()
		for sc := bufio.NewScanner(f); sc.Scan(); {
			if m := clientURL.FindStringSubmatch(sc.Text()); m != nil {
				url = m[1]
				return true
			}
		}
		return false
	})
	if url == "" {
		return nil, fmt.Errorf("caud's log names no embedded client url (%s)", h.log)
	}
	tok, err := os.ReadFile(filepath.Join(h.disk, "data", "nats.token"))
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(url, nats.Token(strings.TrimSpace(string(tok))), nats.MaxReconnects(-1))
	if err != nil {
		return nil, err
	}
	return jetstream.New(nc)
}

func (h *harness) ready() (int, string) {
	cl := http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get(h.base + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// fillDisk writes a ballast file until the filesystem is full.
func fillDisk(dir string) (string, error) {
	path := filepath.Join(dir, "ballast")
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	for _, chunk := range [][]byte{make([]byte, 1<<20), make([]byte, 4<<10), make([]byte, 64)} {
		for {
			if _, err := f.Write(chunk); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					return "", err
				}
				break
			}
		}
	}
	return path, nil
}

func triaged(ctx context.Context, js jetstream.JetStream) int {
	s, err := js.Stream(ctx, natsjs.StreamTriaged)
	if err != nil {
		return -1
	}
	info, err := s.Info(ctx)
	if err != nil {
		return -1
	}
	return int(info.State.Msgs)
}

var embeddedReason = regexp.MustCompile(`"name":"embedded store","ok":false,"detail":"([^"]{0,160})`)

func excerpt(readyz string) string {
	if m := embeddedReason.FindStringSubmatch(readyz); m != nil {
		return m[1] + "…"
	}
	return readyz
}

func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

func round(d []time.Duration) []time.Duration {
	out := make([]time.Duration, len(d))
	for i, v := range d {
		out[i] = v.Round(time.Millisecond)
	}
	return out
}

func maxOf(d []time.Duration) time.Duration {
	var m time.Duration
	for _, v := range d {
		m = max(m, v)
	}
	return m
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
