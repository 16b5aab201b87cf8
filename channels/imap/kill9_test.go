package imap

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ipn-cgsi/caud/channels/natsjs"
)

// TestKill9WhileIngestingLosesAndDoublesNothing ingests a few thousand mails with a child process
// that is killed with SIGKILL at random points and restarted, then checks that every mail became
// exactly one request.
func TestKill9WhileIngestingLosesAndDoublesNothing(t *testing.T) {
	n := 2000
	if v, err := strconv.Atoi(os.Getenv("IMAP_KILL9_MAILS")); err == nil {
		n = v
	}
	ns, err := natsjs.StartEmbedded(natsjs.EmbeddedOptions{Listen: "127.0.0.1:-1", StoreDir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	ctx := context.Background()
	nc, err := natsjs.Connect(ctx, natsjs.ConnectOptions{Server: ns}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	h, err := natsjs.EnsureTopology(ctx, js, natsjs.Topology{})
	if err != nil {
		t.Fatal(err)
	}
	srv := startMemServer(t, serverOpts{})
	c := dialIMAP(t, srv.Addr)
	for i := range n {
		appendRaw(t, c, "INBOX", synthMail(i))
	}
	kills := 0
	start := time.Now()
	for round := 0; ; round++ {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "IMAP_KILL9_CHILD=1", "IMAP_KILL9_NATS="+ns.ClientURL(), "IMAP_KILL9_IMAP="+srv.Addr)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		if round < 12 && folderCount(t, c, "INBOX") > 0 {
			time.Sleep(time.Duration(100+rand.IntN(600)) * time.Millisecond)
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-done
			kills++
			continue
		}
		waitFor(t, 120*time.Second, "inbox emptied", func() bool { return folderCount(t, c, "INBOX") == 0 })
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-done
		break
	}
	info, err := h.Inbound.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	reqs := readInbound(t, h.Inbound)
	t.Logf("%d mails, %d SIGKILLs, %d requests on CAU_INBOUND in %v", n, kills, info.State.Msgs, time.Since(start).Round(time.Millisecond))
	if kills == 0 {
		t.Errorf("the child was never killed")
	}
	assertOnePerMail(t, reqs, n)
	if got := folderCount(t, c, "Procesados"); got != uint32(n) {
		t.Errorf("Procesados has %d, want %d", got, n)
	}
}

// TestMain runs the child process of the kill -9 test when the test binary is started as one;
// otherwise the tests as usual.
func TestMain(m *testing.M) {
	if os.Getenv("IMAP_KILL9_CHILD") != "" {
		os.Exit(kill9Child())
	}
	os.Exit(m.Run())
}

// kill9Child ingests the test mailbox until SIGTERM or SIGKILL.
func kill9Child() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	nc, err := natsjs.Connect(ctx, natsjs.ConnectOptions{URLs: []string{os.Getenv("IMAP_KILL9_NATS")}}, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kill9 child:", err)
		return 1
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	h, err := natsjs.EnsureTopology(ctx, js, natsjs.Topology{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "kill9 child:", err)
		return 1
	}
	sink := natsjs.NewSink(h, natsjs.SinkOptions{})
	o := Options{
		Name: "cau", Address: testUser, Host: os.Getenv("IMAP_KILL9_IMAP"), TLS: TLSInsecure, Password: testPass,
		State: h.State, Requests: h.Requests, JS: h.JS, Holder: "kill9-child",
		BatchSize: 50, CommandTimeout: 10 * time.Second, MinBackoff: 50 * time.Millisecond,
	}
	mb, err := New(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kill9 child:", err)
		return 1
	}
	_ = mb.Run(ctx, sink)
	return 0
}
