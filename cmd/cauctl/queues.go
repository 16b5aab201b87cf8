package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
)

// cmdStatus prints the readiness checks and the queue table. It exits 1 when caud is not ready, so
// monitoring scripts can use it as is.
func (a *app) cmdStatus(args []string) int {
	fs := a.flags("status", "")
	return a.withClient(fs, args, 0, func(ctx context.Context, c *Client, _ []string) int {
		r, err := c.Ready(ctx)
		if err != nil {
			return a.fail(err, c, nil, "")
		}
		q, qerr := c.Queues(ctx)
		if a.json {
			out := map[string]json.RawMessage{"readyz": r.Raw}
			if qerr == nil {
				out["queues"] = q.Raw
			}
			b, _ := json.Marshal(out)
			a.writeJSON(b)
		} else {
			if r.Ready {
				fmt.Fprintf(a.stdout, "caud en %s: listo\n\n", c.BaseURL)
			} else {
				fmt.Fprintf(a.stdout, "caud en %s: NO LISTO\n\n", c.BaseURL)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "VERIFICACIÓN\tESTADO\tDESDE\tDETALLE")
			for _, ch := range r.Checks {
				state := "ok"
				switch {
				case !ch.OK:
					state = "FALLA"
				case ch.Warning:
					state = "AVISO"
				}
				since := "—"
				if ch.Since != "" {
					since = a.whenText(ch.Since)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", ch.Name, state, since, ch.Detail)
			}
			tw.Flush()
			if qerr == nil {
				fmt.Fprintln(a.stdout)
				a.queueTable(a.stdout, q.Queues)
			}
		}
		if qerr != nil {
			fmt.Fprintln(a.stderr, "no se pudieron leer las colas:")
			return a.fail(qerr, c, nil, "")
		}
		if !r.Ready {
			return exitErr
		}
		return exitOK
	})
}

// cmdQueues prints depth, in-progress and oldest age per queue.
func (a *app) cmdQueues(args []string) int {
	fs := a.flags("queues", "")
	return a.withClient(fs, args, 0, func(ctx context.Context, c *Client, _ []string) int {
		q, err := c.Queues(ctx)
		if err != nil {
			return a.fail(err, c, nil, "")
		}
		if a.json {
			a.writeJSON(q.Raw)
			return exitOK
		}
		a.queueTable(a.stdout, q.Queues)
		return exitOK
	})
}

func (a *app) queueTable(w io.Writer, qs []QueueStat) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "COLA\tPENDIENTES\tEN CURSO\tMÁS ANTIGUA")
	for _, q := range qs {
		age := "—"
		if q.Pending > 0 || q.OldestAgeSeconds > 0 {
			age = humanAge(seconds(q.OldestAgeSeconds))
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", q.Name, q.Pending, q.InProgress, age)
	}
	tw.Flush()
}
