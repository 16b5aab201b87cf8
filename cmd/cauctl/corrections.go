package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
)

// Corrections calls GET /api/v1/corrections: the agents' corrections as labelled examples (JSONL).
func (c *Client) Corrections(ctx context.Context) ([]byte, error) {
	status, raw, err := c.call(ctx, http.MethodGet, "/api/v1/corrections", nil)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, apiError(status, raw)
	}
	return raw, nil
}

// cmdTriageCorrections exports the recorded corrections so that `cauctl triage eval` can measure a
// catalog against them.
func (a *app) cmdTriageCorrections(args []string) int {
	fs := a.flags("triage corrections", "[--out ARCHIVO]")
	out := fs.String("out", "", "escribir en este archivo en lugar de la salida estándar")
	return a.withClient(fs, args, 0, func(ctx context.Context, c *Client, _ []string) int {
		raw, err := c.Corrections(ctx)
		if err != nil {
			return a.fail(err, c, nil, "")
		}
		if *out == "" {
			_, _ = a.stdout.Write(raw)
			return exitOK
		}
		if err := os.WriteFile(*out, raw, 0o644); err != nil {
			fmt.Fprintf(a.stderr, "cauctl: no se pudo escribir %s: %v\n", *out, err)
			return exitErr
		}
		fmt.Fprintf(a.stderr, "Correcciones escritas en %s. Mídalas con: cauctl triage eval %s\n", *out, *out)
		return exitOK
	})
}
