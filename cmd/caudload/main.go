// Command caudload is a load generator for caud's desk intake: it submits N phone / in-person requests
// with C concurrent clients to a running caud (loopback only), reports intake throughput and latency,
// and with --wait the time until every request sits triaged in a queue. The target may run any
// roles: intake alone is enough without --wait; with --wait, --queues names a replica with the
// queues role when the target has none.
//
//	caudload --server http://127.0.0.1:8080 --n 20000 --c 32 --wait
//	caudload --server http://127.0.0.1:8081 --queues http://127.0.0.1:8082 --wait   # intake-only target
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/ipn-cgsi/caud/cmd/internal/loadtest"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// descriptions are phone requests in the style agents type them.
var descriptions = []string{
	"Docente de ESCOM, ext. 52034: no puedo entrar a mi correo institucional, dice contraseña incorrecta",
	"Solicita alta de una extensión telefónica para la nueva oficina de la subdirección administrativa",
	"No hay internet en el laboratorio de cómputo 3 desde ayer, ya reiniciaron el switch",
	"¿Cuándo sale la convocatoria de becas institucionales?",
	"Pregunta por el estado de su folio anterior sobre la red inalámbrica",
	"ayuda por favor",
	"La impresora del área de control escolar no imprime, marca error de papel atascado",
	"Necesita instalar el cliente de VPN para trabajar desde casa",
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("caudload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", "http://127.0.0.1:8080", "caud base URL (loopback only)")
	n := fs.Int("n", 10000, "requests to submit")
	c := fs.Int("c", 16, "concurrent clients")
	wait := fs.Bool("wait", false, "wait until every request is triaged and report the end-to-end time")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up after this long")
	queues := fs.String("queues", "", "with --wait: base URL of a caud with the queues role (default: --server)")
	token := fs.String("token", os.Getenv("CAU_TOKEN"), "API bearer token")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *queues == "" {
		*queues = *server
	}
	for _, u := range []string{*server, *queues} {
		if err := loadtest.LoopbackURL(u); err != nil {
			fmt.Fprintln(stderr, "caudload:", err)
			return 2
		}
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: *c * 2}}
	var base int64
	if *wait {
		var err error
		if base, err = queued(client, *queues, *token); err != nil {
			fmt.Fprintln(stderr, "caudload:", err)
			return 1
		}
	}
	run := fmt.Sprintf("%x", time.Now().UnixNano())
	res := loadtest.Drive(*n, *c, *timeout, func(i int) error {
		body, _ := json.Marshal(map[string]string{
			"channel": "phone", "role": "docente", "unit": "ESCOM", "extension": "52034",
			"description": descriptions[i%len(descriptions)], "idempotency_key": fmt.Sprintf("load-%s-%d", run, i),
		})
		req, _ := http.NewRequest(http.MethodPost, *server+"/api/v1/requests", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if *token != "" {
			req.Header.Set("Authorization", "Bearer "+*token)
		}
		return loadtest.Send(client, req, http.StatusCreated, http.StatusOK)
	})
	start, deadline, elapsed, ok := res.Start, res.Deadline, res.Elapsed, res.OK
	pct := loadtest.Percentiles(ok)
	fmt.Fprintf(stdout, "intake: %d accepted, %d failed in %s: %.0f req/s; latency p50 %s p90 %s p99 %s max %s\n",
		len(ok), res.Failed, elapsed.Round(time.Millisecond), float64(len(ok))/elapsed.Seconds(),
		pct(0.50).Round(10*time.Microsecond), pct(0.90).Round(10*time.Microsecond), pct(0.99).Round(10*time.Microsecond), pct(1).Round(10*time.Microsecond))
	if !*wait {
		return 0
	}
	for {
		q, err := queued(client, *queues, *token)
		if err == nil && q-base >= int64(len(ok)) {
			e2e := time.Since(start)
			fmt.Fprintf(stdout, "triaged: all %d in queues %s after the first submit: %.0f req/s end to end\n", len(ok), e2e.Round(time.Millisecond), float64(len(ok))/e2e.Seconds())
			return 0
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(stderr, "caudload: only %d of %d triaged before the timeout\n", q-base, len(ok))
			return 1
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// queued is the number of items in all queues, pending or in progress.
func queued(client *http.Client, server, token string) (int64, error) {
	req, _ := http.NewRequest(http.MethodGet, server+"/api/v1/queues", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return 0, fmt.Errorf("%s serves no queues (intake role only?): give --queues the URL of a caud with the queues role", server)
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET /api/v1/queues: %s", resp.Status)
	}
	var body struct {
		Queues []struct {
			Pending    int64 `json:"pending"`
			InProgress int64 `json:"in_progress"`
		} `json:"queues"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, err
	}
	var n int64
	for _, q := range body.Queues {
		n += q.Pending + q.InProgress
	}
	return n, nil
}
