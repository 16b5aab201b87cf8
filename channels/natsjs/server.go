// Package natsjs connects caud to NATS JetStream: it runs the embedded server, dials an external
// cluster, creates the topology (topology.go) and implements channels.Sink on top of it.
package natsjs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/retry"
)

// EmbeddedOptions configures the in-process nats-server. Zero values are documented defaults.
type EmbeddedOptions struct {
	// Listen is the client address ("127.0.0.1:4222") so the standard nats CLI can look in;
	// "" keeps the server in-process only (no TCP port).
	Listen string
	// StoreDir is where JetStream keeps its file store (required).
	StoreDir string
	// MaxMemory and MaxStore bound JetStream; 0 means 256 MiB and 10 GiB.
	MaxMemory int64
	MaxStore  int64
	// ReadyTimeout bounds the wait for the server to accept connections; 0 means 10 s.
	ReadyTimeout time.Duration
	// Token, when set, is required from every client (in-process ones too); "" means none.
	Token string
	// Guard, when set, watches the server's store and restarts JetStream after a full disk once
	// space returns (run its Run); nil means none.
	Guard *StoreGuard
}

// StartEmbedded starts a nats-server with JetStream in this process. It never installs signal
// handlers (NoSigs), so it cannot exit the process. Stop it with Shutdown and WaitForShutdown.
func StartEmbedded(o EmbeddedOptions, log *slog.Logger) (*server.Server, error) {
	if o.StoreDir == "" {
		return nil, errors.New("embedded nats: store dir is empty")
	}
	if o.MaxMemory == 0 {
		o.MaxMemory = 256 << 20
	}
	if o.MaxStore == 0 {
		o.MaxStore = 10 << 30
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 10 * time.Second
	}
	// What usually keeps the server from starting is found here at once, with the real OS error,
	// instead of after ReadyTimeout with a guess.
	if err := checkWritable(o.StoreDir); err != nil {
		return nil, fmt.Errorf("embedded nats: store dir: %w", err)
	}
	if o.Listen != "" {
		if _, port, err := net.SplitHostPort(o.Listen); err == nil && port != "0" && port != "-1" { // 0 and -1: a random port
			l, err := net.Listen("tcp", o.Listen)
			if err != nil {
				return nil, fmt.Errorf("embedded nats: listen on %s: %w (set nats.embedded.listen to another address, or \"\" for in-process only)", o.Listen, err)
			}
			_ = l.Close()
		}
	}
	opts := &server.Options{
		ServerName:         "caud-embedded",
		JetStream:          true,
		StoreDir:           o.StoreDir,
		JetStreamMaxMemory: o.MaxMemory,
		JetStreamMaxStore:  o.MaxStore,
		NoSigs:             true,
		NoLog:              log == nil && o.Guard == nil,
		MaxPayload:         8 << 20,
		Authorization:      o.Token,
	}
	if o.Listen == "" {
		opts.DontListen = true
	} else {
		host, port, err := net.SplitHostPort(o.Listen)
		if err != nil {
			return nil, fmt.Errorf("embedded nats: listen %q: %w", o.Listen, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return nil, fmt.Errorf("embedded nats: listen port %q: %w", port, err)
		}
		opts.Host, opts.Port = host, p
		if p == 0 {
			opts.Port = server.RANDOM_PORT
		}
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	if log != nil || o.Guard != nil {
		sl := serverLog{log: channels.OrDiscard(log).With("component", "nats-server")}
		if o.Guard != nil {
			sl.line = o.Guard.serverLine
			o.Guard.attach(ns, opts)
		}
		ns.SetLoggerV2(sl, false, false, false)
	}
	go ns.Start()
	if !ns.ReadyForConnections(o.ReadyTimeout) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded nats: not ready within %s (the nats-server lines above say why)", o.ReadyTimeout)
	}
	if log != nil {
		if o.Listen != "" {
			log.Info("embedded nats started", "client_url", ns.ClientURL(), "store_dir", o.StoreDir, "auth", o.Token != "")
		} else {
			log.Info("embedded nats started in-process only", "store_dir", o.StoreDir)
		}
	}
	return ns, nil
}

// checkWritable creates dir if needed and proves a file can be created in it.
func checkWritable(dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".write-check-")
	if err != nil {
		return err
	}
	name := f.Name()
	_ = f.Close()
	return os.Remove(name)
}

// ConnURL says how nc reaches NATS, for logs and /readyz: the server's URL, or for an in-process
// connection to the embedded server "in-process" and the address other clients use (the client's
// own URL would be the library's default, not a real listener).
func ConnURL(nc *nats.Conn, embedded *server.Server) string {
	if embedded == nil {
		return nc.ConnectedUrlRedacted()
	}
	if embedded.Addr() == nil {
		return "in-process (embedded server, no listener)"
	}
	return "in-process (embedded server; other clients: " + embedded.ClientURL() + ")"
}

// ConnectOptions configures the client connection. Zero values are documented defaults.
type ConnectOptions struct {
	// URLs of an external server or cluster; ignored when Server is set.
	URLs []string
	// Server is an embedded server to connect to in-process (no TCP).
	Server *server.Server
	// Name is the client name shown in server monitoring; "" means "caud".
	Name string
	// Auth; at most one of CredsFile, User/Password, Token (the embedded server's token applies
	// to the in-process connection too).
	CredsFile, User, Password, Token string
	// TLS files for an external server; CAFile alone enables TLS with that root.
	CAFile, CertFile, KeyFile string
	// Timeout bounds the first connection attempt; 0 means 5 s.
	Timeout time.Duration
	// OnStateChange is called with "connected", "disconnected", "reconnected", "closed", or
	// "connect failed" after each failed first attempt (with its error).
	OnStateChange func(state string, err error)
}

// Connect dials NATS and keeps reconnecting forever: a lost connection is logged and retried, never
// given up silently. For an external server the first attempt is retried too until ctx ends.
func Connect(ctx context.Context, o ConnectOptions, log *slog.Logger) (*nats.Conn, error) {
	if o.Name == "" {
		o.Name = "caud"
	}
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Second
	}
	log = channels.OrDiscard(log)
	notify := func(state string, err error) {
		if o.OnStateChange != nil {
			o.OnStateChange(state, err)
		}
	}
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.Timeout(o.Timeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		nats.ReconnectBufSize(64 << 20),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if err == nil && nc.IsClosed() {
				log.Debug("nats connection closed") // our own Close at stop: nothing to look into
			} else {
				log.Warn("nats disconnected", "err", err)
			}
			notify("disconnected", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", "url", ConnURL(nc, o.Server))
			notify("reconnected", nil)
		}),
		nats.ClosedHandler(func(_ *nats.Conn) { notify("closed", nil) }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			log.Error("nats async error", "subject", subj, "err", err)
		}),
	}
	url := ""
	if o.Server != nil {
		opts = append(opts, nats.InProcessServer(o.Server))
		if o.Token != "" {
			opts = append(opts, nats.Token(o.Token))
		}
	} else {
		if len(o.URLs) == 0 {
			return nil, errors.New("connect nats: no url")
		}
		for i, u := range o.URLs {
			if i > 0 {
				url += ","
			}
			url += u
		}
		switch {
		case o.CredsFile != "":
			opts = append(opts, nats.UserCredentials(o.CredsFile))
		case o.User != "":
			opts = append(opts, nats.UserInfo(o.User, o.Password))
		case o.Token != "":
			opts = append(opts, nats.Token(o.Token))
		}
		if o.CAFile != "" {
			opts = append(opts, nats.RootCAs(o.CAFile))
		}
		if o.CertFile != "" {
			opts = append(opts, nats.ClientCert(o.CertFile, o.KeyFile))
		}
	}
	nc, err := retry.Do(ctx, retry.Policy{Initial: 250 * time.Millisecond, Max: 10 * time.Second, Jitter: 0.2}, func(context.Context) (*nats.Conn, error) {
		nc, err := nats.Connect(url, opts...)
		if err != nil && o.Server != nil {
			return nil, fmt.Errorf("%w: connect embedded nats: %w", retry.ErrPermanent, err)
		}
		return nc, err
	}, func(_ int, err error, wait time.Duration) {
		log.Warn("nats connect failed, retrying", "url", url, "err", err, "in", wait)
		notify("connect failed", err)
	})
	if err != nil {
		return nil, fmt.Errorf("connect nats %s: %w", url, err)
	}
	log.Info("nats connected", "url", ConnURL(nc, o.Server))
	notify("connected", nil)
	return nc, nil
}

// LoadOrCreateToken returns the client token kept in path, creating the file (mode 0600, a random
// 256-bit token in hex) when it does not exist. A token file readable by others is refused: anyone
// holding the token can read every request and inject new ones.
func LoadOrCreateToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		raw := make([]byte, 32)
		if _, err := rand.Read(raw); err != nil {
			return "", fmt.Errorf("nats token: %w", err)
		}
		tok := hex.EncodeToString(raw)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return "", fmt.Errorf("nats token: %w", err)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			return LoadOrCreateToken(path) // another process created it first
		}
		if err != nil {
			return "", fmt.Errorf("nats token: %w", err)
		}
		_, werr := f.WriteString(tok + "\n")
		if err := errors.Join(werr, f.Close()); err != nil {
			return "", fmt.Errorf("nats token: %w", err)
		}
		return tok, nil
	}
	if err != nil {
		return "", fmt.Errorf("nats token: %w", err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("nats token: %s is readable by other users (mode %s): chmod 600 it", path, fi.Mode().Perm())
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < 16 {
		return "", fmt.Errorf("nats token: %s holds fewer than 16 characters", path)
	}
	return tok, nil
}
