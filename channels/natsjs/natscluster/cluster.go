// Package natscluster runs a JetStream cluster of nats-server nodes on loopback for tests and load
// tools: in-process servers on free ports, one store directory per node, and the same security as
// the compose cluster (caud's user in account CAU, a system account, credentials on the routes).
// It writes each node's configuration file too, so a tool can run the same cluster as separate
// nats-server processes instead.
package natscluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Options sizes the cluster. Zero values are documented defaults.
type Options struct {
	// Dir holds each node's configuration file and store (required).
	Dir string
	// Nodes is the cluster size; 0 means 3.
	Nodes int
	// MaxStore and MaxMemory bound each node's JetStream; 0 means 1 GiB and 64 MiB.
	MaxStore, MaxMemory int64
	// ReadyTimeout bounds the wait for a JetStream meta leader; 0 means 30 s.
	ReadyTimeout time.Duration
	// Exec, when set, is a nats-server binary: each node runs as its own process (so that Kill is
	// a real SIGKILL), logging to <Dir>/nN.log. Empty: in-process servers.
	Exec string
}

// Cluster is a running set of nodes. Its methods are safe for concurrent use.
type Cluster struct {
	o Options
	// User and Password are caud's credentials (account CAU, JetStream enabled).
	User, Password string

	clientPorts, routePorts []int
	sysPassword, routePass  string

	mu    sync.Mutex
	nodes []*server.Server // nil while a node is down (in-process mode)
	procs []*node          // nil while a node is down (process mode)
}

// node is a nats-server process; done yields its exit.
type node struct {
	cmd  *exec.Cmd
	done chan error
}

// Start writes the configuration of every node, starts them in this process and waits until
// JetStream answers (a meta leader is elected).
func Start(o Options) (*Cluster, error) { return start(o, freePorts) }

// start is Start with the function that picks ports (tests hand it taken ones).
func start(o Options, pick func(n int) ([]int, error)) (*Cluster, error) {
	if o.Dir == "" {
		return nil, errors.New("natscluster: dir is empty")
	}
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	if o.MaxStore == 0 {
		o.MaxStore = 1 << 30
	}
	if o.MaxMemory == 0 {
		o.MaxMemory = 64 << 20
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 30 * time.Second
	}
	c := &Cluster{o: o, User: "caud", Password: secret(), sysPassword: secret(), routePass: secret(), nodes: make([]*server.Server, o.Nodes), procs: make([]*node, o.Nodes)}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("natscluster: %w", err)
	}
	// The ports are free when picked, but another process may bind one before the node does
	// (other tests run at the same time): then the whole cluster starts over on new ports.
	for attempt := 1; ; attempt++ {
		err := c.startAll(pick)
		if err == nil {
			break
		}
		c.Shutdown()
		if !errors.Is(err, errPortTaken) || attempt == maxStartAttempts {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.ReadyTimeout)
	defer cancel()
	if err := c.WaitJetStream(ctx); err != nil {
		c.Shutdown()
		return nil, err
	}
	return c, nil
}

// maxStartAttempts bounds how often Start picks new ports after one was taken.
const maxStartAttempts = 5

// errPortTaken says a node could not bind a port picked for it.
var errPortTaken = errors.New("port taken by another process")

// startAll picks free ports, writes every node's configuration with them and starts the nodes.
func (c *Cluster) startAll(pick func(n int) ([]int, error)) error {
	ports, err := pick(2 * c.o.Nodes)
	if err != nil {
		return err
	}
	c.clientPorts, c.routePorts = ports[:c.o.Nodes], ports[c.o.Nodes:]
	for i := range c.o.Nodes {
		if err := os.WriteFile(c.ConfigFile(i), []byte(c.config(i)), 0o600); err != nil {
			return fmt.Errorf("natscluster: %w", err)
		}
	}
	for i := range c.o.Nodes {
		if err := c.Restart(i); err != nil {
			return err
		}
	}
	return nil
}

// URLs are the client URLs of every node, running or not (ports stay fixed across restarts).
func (c *Cluster) URLs() []string {
	out := make([]string, len(c.clientPorts))
	for i, p := range c.clientPorts {
		out[i] = fmt.Sprintf("nats://127.0.0.1:%d", p)
	}
	return out
}

// URL is URLs joined with commas, as nats.url takes them.
func (c *Cluster) URL() string { return strings.Join(c.URLs(), ",") }

// ConfigFile is node i's nats-server configuration file.
func (c *Cluster) ConfigFile(i int) string {
	return filepath.Join(c.o.Dir, fmt.Sprintf("n%d.conf", i+1))
}

// Connect opens a client connection to the cluster as caud's user.
func (c *Cluster) Connect(opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{nats.UserInfo(c.User, c.Password), nats.MaxReconnects(-1), nats.ReconnectWait(100 * time.Millisecond)}, opts...)
	return nats.Connect(c.URL(), opts...)
}

// WaitJetStream waits until the cluster's JetStream answers an account-info request.
func (c *Cluster) WaitJetStream(ctx context.Context) error {
	nc, err := c.Connect(nats.RetryOnFailedConnect(true))
	if err != nil {
		return fmt.Errorf("natscluster: connect: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	for {
		actx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := js.AccountInfo(actx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("natscluster: jetstream not ready: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Node is node i's server, nil while it is down.
func (c *Cluster) Node(i int) *server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i]
}

// Stop shuts node i down (its raft leaderships are handed over first, as nats-server does on
// SIGTERM). It is a no-op for a node already down.
func (c *Cluster) Stop(i int) { c.stop(i, syscall.SIGTERM) }

// Kill ends node i at once: SIGKILL in process mode, leaving its peers to notice and elect new
// leaders; in-process it is Stop (a server in this process cannot be killed alone).
func (c *Cluster) Kill(i int) { c.stop(i, syscall.SIGKILL) }

func (c *Cluster) stop(i int, sig syscall.Signal) {
	c.mu.Lock()
	s, p := c.nodes[i], c.procs[i]
	c.nodes[i], c.procs[i] = nil, nil
	c.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
	if p != nil {
		_ = p.cmd.Process.Signal(sig)
		<-p.done
	}
}

// Index is the index of the node named name ("n2" → 1), -1 if none.
func (c *Cluster) Index(name string) int {
	var i int
	if _, err := fmt.Sscanf(name, "n%d", &i); err != nil || i < 1 || i > len(c.nodes) {
		return -1
	}
	return i - 1
}

// Restart starts node i again from its configuration and store; a no-op when it is running.
func (c *Cluster) Restart(i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.nodes[i] != nil || c.procs[i] != nil {
		return nil
	}
	if c.o.Exec != "" {
		return c.startProcess(i)
	}
	opts, err := server.ProcessConfigFile(c.ConfigFile(i))
	if err != nil {
		return fmt.Errorf("natscluster: node %d config: %w", i+1, err)
	}
	// The server's log is read only for a failure to bind: it is the one start-up failure that
	// a new set of ports cures.
	bind := &bindWatch{}
	opts.NoSigs, opts.NoLog = true, false
	s, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("natscluster: node %d: %w", i+1, err)
	}
	s.SetLoggerV2(bind, false, false, false)
	go s.Start()
	for deadline := time.Now().Add(10 * time.Second); !s.ReadyForConnections(50*time.Millisecond) || bind.failed() != ""; {
		if msg := bind.failed(); msg != "" {
			s.Shutdown()
			return fmt.Errorf("natscluster: node %d: %w: %s", i+1, errPortTaken, msg)
		}
		if time.Now().After(deadline) {
			s.Shutdown()
			return fmt.Errorf("natscluster: node %d not ready on ports %d and %d", i+1, c.clientPorts[i], c.routePorts[i])
		}
	}
	c.nodes[i] = s
	return nil
}

// bindWatch is a nats-server logger that keeps only a failure to listen on a port.
type bindWatch struct {
	mu  sync.Mutex
	msg string
}

func (b *bindWatch) failed() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.msg
}

func (b *bindWatch) Fatalf(format string, v ...any) {
	if msg := fmt.Sprintf(format, v...); strings.Contains(msg, "listening") {
		b.mu.Lock()
		b.msg = msg
		b.mu.Unlock()
	}
}
func (b *bindWatch) Noticef(string, ...any) {}
func (b *bindWatch) Warnf(string, ...any)   {}
func (b *bindWatch) Errorf(string, ...any)  {}
func (b *bindWatch) Debugf(string, ...any)  {}
func (b *bindWatch) Tracef(string, ...any)  {}

// startProcess runs node i as a nats-server process and waits until its client port answers.
func (c *Cluster) startProcess(i int) error {
	logf, err := os.OpenFile(filepath.Join(c.o.Dir, fmt.Sprintf("n%d.log", i+1)), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("natscluster: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(c.o.Exec, "-c", c.ConfigFile(i))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("natscluster: node %d: %w", i+1, err)
	}
	p := &node{cmd: cmd, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	addr := fmt.Sprintf("127.0.0.1:%d", c.clientPorts[i])
	for deadline := time.Now().Add(10 * time.Second); ; {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = conn.Close()
			break
		}
		select {
		case err := <-p.done:
			// nats-server exits when it cannot listen; its log says so.
			b, _ := os.ReadFile(logf.Name())
			if strings.Contains(string(b), "address already in use") {
				return fmt.Errorf("natscluster: node %d: %w (%v)", i+1, errPortTaken, err)
			}
			return fmt.Errorf("natscluster: node %d exited at start: %v (see %s)", i+1, err, logf.Name())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-p.done
			return fmt.Errorf("natscluster: node %d not listening on %s", i+1, addr)
		}
	}
	c.procs[i] = p
	return nil
}

// Shutdown stops every node.
func (c *Cluster) Shutdown() {
	for i := range c.nodes {
		c.Stop(i)
	}
}

// config is node i's configuration in nats-server syntax, shaped like config/compose/nats.conf.
func (c *Cluster) config(i int) string {
	var routes []string
	for j, p := range c.routePorts {
		if j != i {
			routes = append(routes, fmt.Sprintf("%q", fmt.Sprintf("nats-route://route:%s@127.0.0.1:%d", c.routePass, p)))
		}
	}
	return fmt.Sprintf(`server_name: "n%d"
listen: "127.0.0.1:%d"
max_payload: 8MB
jetstream {
  store_dir: %q
  max_memory_store: %d
  max_file_store: %d
}
accounts {
  CAU: { jetstream: enabled, users: [ { user: %q, password: %q } ] }
  SYS: { users: [ { user: "sys", password: %q } ] }
}
system_account: SYS
cluster {
  name: "cau"
  listen: "127.0.0.1:%d"
  authorization { user: "route", password: %q }
  routes: [ %s ]
}
`, i+1, c.clientPorts[i], filepath.Join(c.o.Dir, fmt.Sprintf("n%d", i+1)), c.o.MaxMemory, c.o.MaxStore,
		c.User, c.Password, c.sysPassword, c.routePorts[i], c.routePass, strings.Join(routes, ", "))
}

func secret() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// freePorts asks the kernel for n free loopback ports. They are released before the servers bind
// them; Start starts over on new ones when another process took one in between.
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("natscluster: free port: %w", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
