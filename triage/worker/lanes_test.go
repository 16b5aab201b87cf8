package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/channels/natsjs/natstest"
	"github.com/ipn-cgsi/caud/triage/worker"
)

// A request that reached CAU_INBOUND twice, once directly and once through the spare lane, with
// Nats-Msg-Ids JetStream cannot match (the second copy arrived after the duplicate window), is
// triaged once: both copies at the same moment on two worker replicas, and a later spare copy
// of an already triaged request is only acknowledged (the index decides).
func TestRequestInBothLanesIsTriagedOnce(t *testing.T) {
	env := natstest.Start(t, natsjs.Topology{Spare: natsjs.SpareOn})
	regs := []*prometheus.Registry{prometheus.NewRegistry(), prometheus.NewRegistry()}
	for _, reg := range regs {
		startWorker(t, env, worker.Options{Registerer: reg})
	}
	const n = 40
	ids := channels.NewIDs()
	reqs := make([]*channels.Request, n)
	var wg sync.WaitGroup
	for i := range reqs {
		now := time.Now().UTC()
		reqs[i] = &channels.Request{ID: ids.New(now), Channel: channels.MediumPhone, ReceivedAt: now, Text: fmt.Sprintf("no puedo entrar a mi correo institucional (%d)", i)}
		for lane, prefix := range map[string]string{"a": natsjs.SubjectInboundPrefix, "b": natsjs.SubjectSparePrefix} {
			wg.Go(func() { publishCopy(t, env, prefix, "desk:"+lane+":"+reqs[i].ID, reqs[i]) })
		}
	}
	wg.Wait()
	drained(t, env, 2*n)
	waitTriaged(t, env, reqs)
	before := outcomes(t, regs)

	// Later copies through the spare of requests triaged already.
	for _, r := range reqs {
		publishCopy(t, env, natsjs.SubjectSparePrefix, "desk:c:"+r.ID, r)
	}
	drained(t, env, 3*n)
	waitTriaged(t, env, reqs)
	if after := outcomes(t, regs); after != before {
		t.Fatalf("later spare copies of triaged requests were triaged again: outcomes %v → %v", before, after)
	}
}

// drained waits until CAU_INBOUND holds msgs messages and the triage consumer has handled all.
func drained(t *testing.T, env *natstest.Env, msgs uint64) {
	t.Helper()
	waitFor(t, "every copy handled", func() bool {
		info, err := env.Inbound.Info(context.Background())
		if err != nil || info.State.Msgs != msgs {
			return false
		}
		c, err := env.Inbound.Consumer(context.Background(), natsjs.ConsumerTriage)
		if err != nil {
			return false
		}
		ci, err := c.Info(context.Background())
		return err == nil && ci.NumPending == 0 && ci.NumAckPending == 0
	})
}

// publishCopy puts r on subject prefix+"desk" with its own Nats-Msg-Id.
func publishCopy(t *testing.T, env *natstest.Env, prefix, msgID string, r *channels.Request) {
	t.Helper()
	m := nats.NewMsg(prefix + "desk")
	m.Data, _ = json.Marshal(r)
	natsjs.SetCloudEvent(m.Header, r.ID, "desk://phone", natsjs.TypeRequest, r.ReceivedAt)
	m.Header.Set(jetstream.MsgIDHeader, msgID)
	if _, err := env.JS.PublishMsg(context.Background(), m); err != nil {
		t.Error(err)
	}
}

// waitTriaged waits until CAU_TRIAGED holds one item per request and no other, and the index
// shows each queued.
func waitTriaged(t *testing.T, env *natstest.Env, reqs []*channels.Request) {
	t.Helper()
	waitFor(t, "every request triaged", func() bool { return subjectCount(t, env.Triaged, natsjs.SubjectTriagedPrefix+">") >= uint64(len(reqs)) })
	ctx := context.Background()
	info, err := env.Triaged.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	per := map[string]int{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := env.Triaged.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		var item struct{ Request channels.Request }
		if err := json.Unmarshal(m.Data, &item); err != nil {
			t.Fatal(err)
		}
		per[item.Request.ID]++
	}
	for _, r := range reqs {
		if per[r.ID] != 1 {
			t.Errorf("request %s triaged %d times", r.ID, per[r.ID])
		}
		if st, _, err := natsjs.GetState(ctx, env.Requests, r.ID); err != nil || st.State != natsjs.StateQueued {
			t.Errorf("request %s indexed %+v, %v", r.ID, st, err)
		}
	}
	if len(per) != len(reqs) {
		t.Errorf("CAU_TRIAGED holds %d requests, want %d", len(per), len(reqs))
	}
}

// outcomes sums caud_triage_outcomes_total over the workers.
func outcomes(t *testing.T, regs []*prometheus.Registry) float64 {
	t.Helper()
	var sum float64
	for _, reg := range regs {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "caud_triage_outcomes_total" {
				for _, m := range mf.GetMetric() {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}
