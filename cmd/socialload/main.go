// Command socialload is a load generator for caud's social webhooks: it sends N signed Facebook
// and/or X deliveries (each with unique message ids) with C concurrent clients over loopback and
// reports deliveries/s, requests/s and latency. A delivery is counted only when answered 200, which
// caud does after every request of it is durably published on JetStream.
//
// Against a running caud (loopback only; the secrets must be caud's):
//
//	socialload --server http://127.0.0.1:8080 --app-secret S --consumer-secret S --n 20000 --c 32
//
// Standalone (no --server): an embedded JetStream on a temporary directory and the two handlers
// are started in this process on 127.0.0.1:0, and afterwards the tool checks that CAU_INBOUND holds
// exactly one message per request sent.
//
//	socialload --n 20000 --c 32 --platform mix
package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/channels/social"
	"github.com/ipn-cgsi/caud/cmd/internal/loadtest"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// texts are requests in the style people write to the Page and to the X account.
var texts = []string{
	"buenas tardes, desde el lunes no me puedo conectar al wifi de la escuela, dice contraseña incorrecta",
	"no me llegan correos a mi cuenta @alumno.ipn.mx desde el jueves",
	"la pagina de la SEPI dice \"la conexion no es privada\" y no me deja subir documentos",
	"cuando depositan la beca? ya me sale aprobada",
	"word me dice \"producto sin licencia\" con mi cuenta de alumno",
	"ayuda porfa!! no puedo entrar",
}

type delivery struct {
	path, header, sig string
	body              []byte
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("socialload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", "", "caud base URL (loopback only); empty starts JetStream and the handlers in-process")
	n := fs.Int("n", 20000, "deliveries to send")
	c := fs.Int("c", 32, "concurrent clients")
	platform := fs.String("platform", "mix", "facebook, x, or mix (alternating)")
	events := fs.Int("events", 1, "requests per delivery (messages per Facebook delivery, DMs per X delivery)")
	appSecret := fs.String("app-secret", envOr("CAU_SOCIAL_FACEBOOK_APP_SECRET", "load-app-secret"), "Meta app secret caud verifies with")
	consumerSecret := fs.String("consumer-secret", envOr("CAU_SOCIAL_X_CONSUMER_SECRET", "load-consumer-secret"), "X consumer secret caud verifies with")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up after this long")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of this process to the file (in-process mode profiles the server too)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *n <= 0 || *c <= 0 || *events <= 0 {
		fmt.Fprintln(stderr, "socialload: --n, --c and --events must be positive")
		return 2
	}
	if *platform != "facebook" && *platform != "x" && *platform != "mix" {
		fmt.Fprintln(stderr, "socialload: --platform must be facebook, x or mix")
		return 2
	}
	var inproc *inProcess
	if *server == "" {
		var err error
		inproc, err = startInProcess(*appSecret, *consumerSecret)
		if err != nil {
			fmt.Fprintln(stderr, "socialload:", err)
			return 1
		}
		defer inproc.stop()
		*server = inproc.url
		fmt.Fprintf(stdout, "in-process: embedded JetStream (file store) and the webhook handlers on %s\n", inproc.url)
	} else if err := loadtest.LoopbackURL(*server); err != nil {
		fmt.Fprintln(stderr, "socialload:", err)
		return 2
	}

	// Bodies are built and signed before the clock starts, so that the figures are the server's.
	runID := fmt.Sprintf("%x", time.Now().UnixNano())
	ds := make([]delivery, *n)
	for i := range ds {
		p := *platform
		if p == "mix" {
			p = []string{"facebook", "x"}[i%2]
		}
		if p == "facebook" {
			body := facebookBody(runID, i, *events)
			ds[i] = delivery{path: "/webhooks/facebook", header: social.FacebookSignatureHeader, sig: signHex(*appSecret, body), body: body}
		} else {
			body := xBody(runID, i, *events)
			ds[i] = delivery{path: "/webhooks/x", header: social.XSignatureHeader, sig: signB64(*consumerSecret, body), body: body}
		}
	}

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(stderr, "socialload:", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(stderr, "socialload:", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConns: *c * 2, MaxIdleConnsPerHost: *c * 2}}
	lat := make([]time.Duration, *n)
	var next, failed atomic.Int64
	var firstErr atomic.Value
	start := time.Now()
	deadline := start.Add(*timeout)
	var wg sync.WaitGroup
	for range *c {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= *n || time.Now().After(deadline) {
					return
				}
				d := ds[i]
				t0 := time.Now()
				req, _ := http.NewRequest(http.MethodPost, *server+d.path, bytes.NewReader(d.body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set(d.header, d.sig)
				resp, err := client.Do(req)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, d.path+": "+resp.Status)
					continue
				}
				lat[i] = time.Since(t0)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	ok := slices.DeleteFunc(lat, func(d time.Duration) bool { return d == 0 })
	percentile := loadtest.Percentiles(ok)
	pct := func(p float64) time.Duration { return percentile(p).Round(10 * time.Microsecond) }
	fmt.Fprintf(stdout, "deliveries: %d accepted (200 after durable publish), %d failed in %s: %.0f deliveries/s, %.0f requests/s (%d per delivery, platform %s, %d clients)\n",
		len(ok), failed.Load(), elapsed.Round(time.Millisecond), float64(len(ok))/elapsed.Seconds(),
		float64(len(ok)**events)/elapsed.Seconds(), *events, *platform, *c)
	fmt.Fprintf(stdout, "latency: p50 %s p90 %s p99 %s max %s\n", pct(0.50), pct(0.90), pct(0.99), pct(1))
	if e := firstErr.Load(); e != nil {
		fmt.Fprintln(stdout, "first failure:", e)
	}
	code := 0
	if failed.Load() > 0 {
		code = 1
	}
	if inproc != nil {
		msgs, err := inproc.inboundMsgs()
		if err != nil {
			fmt.Fprintln(stderr, "socialload:", err)
			return 1
		}
		want := uint64(len(ok) * *events)
		fmt.Fprintf(stdout, "durable: CAU_INBOUND holds %d requests, %d expected\n", msgs, want)
		if msgs != want {
			code = 1
		}
	}
	return code
}

func facebookBody(runID string, i, events int) []byte {
	type msg struct {
		Sender    map[string]string `json:"sender"`
		Recipient map[string]string `json:"recipient"`
		Timestamp int64             `json:"timestamp"`
		Message   map[string]string `json:"message"`
	}
	now := time.Now().UnixMilli()
	var ms []msg
	for j := range events {
		ms = append(ms, msg{
			Sender:    map[string]string{"id": fmt.Sprint(7000000000000000 + i)},
			Recipient: map[string]string{"id": "104532198765432"},
			Timestamp: now,
			Message:   map[string]string{"mid": fmt.Sprintf("m_load_%s_%d_%d", runID, i, j), "text": texts[(i+j)%len(texts)]},
		})
	}
	b, _ := json.Marshal(map[string]any{"object": "page", "entry": []any{map[string]any{"id": "104532198765432", "time": now, "messaging": ms}}})
	return b
}

func xBody(runID string, i, events int) []byte {
	sender := fmt.Sprint(2200000000 + i)
	var dms []any
	for j := range events {
		dms = append(dms, map[string]any{
			"type": "message_create", "id": fmt.Sprintf("load%s%d_%d", runID, i, j),
			"created_timestamp": fmt.Sprint(time.Now().UnixMilli()),
			"message_create": map[string]any{
				"target": map[string]string{"recipient_id": "1580000000000000001"}, "sender_id": sender,
				"message_data": map[string]string{"text": texts[(i+j)%len(texts)]},
			},
		})
	}
	b, _ := json.Marshal(map[string]any{
		"for_user_id": "1580000000000000001", "direct_message_events": dms,
		"users": map[string]any{sender: map[string]string{"id": sender, "name": "Usuario " + sender, "screen_name": "u" + sender}},
	})
	return b
}

func signHex(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

func signB64(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// inProcess is the standalone rig: embedded JetStream, the sink and both handlers on loopback.
type inProcess struct {
	url  string
	dir  string
	srv  *http.Server
	h    *natsjs.Handles
	stop func()
}

func startInProcess(appSecret, consumerSecret string) (*inProcess, error) {
	dir, err := os.MkdirTemp("", "socialload-*")
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
	nc, err := natsjs.Connect(ctx, natsjs.ConnectOptions{Server: ns, Name: "socialload"}, nil)
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
	js, err := jetstream.New(nc)
	if err != nil {
		cleanup()
		return nil, err
	}
	h, err := natsjs.EnsureTopology(ctx, js, natsjs.Topology{})
	if err != nil {
		cleanup()
		return nil, err
	}
	sink := natsjs.NewSink(h, natsjs.SinkOptions{})
	fb, err := social.NewFacebook(social.FacebookOptions{AppSecrets: []string{appSecret}, Sink: sink, Seen: h.Requests})
	if err != nil {
		cleanup()
		return nil, err
	}
	x, err := social.NewX(social.XOptions{ConsumerSecrets: []string{consumerSecret}, Sink: sink, Seen: h.Requests})
	if err != nil {
		cleanup()
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/webhooks/facebook", fb)
	mux.Handle("/webhooks/x", x)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cleanup()
		return nil, err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	p := &inProcess{url: "http://" + ln.Addr().String(), dir: dir, srv: srv, h: h}
	p.stop = func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		_ = srv.Shutdown(sctx)
		cleanup()
	}
	return p, nil
}

func (p *inProcess) inboundMsgs() (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := p.h.Inbound.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("stream info: %w", err)
	}
	return info.State.Msgs, nil
}
