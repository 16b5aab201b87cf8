package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/ipn-cgsi/caud/triage"
	"github.com/ipn-cgsi/caud/triage/learner"
)

// TriageModel calls GET /api/v1/triage/model, or with retrain POST /api/v1/triage/model/retrain
// followed by the GET: the model in force and the last retraining, compared.
func (c *Client) TriageModel(ctx context.Context, retrain bool) (learner.Status, []byte, error) {
	var st learner.Status
	if retrain {
		status, raw, err := c.call(ctx, http.MethodPost, "/api/v1/triage/model/retrain", nil)
		if err != nil {
			return st, nil, err
		}
		if status != http.StatusOK {
			return st, nil, apiError(status, raw)
		}
	}
	status, raw, err := c.call(ctx, http.MethodGet, "/api/v1/triage/model", nil)
	if err != nil {
		return st, nil, err
	}
	if status != http.StatusOK {
		return st, nil, apiError(status, raw)
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return st, nil, fmt.Errorf("respuesta inválida del servidor: %w", err)
	}
	return st, raw, nil
}

// cmdTriageModel shows the learned model in force and the last automatic retraining: its result,
// why, and the comparison of the candidate with the model in force.
func (a *app) cmdTriageModel(args []string) int {
	fs := a.flags("triage model", "[--retrain]")
	retrain := fs.Bool("retrain", false, "reentrenar ahora con todas las correcciones (se promueve sólo si mejora)")
	return a.withClient(fs, args, 0, func(ctx context.Context, c *Client, _ []string) int {
		st, raw, err := c.TriageModel(ctx, *retrain)
		if err != nil {
			return a.fail(err, c, nil, "")
		}
		if a.json {
			a.writeJSON(raw)
			return exitOK
		}
		w := a.stdout
		fmt.Fprintf(w, "Decide con:        %s\n", st.Engine)
		if cur := st.Current; cur != nil {
			fmt.Fprintf(w, "Modelo en uso:     %s (%d correcciones, promovido %s)\n", cur.Version, cur.Corrections, a.whenText(cur.PromotedAt.Format(time.RFC3339)))
		} else {
			fmt.Fprintln(w, "Modelo en uso:     ninguno (solo el catálogo)")
		}
		if st.LoadError != "" {
			fmt.Fprintf(w, "ERROR al cargar:   %s\n", st.LoadError)
		}
		l := st.Last
		if l == nil {
			fmt.Fprintln(w, "Reentrenamiento:   ninguno todavía")
			return exitOK
		}
		fmt.Fprintf(w, "\nÚltimo reentrenamiento (%s): %s\n", a.whenText(l.At.Format(time.RFC3339)), resultText(l.Result))
		fmt.Fprintf(w, "  Motivo:          %s\n", l.Reason)
		if l.Candidate != "" {
			fmt.Fprintf(w, "  Candidato:       %s\n", l.Candidate)
		}
		r := l.Report
		fmt.Fprintf(w, "  Correcciones:    %d leídas, %d utilizables, %d ignoradas, %d contradictorias\n", r.Corrections, r.Used, r.Ignored, r.Contradictory)
		for _, c := range r.Conflicts {
			fmt.Fprintf(w, "    contradicción: %s\n", c)
		}
		if r.HeldOut > 0 {
			fmt.Fprintf(w, "  Entrenamiento:   %d; reservadas para comparar: %d\n", r.Train, r.HeldOut)
			fmt.Fprintf(w, "  Reservadas:      %s → %s (modelo en uso → candidato)\n", scoreText(r.Before), scoreText(r.After))
			fmt.Fprintf(w, "  Ejemplos del catálogo: %s → %s\n", scoreText(r.GuardBefore), scoreText(r.GuardAfter))
		}
		return exitOK
	})
}

func resultText(r string) string {
	switch r {
	case learner.ResultPromoted:
		return "PROMOVIDO"
	case learner.ResultContradictory:
		return "RECHAZADO (correcciones contradictorias)"
	case learner.ResultNotPromoted:
		return "NO PROMOVIDO (no mejora)"
	}
	return "ERROR"
}

func scoreText(s triage.LearnScore) string {
	if s.Total == 0 {
		return "—"
	}
	return fmt.Sprintf("%.1f %% (%d/%d)", 100*s.Rate, s.Correct, s.Total)
}
