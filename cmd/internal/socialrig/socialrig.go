// Package socialrig starts caud's social webhook handlers in the calling process, over an embedded
// JetStream on a temporary directory, on a loopback port: the standalone mode of the social load
// and conformance tools.
package socialrig

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/channels/social"
)

// Options are the webhook secrets (both required) and, optionally, a Messenger name lookup.
type Options struct {
	AppSecret, ConsumerSecret string
	Profiles                  *social.Profiles
}

// Rig is the running set-up. URL is the base of /webhooks/facebook and /webhooks/x.
type Rig struct {
	URL  string
	h    *natsjs.Handles
	stop func()
}

// Start starts the embedded JetStream, the topology, the sink and both handlers.
func Start(o Options) (*Rig, error) {
	dir, err := os.MkdirTemp("", "socialrig-*")
	if err != nil {
		return nil, err
	}
	ns, err := natsjs.StartEmbedded(natsjs.EmbeddedOptions{StoreDir: dir}, nil)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	nc, err := natsjs.Connect(ctx, natsjs.ConnectOptions{Server: ns, Name: "socialrig"}, nil)
	if err != nil {
		ns.Shutdown()
		os.RemoveAll(dir)
		return nil, err
	}
	cleanup := func() {
		nc.Close()
		ns.Shutdown()
		ns.WaitForShutdown()
		os.RemoveAll(dir)
	}
	fail := func(err error) (*Rig, error) {
		cleanup()
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return fail(err)
	}
	h, err := natsjs.EnsureTopology(ctx, js, natsjs.Topology{})
	if err != nil {
		return fail(err)
	}
	sink := natsjs.NewSink(h, natsjs.SinkOptions{})
	fb, err := social.NewFacebook(social.FacebookOptions{AppSecrets: []string{o.AppSecret}, Profiles: o.Profiles, Webhook: social.WebhookOptions{Sink: sink, Seen: h.Requests, Inbound: h.Inbound}})
	if err != nil {
		return fail(err)
	}
	x, err := social.NewX(social.XOptions{ConsumerSecrets: []string{o.ConsumerSecret}, Webhook: social.WebhookOptions{Sink: sink, Seen: h.Requests, Inbound: h.Inbound}})
	if err != nil {
		return fail(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/webhooks/facebook", fb)
	mux.Handle("/webhooks/x", x)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	r := &Rig{URL: "http://" + ln.Addr().String(), h: h}
	r.stop = func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		_ = srv.Shutdown(sctx)
		cleanup()
	}
	return r, nil
}

// Stop shuts the handlers and the server down and removes the store.
func (r *Rig) Stop() { r.stop() }

// InboundMsgs is the number of messages in CAU_INBOUND.
func (r *Rig) InboundMsgs() (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := r.h.Inbound.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("stream info: %w", err)
	}
	return info.State.Msgs, nil
}

// Requests returns the requests in CAU_INBOUND with sequence numbers above after, in order, and
// the last sequence read.
func (r *Rig) Requests(after uint64) ([]channels.Request, uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := r.h.Inbound.Info(ctx)
	if err != nil {
		return nil, after, fmt.Errorf("stream info: %w", err)
	}
	var out []channels.Request
	for seq := max(after+1, info.State.FirstSeq); seq <= info.State.LastSeq; seq++ {
		m, err := r.h.Inbound.GetMsg(ctx, seq)
		if err != nil {
			return nil, after, fmt.Errorf("get %d: %w", seq, err)
		}
		var req channels.Request
		if err := json.Unmarshal(m.Data, &req); err != nil {
			return nil, after, fmt.Errorf("decode %d: %w", seq, err)
		}
		out = append(out, req)
	}
	return out, info.State.LastSeq, nil
}
