package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/ipn-cgsi/caud/channels/deadletter"
	"github.com/ipn-cgsi/caud/channels/memo"
	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/config"
	"github.com/ipn-cgsi/caud/triage"
	"github.com/ipn-cgsi/caud/triage/console"
	"github.com/ipn-cgsi/caud/triage/console/accounts"
)

// catalogReloadError remembers the last refused catalog reload for the supervisor page.
func (a *App) catalogReloadError(err error) {
	a.mu.Lock()
	a.catalogErr, a.catalogErrAt = err, time.Now()
	if a.catalog != nil {
		a.catalogErrKept = a.catalog.Engine()
	}
	a.mu.Unlock()
}

func (a *App) catalogStatus() console.CatalogStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := console.CatalogStatus{Version: a.catalog.Engine().Catalog().Version(), File: a.cfg.Triage.Catalog}
	if a.catalogErr != nil {
		st.LastError, st.LastAt = a.catalogErr.Error(), a.catalogErrAt
	}
	return st
}

// spoolFailures lists the memo spool's failed files for the supervisor page (nil without the memo
// channel).
func (a *App) spoolFailures() ([]console.SpoolFailure, error) {
	if !a.cfg.Memo.Enabled || !a.cfg.HasRole(config.RoleIntake) {
		return nil, nil
	}
	ff, err := memo.Failures(a.cfg.Memo.SpoolDir, 100)
	out := make([]console.SpoolFailure, 0, len(ff))
	for _, f := range ff {
		reason := f.Spanish
		if reason == "" {
			reason = f.Code + ": " + f.Detail
		}
		out = append(out, console.SpoolFailure{File: f.Name, Reason: reason, At: f.FailedAt})
	}
	return out, err
}

// startConsole serves the web console on the API's listener (it needs the queues role).
func (a *App) startConsole(ctx, runCtx context.Context, mux *http.ServeMux, letters *deadletter.Letters) error {
	cfg := a.cfg
	users, err := accounts.NewDirectory(cfg.Console.UsersFile)
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	a.setWaiting("creating the console's session bucket")
	sessions, err := console.NewSessions(ctx, a.h.JS, cfg.NATS.Replicas, cfg.Console.SessionTTL,
		natsjs.Topology{Logger: a.log, OnWait: a.topologyWait})
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	units, err := config.LoadUnits(cfg.Units.File)
	if err != nil {
		return fmt.Errorf("units: %w", err)
	}
	c, err := console.New(console.Options{
		Users: users, Sessions: sessions, Queues: a.queues, Desk: a.desk, Units: units,
		Engine:      func() *triage.Engine { return a.catalog.Engine() },
		Archive:     a.archive,
		Search:      a.search,
		Trail:       a.trail,
		DeadLetters: letters,
		Ready: func(ctx context.Context) []console.Check {
			var out []console.Check
			for _, c := range a.readiness(ctx) {
				out = append(out, console.Check{Name: c.Name, OK: c.OK, Detail: c.Detail, Since: c.Since})
			}
			return out
		},
		Catalog:       a.catalogStatus,
		SpoolFailures: a.spoolFailures,
		SecureCookies: cfg.Console.SecureCookies,
		Logger:        a.log.With("stage", "console"),
	})
	if err != nil {
		return err
	}
	c.Register(mux)
	a.goBG(func() { _ = c.Run(runCtx) })
	if n := users.Count(); n == 0 {
		a.log.Warn("web console has no accounts yet; add one with: cauctl users add --file "+cfg.Console.UsersFile+" --role supervisor NAME", "users_file", cfg.Console.UsersFile)
	} else {
		a.log.Info("web console enabled", "accounts", n, "users_file", cfg.Console.UsersFile)
	}
	return nil
}
