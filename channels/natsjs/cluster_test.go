package natsjs_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/channels/natsjs/natscluster"
	"github.com/ipn-cgsi/caud/channels/natsjs/natstest"
)

func startCluster(t *testing.T) *natscluster.Cluster { return natstest.StartCluster(t) }

// raceTopology runs EnsureTopology from n clients released at the same moment; every one must
// succeed.
func raceTopology(t *testing.T, n int, dial func(i int) *nats.Conn, topo natsjs.Topology) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	start := make(chan struct{})
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		js, err := jetstream.New(dial(i))
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			<-start
			_, errs[i] = natsjs.EnsureTopology(ctx, js, topo)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("replica %d: %v", i, err)
		}
	}
}

// Eight replicas set the R3 topology up at the same moment, each through a different node.
func TestEnsureTopologyRacesOnACluster(t *testing.T) {
	c := startCluster(t)
	urls := c.URLs()
	raceTopology(t, 8, func(i int) *nats.Conn {
		nc, err := nats.Connect(urls[i%len(urls)], nats.UserInfo(c.User, c.Password))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}, natsjs.Topology{Replicas: 3})
	nc, _ := c.Connect()
	defer nc.Close()
	js, _ := jetstream.New(nc)
	info, err := js.Stream(context.Background(), natsjs.StreamInbound)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.CachedInfo().Config.Replicas; got != 3 {
		t.Fatalf("CAU_INBOUND replicas = %d, want 3", got)
	}
}

// The same on a single server: the first create wins, the others see an identical stream.
func TestEnsureTopologyRacesOnOneServer(t *testing.T) {
	env := natstest.Start(t, natsjs.Topology{Retention: 48 * time.Hour})
	raceTopology(t, 8, func(int) *nats.Conn {
		nc, err := nats.Connect("", nats.InProcessServer(env.Server))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}, natsjs.Topology{})
	info, err := env.Inbound.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.MaxAge != 90*24*time.Hour {
		t.Fatalf("retention = %s, want the raced 90 days", info.Config.MaxAge)
	}
}

// Settings caud does not manage (here a max_bytes an operator set) survive a start; a setting it
// manages is brought back.
func TestEnsureTopologyUpdatesOnlyWhatDiffers(t *testing.T) {
	env := natstest.Start(t, natsjs.Topology{})
	ctx := context.Background()
	cfg := env.Inbound.CachedInfo().Config
	cfg.MaxBytes = 1 << 30
	cfg.MaxAge = time.Hour
	if _, err := env.JS.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := natsjs.EnsureTopology(ctx, env.JS, natsjs.Topology{}); err != nil {
		t.Fatal(err)
	}
	info, err := env.Inbound.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.MaxBytes != 1<<30 || info.Config.MaxAge != 90*24*time.Hour {
		t.Fatalf("max_bytes %d max_age %s, want 1 GiB kept and 90 days restored", info.Config.MaxBytes, info.Config.MaxAge)
	}
}

// With two nodes of three down there is no quorum: the set-up says why and keeps trying, and
// completes by itself once the nodes are back.
func TestEnsureTopologyWaitsForQuorum(t *testing.T) {
	c := startCluster(t)
	c.Stop(1)
	c.Stop(2)
	nc, err := nats.Connect(c.URLs()[0], nats.UserInfo(c.User, c.Password))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	var waits atomic.Int32
	waited := make(chan struct{})
	done := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	go func() {
		_, err := natsjs.EnsureTopology(ctx, js, natsjs.Topology{Replicas: 3, AttemptTimeout: 2 * time.Second, OnWait: func(string, error) {
			if waits.Add(1) == 1 {
				close(waited)
			}
		}})
		done <- err
	}()
	select {
	case <-waited:
	case err := <-done:
		t.Fatalf("set-up ended without a quorum: %v", err)
	}
	for _, i := range []int{1, 2} {
		if err := c.Restart(i); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("after the quorum came back: %v", err)
	}
}

// A bad configuration is not retried forever.
func TestEnsureTopologyFailsAtOnceOnAnInvalidConfig(t *testing.T) {
	env := natstest.Start(t, natsjs.Topology{})
	// A stream of someone else's takes caud's subject.
	if err := env.JS.DeleteStream(context.Background(), natsjs.StreamCorrections); err != nil {
		t.Fatal(err)
	}
	if _, err := env.JS.CreateStream(context.Background(), jetstream.StreamConfig{Name: "THIEF", Subjects: []string{natsjs.SubjectCorrections}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := natsjs.EnsureTopology(ctx, env.JS, natsjs.Topology{})
	if !errors.Is(err, natsjs.ErrTopology) {
		t.Fatalf("err = %v, want ErrTopology", err)
	}
}
