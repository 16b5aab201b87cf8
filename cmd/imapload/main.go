// Command imapload measures the IMAP channel: it fills a mailbox on a loopback IMAP server with N
// messages and measures how long caud's adapter takes until all N are in CAU_INBOUND (bulk), or
// the APPEND-to-published latency while the adapter idles (idle: p50 / p99).
//
// By default it runs the adapter itself, in-process, against an embedded JetStream (no caud
// needed). With --nats it connects to a running caud's NATS instead and only watches CAU_INBOUND
// (add --adapter to still run the adapter in-process against that NATS).
//
//	imapload --imap 127.0.0.1:11143 --user load@ipn.mx --pass secret --n 5000 --mode bulk
//	imapload --imap 127.0.0.1:11143 --user lat@ipn.mx --pass secret --n 60 --mode idle --rate 1
//	imapload --imap 127.0.0.1:11143 --pass secret --mode compare --mail-root /srv/mail --mail-owner vmail: --n 5000
//
// idle mode reports, per APPEND, when caud's own connection and a bare IDLE client each read the
// server's EXISTS, and when the triaged item reached CAU_TRIAGED (the triage worker runs in-process
// without --nats): caud's share is its EXISTS → triaged. compare mode times caud against mbsync
// (Debian isync) on the same server in interleaved rounds. Attachment reading is on, as in caud,
// unless --attachments=false.
package main

import (
	"context"
	"encoding/base64"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ipn-cgsi/caud/channels/imap"
	"github.com/ipn-cgsi/caud/channels/memo"
	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/cmd/internal/loadtest"
)

func main() { os.Exit(run()) }

type config struct {
	imapAddr, user, pass, folder, mode, natsURL, storeDir, maildir string
	n, size, rate                                                  int
	adapter, fill                                                  bool
	// attachments turns attachment reading on (memo.Reader), as caud runs by default.
	attachments bool
	// mbsync, mailRoot, rounds: compare mode (see compare.go).
	mbsync, mailRoot, mailOwner string
	rounds, workers             int
	// attach is a file attached to every attachEvery-th message (a scanned oficio, a PDF).
	attach      []byte
	attachName  string
	attachEvery int
}

func run() int {
	var c config
	flag.StringVar(&c.imapAddr, "imap", "127.0.0.1:143", "IMAP server host:port (loopback only; plaintext)")
	flag.StringVar(&c.user, "user", "load@ipn.mx", "IMAP user (also the mailbox address)")
	flag.StringVar(&c.pass, "pass", "secret", "IMAP password")
	flag.StringVar(&c.folder, "folder", "INBOX", "folder to fill and ingest")
	flag.StringVar(&c.mode, "mode", "bulk", "bulk: fill N then time the ingestion; idle: APPEND one by one and measure latency; compare: caud against mbsync on the same server")
	flag.IntVar(&c.n, "n", 5000, "number of messages")
	flag.IntVar(&c.size, "size", 14<<10, "approximate size of each message in bytes")
	flag.IntVar(&c.rate, "rate", 50, "idle mode: APPENDs per second")
	flag.StringVar(&c.natsURL, "nats", "", "NATS URL of a running caud; empty runs an embedded JetStream in-process")
	flag.BoolVar(&c.adapter, "adapter", false, "with --nats: also run the IMAP adapter in-process (always on without --nats)")
	flag.StringVar(&c.storeDir, "store", "", "embedded JetStream store dir (default a temporary dir)")
	flag.StringVar(&c.maildir, "maildir", "", "bulk mode: fill by writing files into this Maildir (e.g. …/mail/load) instead of APPEND")
	flag.BoolVar(&c.fill, "fill", true, "bulk mode: fill the mailbox first")
	flag.BoolVar(&c.attachments, "attachments", true, "read PDF and image attachments (pdftotext, tesseract) as caud does by default")
	flag.StringVar(&c.mbsync, "mbsync", "mbsync", "compare mode: the mbsync binary (Debian isync)")
	flag.StringVar(&c.mailRoot, "mail-root", "", "compare mode: the Dovecot mail root holding one Maildir per user (mail_location maildir:<root>/%n)")
	flag.StringVar(&c.mailOwner, "mail-owner", "", "compare mode: user:group the Maildir files must belong to (Dovecot's mail_uid)")
	flag.IntVar(&c.workers, "workers", 0, "adapter's concurrent messages per batch (0: the adapter's default)")
	flag.IntVar(&c.rounds, "rounds", 3, "compare mode: interleaved rounds of caud and mbsync")
	attach := flag.String("attach", "", "a file (scan, PDF) to attach to every --attach-every-th message")
	flag.IntVar(&c.attachEvery, "attach-every", 10, "with --attach: attach it to message 0, N, 2N, …")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of this process (the adapter too, in-process) to the file")
	flag.Parse()
	if *attach != "" {
		b, err := os.ReadFile(*attach)
		if err != nil {
			fmt.Fprintln(os.Stderr, "imapload:", err)
			return 2
		}
		c.attach, c.attachName = b, filepath.Base(*attach)
	}
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
	inProcess := c.natsURL == ""
	copts := natsjs.ConnectOptions{URLs: strings.Split(c.natsURL, ",")}
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
		copts = natsjs.ConnectOptions{Server: ns}
		c.adapter = true
	}
	nc, err := natsjs.Connect(ctx, copts, nil)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if h, err = natsjs.EnsureTopology(ctx, js, natsjs.Topology{}); err != nil {
		return err
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
	startAdapter := func(dial func(context.Context, string, string) (net.Conn, error)) (stop func(), err error) {
		if !c.adapter {
			return func() {}, nil
		}
		o, err := adapterOptions(ctx, c, h, log, c.user, "load")
		if err != nil {
			return nil, err
		}
		o.Dial = dial
		mb, err := imap.New(o)
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
		stop, err := startAdapter(nil)
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
		return idle(ctx, c, h, nc, cl, runID, startAdapter, inProcess)
	case "compare":
		return compare(ctx, c, h, log)
	}
	return fmt.Errorf("unknown --mode %q", c.mode)
}

// adapterOptions are the IMAP adapter's options for user, as caud sets them (attachment reading
// on unless --attachments=false).
func adapterOptions(ctx context.Context, c config, h *natsjs.Handles, log *slog.Logger, user, name string) (imap.Options, error) {
	o := imap.Options{
		Name: name, Address: user, Host: c.imapAddr, TLS: imap.TLSInsecure, Username: user, Password: c.pass,
		Folder: c.folder, State: h.State, Requests: h.Requests, JS: h.JS, Logger: log, Workers: c.workers,
	}
	if c.attachments {
		r, err := memo.NewReader(ctx, memo.ReaderOptions{})
		if err != nil {
			return o, err
		}
		if m := r.Missing(); len(m) > 0 {
			return o, fmt.Errorf("attachment reading on, but tools are missing: %v (or --attachments=false)", m)
		}
		o.Attachments = r
	}
	return o, nil
}

func count(ctx context.Context, h *natsjs.Handles) (uint64, error) {
	info, err := h.Inbound.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}

// attached reports whether message i carries c.attach.
func (c config) attached(i int) bool { return c.attach != nil && i%max(c.attachEvery, 1) == 0 }

// message is load message i; with c.attach on its turn, the file is attached (multipart/mixed).
func (c config) message(i int, runID string) []byte {
	raw := message(i, c.size, runID)
	if !c.attached(i) {
		return raw
	}
	head, body, _ := strings.Cut(string(raw), "\r\n\r\n")
	head = strings.Replace(head, "Content-Type: text/plain; charset=utf-8", `Content-Type: multipart/mixed; boundary="imapload"`, 1)
	enc := base64.StdEncoding.EncodeToString(c.attach)
	var b strings.Builder
	b.WriteString(head + "\r\n\r\n--imapload\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + body)
	b.WriteString("\r\n--imapload\r\nContent-Type: application/octet-stream; name=\"" + c.attachName + "\"\r\n")
	b.WriteString("Content-Disposition: attachment; filename=\"" + c.attachName + "\"\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n--imapload--\r\n")
	return []byte(b.String())
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
		raw := c.message(i, runID)
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
		if err := os.WriteFile(filepath.Join(dir, name), c.message(i, runID), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func logLevel() slog.Level {
	if os.Getenv("IMAPLOAD_DEBUG") != "" {
		return slog.LevelDebug
	}
	return slog.LevelWarn
}
