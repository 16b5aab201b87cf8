// Command imapload measures the IMAP channel: it fills a mailbox on a loopback IMAP server with N
// messages and measures how long caud's adapter takes until all N are in CAU_INBOUND (bulk), or
// the APPEND-to-published latency while the adapter idles (idle: p50 / p99).
//
// By default it runs the adapter itself, in-process, against an embedded JetStream (no caud
// needed). With --nats it connects to a running caud's NATS instead and only watches CAU_INBOUND
// (add --adapter to still run the adapter in-process against that NATS).
//
//	imapload --imap 127.0.0.1:11143 --user load@ipn.mx --pass secret --n 5000 --mode bulk
//	imapload --imap 127.0.0.1:11143 --user lat@ipn.mx --pass secret --n 500 --mode idle --rate 50
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/imap"
	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/cmd/internal/loadtest"
)

func main() { os.Exit(run()) }

type config struct {
	imapAddr, user, pass, folder, mode, natsURL, storeDir, maildir string
	n, size, rate                                                  int
	adapter, fill                                                  bool
}

func run() int {
	var c config
	flag.StringVar(&c.imapAddr, "imap", "127.0.0.1:143", "IMAP server host:port (loopback only; plaintext)")
	flag.StringVar(&c.user, "user", "load@ipn.mx", "IMAP user (also the mailbox address)")
	flag.StringVar(&c.pass, "pass", "secret", "IMAP password")
	flag.StringVar(&c.folder, "folder", "INBOX", "folder to fill and ingest")
	flag.StringVar(&c.mode, "mode", "bulk", "bulk: fill N then time the ingestion; idle: APPEND one by one and measure latency")
	flag.IntVar(&c.n, "n", 5000, "number of messages")
	flag.IntVar(&c.size, "size", 14<<10, "approximate size of each message in bytes")
	flag.IntVar(&c.rate, "rate", 50, "idle mode: APPENDs per second")
	flag.StringVar(&c.natsURL, "nats", "", "NATS URL of a running caud; empty runs an embedded JetStream in-process")
	flag.BoolVar(&c.adapter, "adapter", false, "with --nats: also run the IMAP adapter in-process (always on without --nats)")
	flag.StringVar(&c.storeDir, "store", "", "embedded JetStream store dir (default a temporary dir)")
	flag.StringVar(&c.maildir, "maildir", "", "bulk mode: fill by writing files into this Maildir (e.g. …/mail/load) instead of APPEND")
	flag.BoolVar(&c.fill, "fill", true, "bulk mode: fill the mailbox first")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of this process (the adapter too, in-process) to the file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "imapload:", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "imapload:", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel()}))
	if err := loadtest.LoopbackAddr(c.imapAddr); err != nil {
		fmt.Fprintln(os.Stderr, "imapload:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := load(ctx, c, log); err != nil {
		fmt.Fprintln(os.Stderr, "imapload:", err)
		return 1
	}
	return 0
}

func load(ctx context.Context, c config, log *slog.Logger) error {
	var h *natsjs.Handles
	if c.natsURL == "" {
		dir := c.storeDir
		if dir == "" {
			d, err := os.MkdirTemp("", "imapload-js-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(d)
			dir = d
		}
		ns, err := natsjs.StartEmbedded(natsjs.EmbeddedOptions{StoreDir: dir, MaxStore: 20 << 30}, nil)
		if err != nil {
			return err
		}
		defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
		nc, err := natsjs.Connect(ctx, natsjs.ConnectOptions{Server: ns}, nil)
		if err != nil {
			return err
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		if h, err = natsjs.EnsureTopology(ctx, js, natsjs.Topology{}); err != nil {
			return err
		}
		c.adapter = true
	} else {
		nc, err := natsjs.Connect(ctx, natsjs.ConnectOptions{URLs: strings.Split(c.natsURL, ",")}, nil)
		if err != nil {
			return err
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		if h, err = natsjs.EnsureTopology(ctx, js, natsjs.Topology{}); err != nil {
			return err
		}
	}
	cl, err := imapclient.DialInsecure(c.imapAddr, nil)
	if err != nil {
		return fmt.Errorf("dial imap: %w", err)
	}
	defer cl.Close()
	if err := cl.Login(c.user, c.pass).Wait(); err != nil {
		return fmt.Errorf("login: %w", err)
	}
	runID := fmt.Sprintf("%d", time.Now().UnixNano())
	base, err := count(ctx, h)
	if err != nil {
		return err
	}
	startAdapter := func() (stop func(), err error) {
		if !c.adapter {
			return func() {}, nil
		}
		mb, err := imap.New(imap.Options{
			Name: "load", Address: c.user, Host: c.imapAddr, TLS: imap.TLSInsecure, Username: c.user, Password: c.pass,
			Folder: c.folder, State: h.State, Requests: h.Requests, JS: h.JS, Logger: log,
		})
		if err != nil {
			return nil, err
		}
		actx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { _ = mb.Run(actx, natsjs.NewSink(h, natsjs.SinkOptions{Logger: log})); close(done) }()
		return func() { cancel(); <-done }, nil
	}
	switch c.mode {
	case "bulk":
		if c.fill {
			t0 := time.Now()
			if c.maildir != "" {
				err = fillMaildir(c, runID)
			} else {
				err = fillAppend(cl, c, runID)
			}
			if err != nil {
				return err
			}
			fmt.Printf("filled %d messages of ~%d bytes in %v\n", c.n, c.size, time.Since(t0).Round(time.Millisecond))
		}
		t0 := time.Now()
		stop, err := startAdapter()
		if err != nil {
			return err
		}
		defer stop()
		for {
			n, err := count(ctx, h)
			if err != nil {
				return err
			}
			if n-base >= uint64(c.n) {
				d := time.Since(t0)
				fmt.Printf("bulk: %d messages in CAU_INBOUND after %v (%.0f mails/s)\n", n-base, d.Round(time.Millisecond), float64(c.n)/d.Seconds())
				return nil
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(5 * time.Millisecond):
			}
		}
	case "idle":
		return idle(ctx, c, h, cl, runID, startAdapter)
	}
	return fmt.Errorf("unknown --mode %q", c.mode)
}

func count(ctx context.Context, h *natsjs.Handles) (uint64, error) {
	info, err := h.Inbound.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}

func message(i int, size int, runID string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "From: Usuario de Prueba %d <prueba%d@ipn.mx>\r\nTo: cau@ipn.mx\r\nSubject: Solicitud de prueba %d\r\n", i, i, i)
	fmt.Fprintf(&b, "Message-ID: <load-%s-%d@ipn.mx>\r\nDate: %s\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n", runID, i, time.Now().Format(time.RFC1123Z))
	b.WriteString("Buenos días, no puedo entrar a mi correo institucional; dice contraseña incorrecta.\r\n")
	for b.Len() < size-200 {
		b.WriteString("Información adicional del equipo de cómputo y de la red del laboratorio número 3.\r\n")
	}
	b.WriteString("\r\nSaludos\r\nIng. Ana Ruiz\r\nESCOM\r\nExt. 52034\r\n")
	return []byte(b.String())
}

func fillAppend(cl *imapclient.Client, c config, runID string) error {
	// APPENDs are pipelined a window at a time: go-imap sends the next before the previous answers.
	const window = 32
	var cmds []*imapclient.AppendCommand
	flush := func() error {
		for _, cmd := range cmds {
			if _, err := cmd.Wait(); err != nil {
				return fmt.Errorf("append: %w", err)
			}
		}
		cmds = cmds[:0]
		return nil
	}
	for i := range c.n {
		raw := message(i, c.size, runID)
		cmd := cl.Append(c.folder, int64(len(raw)), nil)
		if _, err := cmd.Write(raw); err != nil {
			return err
		}
		if err := cmd.Close(); err != nil {
			return err
		}
		cmds = append(cmds, cmd)
		if len(cmds) == window {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// fillMaildir writes the messages straight into a Maildir's new/ (fastest; Dovecot indexes them
// on the next SELECT). The files must then belong to the mail user: chown them.
func fillMaildir(c config, runID string) error {
	dir := filepath.Join(c.maildir, "new")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for i := range c.n {
		name := fmt.Sprintf("%d.M%dP%d.imapload", time.Now().Unix(), i, os.Getpid())
		if err := os.WriteFile(filepath.Join(dir, name), message(i, c.size, runID), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func idle(ctx context.Context, c config, h *natsjs.Handles, cl *imapclient.Client, runID string, startAdapter func() (func(), error)) error {
	stop, err := startAdapter()
	if err != nil {
		return err
	}
	defer stop()
	time.Sleep(2 * time.Second) // let the adapter drain the folder and enter IDLE
	var mu sync.Mutex
	sent := map[string]time.Time{}
	got := map[string]time.Duration{}
	cons, err := h.Inbound.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy})
	if err != nil {
		return err
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		now := time.Now()
		var r channels.Request
		if json.Unmarshal(m.Data(), &r) != nil {
			return
		}
		mu.Lock()
		if t, ok := sent[r.Source.MessageID]; ok {
			got[r.Source.MessageID] = now.Sub(t)
		}
		mu.Unlock()
	})
	if err != nil {
		return err
	}
	defer cc.Stop()
	interval := time.Second / time.Duration(max(c.rate, 1))
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for i := range c.n {
		raw := message(i, c.size, runID)
		mid := fmt.Sprintf("<load-%s-%d@ipn.mx>", runID, i)
		mu.Lock()
		sent[mid] = time.Now()
		mu.Unlock()
		cmd := cl.Append(c.folder, int64(len(raw)), nil)
		if _, err := cmd.Write(raw); err != nil {
			return err
		}
		if err := cmd.Close(); err != nil {
			return err
		}
		if _, err := cmd.Wait(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= c.n {
			break
		}
		if time.Now().After(deadline) {
			return errors.New("timed out waiting for the last requests")
		}
		time.Sleep(10 * time.Millisecond)
	}
	var lat []time.Duration
	for _, d := range got {
		lat = append(lat, d)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	q := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	fmt.Printf("idle: %d APPENDs at %d/s; APPEND-to-published p50 %v p99 %v max %v\n",
		len(lat), c.rate, q(0.50).Round(10*time.Microsecond), q(0.99).Round(10*time.Microsecond), lat[len(lat)-1].Round(10*time.Microsecond))
	return nil
}

func logLevel() slog.Level {
	if os.Getenv("IMAPLOAD_DEBUG") != "" {
		return slog.LevelDebug
	}
	return slog.LevelWarn
}
