package desk_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"testing"

	"github.com/ipn-cgsi/caud/channels/desk"
	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/channels/natsjs/natstest"
)

// Two desk replicas on a three-node cluster (R3), each connected to a different node, receive the
// same idempotency key at the same moment, 150 times: one request per key, the same id for both
// answers, and no 5xx.
func TestRacedDeskKeysOnR3GiveOneRequest(t *testing.T) {
	c := natstest.StartCluster(t)
	var desks []*desk.Desk
	var h0 *natsjs.Handles
	for _, node := range []int{0, 2} {
		h := natstest.OnNode(t, c, node, natsjs.Topology{Replicas: 3}).Handles
		h0 = h
		d, err := desk.New(desk.Options{Sink: natsjs.NewSink(h, natsjs.SinkOptions{}), Units: units{}, Idempotency: h.Requests,
			Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
		if err != nil {
			t.Fatal(err)
		}
		desks = append(desks, d)
	}
	const keys = 150
	statuses := map[int]int{}
	mismatched := 0
	for k := range keys {
		body := fmt.Sprintf(`{"channel":"phone","description":"Sin tono en la extensión %d","idempotency_key":"llamada-%d"}`, k, k)
		var wg sync.WaitGroup
		codes, ids := make([]int, 2), make([]string, 2)
		for i, d := range desks {
			wg.Go(func() {
				code, out := post(t, d, body)
				codes[i] = code
				if id, ok := out["id"].(string); ok {
					ids[i] = id
				}
			})
		}
		wg.Wait()
		for _, code := range codes {
			statuses[code]++
		}
		if ids[0] == "" || ids[0] != ids[1] {
			mismatched++
		}
	}
	ctx := context.Background()
	info, err := h0.Inbound.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("R3, %d keys raced on two replicas: answers %v, %d with different ids, %d requests in CAU_INBOUND", keys, statuses, mismatched, info.State.Msgs)
	if statuses[http.StatusCreated]+statuses[http.StatusOK] != 2*keys || mismatched != 0 || info.State.Msgs != keys {
		t.Fatalf("answers %v, %d mismatched ids, %d requests for %d keys", statuses, mismatched, info.State.Msgs, keys)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }
