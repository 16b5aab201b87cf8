package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"text/tabwriter"
	"time"
)

// DeadLetter is one message a stage could not process, as GET /api/v1/deadletters lists it.
type DeadLetter struct {
	Seq             uint64    `json:"seq"`
	Stage           string    `json:"stage"`
	Reason          string    `json:"reason"`
	OriginalSubject string    `json:"original_subject"`
	RequestID       string    `json:"request_id"`
	Deliveries      string    `json:"deliveries"`
	Time            time.Time `json:"time"`
}

// DeadLetters calls GET /api/v1/deadletters.
func (c *Client) DeadLetters(ctx context.Context) ([]DeadLetter, []byte, error) {
	var out struct {
		Deadletters []DeadLetter `json:"deadletters"`
	}
	raw, err := c.json(ctx, http.MethodGet, "/api/v1/deadletters?limit=1000", nil, &out, http.StatusOK)
	return out.Deadletters, raw, err
}

// SpoolFailure is a scanned memo that did not become a request, as GET /api/v1/spool/failures
// lists it.
type SpoolFailure struct {
	Name     string    `json:"name"`
	FailedAt time.Time `json:"failed_at"`
	Code     string    `json:"code"`
	Reason   string    `json:"reason"`
}

// SpoolFailures calls GET /api/v1/spool/failures.
func (c *Client) SpoolFailures(ctx context.Context) (string, []SpoolFailure, []byte, error) {
	var out struct {
		SpoolDir string         `json:"spool_dir"`
		Failures []SpoolFailure `json:"failures"`
	}
	raw, err := c.json(ctx, http.MethodGet, "/api/v1/spool/failures", nil, &out, http.StatusOK)
	return out.SpoolDir, out.Failures, raw, err
}

// ReplayDeadLetter calls POST /api/v1/deadletters/{seq}/replay.
func (c *Client) ReplayDeadLetter(ctx context.Context, seq uint64) ([]byte, error) {
	var out struct{}
	return c.json(ctx, http.MethodPost, "/api/v1/deadletters/"+strconv.FormatUint(seq, 10)+"/replay", nil, &out, http.StatusOK)
}

// cmdDLQ lists the dead letters: what could not be processed, and why.
func (a *app) cmdDLQ(args []string) int {
	fs := a.flags("dlq list", "")
	return a.withClient(fs, args, 0, func(ctx context.Context, c *Client, _ []string) int {
		letters, raw, err := c.DeadLetters(ctx)
		if err != nil {
			return a.fail(err, c, nil, "")
		}
		// The memo files that failed live in the spool, not in CAU_DLQ: listed here too, so this is the
		// one place that shows everything that could not be processed.
		spool, failures, rawSpool, err := c.SpoolFailures(ctx)
		if err != nil {
			return a.fail(err, c, nil, "")
		}
		if a.json {
			a.writeJSON([]byte(`{"deadletters":` + string(jsonMember(raw, "deadletters")) + `,"spool_failures":` + string(jsonMember(rawSpool, "failures")) + `}`))
			return exitOK
		}
		if len(letters) == 0 && len(failures) == 0 {
			fmt.Fprintln(a.stdout, "No hay mensajes fallidos ni oficios fallidos.")
			return exitOK
		}
		if len(letters) > 0 {
			tw := tabwriter.NewWriter(a.stdout, 0, 2, 2, ' ', 0)
			fmt.Fprintln(tw, "SEC\tETAPA\tCUÁNDO\tSOLICITUD\tMOTIVO")
			for _, d := range letters {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", d.Seq, d.Stage, a.when(d.Time), d.RequestID, d.Reason)
			}
			_ = tw.Flush()
			fmt.Fprintln(a.stdout, "\nReprocesar uno, una vez corregida la causa: cauctl dlq replay SEC")
		}
		if len(failures) > 0 {
			if len(letters) > 0 {
				fmt.Fprintln(a.stdout)
			}
			fmt.Fprintf(a.stdout, "Oficios que no se convirtieron en solicitud (%s/failed):\n", spool)
			tw := tabwriter.NewWriter(a.stdout, 0, 2, 2, ' ', 0)
			fmt.Fprintln(tw, "ARCHIVO\tCUÁNDO\tMOTIVO")
			for _, f := range failures {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", f.Name, a.when(f.FailedAt), f.Reason)
			}
			_ = tw.Flush()
			fmt.Fprintln(a.stdout, "\nReprocesar uno: corregirlo (o escanearlo de nuevo) y dejarlo otra vez en la carpeta de entrada.")
		}
		return exitOK
	})
}

// cmdDLQReplay sends a dead letter back to the stage it failed in.
func (a *app) cmdDLQReplay(args []string) int {
	fs := a.flags("dlq replay", "SEC")
	pos, code, ok := a.parse(fs, args, 1, true)
	if !ok {
		return code
	}
	seq, err := strconv.ParseUint(pos[0], 10, 64)
	if err != nil || seq == 0 {
		return a.usageErr("número de secuencia inválido: %q", pos[0])
	}
	c, code, ok := a.client()
	if !ok {
		return code
	}
	ctx, cancel := a.ctx()
	defer cancel()
	raw, err := c.ReplayDeadLetter(ctx, seq)
	if err != nil {
		return a.fail(err, c, nil, "")
	}
	if a.json {
		a.writeJSON(raw)
		return exitOK
	}
	fmt.Fprintf(a.stdout, "Reprocesado: el mensaje %d volvió a su etapa.\n", seq)
	return exitOK
}

// jsonMember returns the raw value of member name of the JSON object raw, or [] when absent.
func jsonMember(raw []byte, name string) json.RawMessage {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil || m[name] == nil {
		return json.RawMessage("[]")
	}
	return m[name]
}
