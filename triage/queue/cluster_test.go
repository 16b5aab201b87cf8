package queue_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/channels/natsjs/natstest"
	"github.com/ipn-cgsi/caud/triage"
	"github.com/ipn-cgsi/caud/triage/queue"
)

// On three nodes (R3), an agent claims through one replica and finishes at once through another,
// 300 times: every done succeeds (no false 410) and every request ends "done".
func TestClaimThenDoneOnAnotherReplicaOnR3(t *testing.T) {
	c := natstest.StartCluster(t)
	ctx := context.Background()
	var qs []*queue.Queues
	var hs []*natsjs.Handles
	for _, node := range []int{0, 2} {
		env := natstest.OnNode(t, c, node, natsjs.Topology{Replicas: 3})
		q, err := queue.New(ctx, env.Handles, env.Conn, queue.Options{Lease: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		qs, hs = append(qs, q), append(hs, env.Handles)
	}
	const n = 300
	ids := channels.NewIDs()
	var want []string
	for range n {
		now := time.Now().UTC()
		id := ids.New(now)
		b, _ := json.Marshal(triage.Item{Request: channels.Request{ID: id, Channel: "phone", ReceivedAt: now, Text: "x"},
			Triage: triage.Triage{Outcome: "sai"}, TriagedAt: now})
		m := nats.NewMsg(natsjs.SubjectTriagedPrefix + "sai")
		m.Data = b
		m.Header.Set(jetstream.MsgIDHeader, "triaged:"+id)
		ack, err := hs[0].JS.PublishMsg(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		// The worker's entry, pipelined as the worker writes it: it may land after the claim.
		if _, err := hs[0].JS.PublishMsgAsync(natsjs.StateMsg(id, natsjs.RequestState{State: natsjs.StateQueued, Queue: "sai", TriagedSeq: ack.Sequence})); err != nil {
			t.Fatal(err)
		}
		want = append(want, id)
	}
	failures := map[string]int{}
	for range n {
		cl, err := qs[0].Claim(ctx, "sai", "ana")
		if err != nil || cl == nil {
			t.Fatalf("claim: %v %v", cl, err)
		}
		if err := qs[1].Done(ctx, cl.Lease, "SAI-1", ""); err != nil {
			switch {
			case errors.Is(err, queue.ErrLeaseExpired):
				failures["410"]++
			case errors.Is(err, queue.ErrLeaseUnknown):
				failures["404"]++
			default:
				failures[err.Error()]++
			}
		}
	}
	states := map[string]int{}
	for _, id := range want {
		v, err := qs[1].Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		states[v.State]++
	}
	t.Logf("R3, claim on node 1 then done on node 3 at once, %d items: failed dones %v, final states %v", n, failures, states)
	if len(failures) != 0 || states[natsjs.StateDone] != n {
		t.Fatalf("failed dones %v, states %v", failures, states)
	}
	if s := stat(t, qs[1], "sai"); s.Pending != 0 || s.InProgress != 0 {
		t.Fatalf("after all done: %+v", s)
	}
}
