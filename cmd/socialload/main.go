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
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime/pprof"
	"time"

	"github.com/ipn-cgsi/caud/channels/social"
	"github.com/ipn-cgsi/caud/cmd/internal/loadtest"
	"github.com/ipn-cgsi/caud/cmd/internal/socialrig"
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
	var inproc *socialrig.Rig
	if *server == "" {
		var err error
		inproc, err = socialrig.Start(socialrig.Options{AppSecret: *appSecret, ConsumerSecret: *consumerSecret})
		if err != nil {
			fmt.Fprintln(stderr, "socialload:", err)
			return 1
		}
		defer inproc.Stop()
		*server = inproc.URL
		fmt.Fprintf(stdout, "in-process: embedded JetStream (file store) and the webhook handlers on %s\n", inproc.URL)
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
	res := loadtest.Drive(*n, *c, *timeout, func(i int) error {
		d := ds[i]
		req, _ := http.NewRequest(http.MethodPost, *server+d.path, bytes.NewReader(d.body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(d.header, d.sig)
		return loadtest.Send(client, req, http.StatusOK)
	})
	elapsed, ok := res.Elapsed, res.OK
	percentile := loadtest.Percentiles(ok)
	pct := func(p float64) time.Duration { return percentile(p).Round(10 * time.Microsecond) }
	fmt.Fprintf(stdout, "deliveries: %d accepted (200 after durable publish), %d failed in %s: %.0f deliveries/s, %.0f requests/s (%d per delivery, platform %s, %d clients)\n",
		len(ok), res.Failed, elapsed.Round(time.Millisecond), float64(len(ok))/elapsed.Seconds(),
		float64(len(ok)**events)/elapsed.Seconds(), *events, *platform, *c)
	fmt.Fprintf(stdout, "latency: p50 %s p90 %s p99 %s max %s\n", pct(0.50), pct(0.90), pct(0.99), pct(1))
	if res.FirstErr != nil {
		fmt.Fprintln(stdout, "first failure:", res.FirstErr)
	}
	code := 0
	if res.Failed > 0 {
		code = 1
	}
	if inproc != nil {
		msgs, err := inproc.InboundMsgs()
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
