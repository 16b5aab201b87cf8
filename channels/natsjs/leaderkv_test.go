package natsjs_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/channels/natsjs/natstest"
)

// On three nodes a key created through one node is read at once through another: the index and
// lease reads go to the stream leader. The library's direct get, served by any replica, is counted
// for comparison (it misses some: the stale reads of issue 13).
func TestLeaderReadsSeeWritesOnR3(t *testing.T) {
	c := startCluster(t)
	urls := c.URLs()
	ctx := context.Background()
	// Write through the bucket's stream leader and read through a follower, where staleness shows.
	probe := natstest.OnNode(t, c, 0, natsjs.Topology{Replicas: 3}).Handles
	writer, reader := 0, 1
	for range 50 {
		info, err := probe.JS.Stream(ctx, "KV_"+natsjs.KVRequests)
		if err == nil && info.CachedInfo().Cluster != nil && info.CachedInfo().Cluster.Leader != "" {
			for i := range urls {
				if n := c.Node(i); n != nil && n.Name() == info.CachedInfo().Cluster.Leader {
					writer, reader = i, (i+1)%len(urls)
				}
			}
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	w, r := natstest.OnNode(t, c, writer, natsjs.Topology{Replicas: 3}).Handles, natstest.OnNode(t, c, reader, natsjs.Topology{Replicas: 3}).Handles
	direct, err := r.JS.KeyValue(ctx, natsjs.KVRequests)
	if err != nil {
		t.Fatal(err)
	}
	// Sixteen clients at once, so the followers have something to catch up on.
	const n, par = 800, 16
	var mu sync.Mutex
	leaderMisses, directMisses := 0, 0
	var wg sync.WaitGroup
	for g := range par {
		wg.Go(func() {
			for i := g; i < n; i += par {
				key := fmt.Sprintf("test.leader-read-%d", i)
				rev, err := w.Requests.Create(ctx, key, []byte("v"))
				if err != nil {
					t.Error(err)
					return
				}
				_, derr := direct.Get(ctx, key)
				e, err := r.Requests.Get(ctx, key)
				mu.Lock()
				if errors.Is(derr, jetstream.ErrKeyNotFound) {
					directMisses++
				}
				if errors.Is(err, jetstream.ErrKeyNotFound) {
					leaderMisses++
				}
				mu.Unlock()
				if err == nil && (e.Revision() != rev || string(e.Value()) != "v" || e.Key() != key) {
					t.Errorf("read %s rev %d %q, wrote rev %d", e.Key(), e.Revision(), e.Value(), rev)
				} else if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	t.Logf("R3, create through the leader's node then read through a follower's at once, %d keys: leader reads missed %d, direct gets missed %d", n, leaderMisses, directMisses)
	if leaderMisses != 0 {
		t.Fatalf("leader reads missed %d of %d fresh writes", leaderMisses, n)
	}
}

// The leader read follows the library's semantics: absent, deleted and invalid keys, revisions.
func TestLeaderReadsSemantics(t *testing.T) {
	env := natstest.Start(t, natsjs.Topology{})
	ctx := context.Background()
	kv := env.Requests
	if _, err := kv.Get(ctx, "absent"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("absent: %v", err)
	}
	if _, err := kv.Get(ctx, "bad key"); !errors.Is(err, jetstream.ErrInvalidKey) {
		t.Fatalf("invalid: %v", err)
	}
	r1, _ := kv.Put(ctx, "k", []byte("one"))
	r2, _ := kv.Put(ctx, "k", []byte("two"))
	if e, err := kv.Get(ctx, "k"); err != nil || string(e.Value()) != "two" || e.Revision() != r2 || e.Operation() != jetstream.KeyValuePut {
		t.Fatalf("latest: %v %v", e, err)
	}
	// The buckets keep one revision: the older one is gone, the latest is there by revision too.
	if _, err := kv.GetRevision(ctx, "k", r1); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("replaced revision: %v", err)
	}
	if e, err := kv.GetRevision(ctx, "k", r2); err != nil || string(e.Value()) != "two" {
		t.Fatalf("revision: %v %v", e, err)
	}
	if _, err := kv.GetRevision(ctx, "other", r2); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("revision of another key: %v", err)
	}
	if err := kv.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(ctx, "k"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("deleted: %v", err)
	}
	if _, err := kv.Create(ctx, "k", []byte("again")); err != nil {
		t.Fatalf("create after delete: %v", err)
	}
}
