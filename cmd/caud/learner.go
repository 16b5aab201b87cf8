package main

import (
	"context"
	"net/http"

	"github.com/ipn-cgsi/caud/config"
	"github.com/ipn-cgsi/caud/triage/learner"
)

// startLearner starts the automatic retraining of the triage model (triage.learn): every process
// loads the model in force and follows promotions; processes with the triage role also retrain.
// The model in force is loaded before the roles start, so a restarted replica decides its first
// request with it. A model file (triage.model) pins the model and turns this off.
func (a *App) startLearner(ctx, runCtx context.Context, mux *http.ServeMux, auth func(http.Handler) http.Handler) error {
	cfg := a.cfg
	if !cfg.Triage.Learn.Enabled || cfg.Triage.Model != "" {
		if cfg.Triage.Model != "" {
			a.log.Info("automatic triage retraining off: triage.model names a file", "model", cfg.Triage.Model)
		}
		return nil
	}
	l, err := learner.New(ctx, learner.Options{
		JS: a.h.JS, Corrections: a.h.Corrections, Store: a.catalog, Replicas: cfg.NATS.Replicas,
		Interval: cfg.Triage.Learn.Interval, MinNew: cfg.Triage.Learn.MinNew, Train: cfg.HasRole(config.RoleTriage),
		Logger: a.log.With("stage", "learner"), Registerer: a.reg,
	})
	if err != nil {
		return err
	}
	if err := l.LoadCurrent(ctx); err != nil {
		a.log.Error("the triage model in force could not be loaded; deciding with the catalog alone", "err", err)
	}
	a.learner = l
	a.health = append(a.health, l)
	l.Register(mux, auth)
	a.goBG(func() { _ = l.Run(runCtx) })
	return nil
}
