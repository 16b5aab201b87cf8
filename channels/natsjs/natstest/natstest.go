// Package natstest starts a real nats-server with JetStream for tests: in-process, file store under
// t.TempDir(), the full caud topology created.
package natstest

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/channels/natsjs/natscluster"
)

// Env is a running server, a connection and the topology.
type Env struct {
	Server *server.Server
	Conn   *nats.Conn
	*natsjs.Handles
}

// Start runs an embedded JetStream server and creates the topology; everything stops at cleanup.
func Start(t testing.TB, topo natsjs.Topology) *Env {
	t.Helper()
	return StartWith(t, natsjs.EmbeddedOptions{}, nil, topo)
}

// StartWith is Start with the embedded server's options (StoreDir is a temporary directory when
// empty) and a logger that receives the server's own log (nil: none).
func StartWith(t testing.TB, eo natsjs.EmbeddedOptions, log *slog.Logger, topo natsjs.Topology) *Env {
	t.Helper()
	if eo.StoreDir == "" {
		eo.StoreDir = t.TempDir()
	}
	ns, err := natsjs.StartEmbedded(eo, log)
	if err != nil {
		t.Fatalf("start nats: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	nc, err := natsjs.Connect(ctx, natsjs.ConnectOptions{Server: ns}, nil)
	if err != nil {
		ns.Shutdown()
		t.Fatalf("connect nats: %v", err)
	}
	t.Cleanup(func() {
		nc.Close()
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	h, err := natsjs.EnsureTopology(ctx, js, topo)
	if err != nil {
		t.Fatalf("topology: %v", err)
	}
	return &Env{Server: ns, Conn: nc, Handles: h}
}

// StartCluster runs a JetStream cluster of three in-process nodes on loopback; it stops at cleanup.
func StartCluster(t testing.TB) *natscluster.Cluster {
	t.Helper()
	c, err := natscluster.Start(natscluster.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Shutdown)
	return c
}

// OnNode is what a caud replica connected to node i of c has: a connection to that node only and
// the topology's handles (EnsureTopology run through it). Env.Server is nil.
func OnNode(t testing.TB, c *natscluster.Cluster, i int, topo natsjs.Topology) *Env {
	t.Helper()
	nc, err := nats.Connect(c.URLs()[i], nats.UserInfo(c.User, c.Password))
	if err != nil {
		t.Fatalf("connect node %d: %v", i, err)
	}
	return onConn(t, nc, topo)
}

// OnCluster is what a caud replica configured with every node of c has: a connection that
// reconnects to another node when its node goes away, and the topology's handles.
func OnCluster(t testing.TB, c *natscluster.Cluster, topo natsjs.Topology) *Env {
	t.Helper()
	nc, err := c.Connect()
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	return onConn(t, nc, topo)
}

func onConn(t testing.TB, nc *nats.Conn, topo natsjs.Topology) *Env {
	t.Helper()
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	h, err := natsjs.EnsureTopology(ctx, js, topo)
	if err != nil {
		t.Fatalf("topology through %s: %v", nc.ConnectedUrlRedacted(), err)
	}
	return &Env{Conn: nc, Handles: h}
}

// AwaitDuplicateWindow returns once stream s has forgotten every Nats-Msg-Id published to it before
// the call (its duplicate window has passed for them): it publishes a canary with an id of its own
// on subject (one of s's subjects), publishes it again until JetStream no longer calls it a
// duplicate, and deletes both copies, so the stream holds what it held.
func AwaitDuplicateWindow(t testing.TB, js jetstream.JetStream, s jetstream.Stream, subject string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id := "canary:" + nuid.Next()
	first, err := js.Publish(ctx, subject, []byte("canary"), jetstream.WithMsgID(id))
	if err != nil {
		t.Fatalf("canary: %v", err)
	}
	for {
		ack, err := js.Publish(ctx, subject, []byte("canary"), jetstream.WithMsgID(id))
		if err != nil {
			t.Fatalf("canary: %v", err)
		}
		if !ack.Duplicate {
			for _, seq := range []uint64{first.Sequence, ack.Sequence} {
				if err := s.DeleteMsg(ctx, seq); err != nil {
					t.Fatalf("delete canary %d: %v", seq, err)
				}
			}
			return
		}
		time.Sleep(20 * time.Millisecond) // poll interval of the condition above
	}
}
