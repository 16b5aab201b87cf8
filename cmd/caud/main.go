// Command caud is the CAU intake daemon: it takes in every service request sent to the IPN help desk
// (e-mail, scanned memos, social networks, phone and in person), triages it the way procedure
// PR-CAU-01 prescribes, and hands agents pre-triaged work queues. With no configuration it runs
// everything in one process on an embedded NATS JetStream server under ./data.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/ipn-cgsi/caud/cmd/internal/version"
	"github.com/ipn-cgsi/caud/config"
)

func main() { os.Exit(run(os.Args[1:], os.Stderr)) }

// stopTimeout bounds a graceful stop after SIGINT/SIGTERM.
const stopTimeout = 4 * time.Second

func run(args []string, stderr io.Writer) int {
	for _, a := range args {
		if a == "--version" || a == "-version" {
			fmt.Fprintln(os.Stdout, version.String("caud"))
			return 0
		}
	}
	cfg, err := config.Load(args)
	if errors.Is(err, pflag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "caud:", err)
		return 2
	}
	log := newLogger(cfg.Log, stderr)
	for _, w := range cfg.Warnings() {
		log.Warn(w)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	app := NewApp(cfg, log)
	if err := app.Start(ctx); err != nil {
		if ctx.Err() != nil {
			log.Info("stopped before start-up completed", "waiting_for", err)
			sctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
			defer cancel()
			_ = app.Stop(sctx)
			return 0
		}
		log.Error("start failed", "err", err)
		sctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		defer cancel()
		_ = app.Stop(sctx)
		return 1
	}
	<-ctx.Done()
	stop()
	log.Info("stopping (a second signal kills at once)")
	sctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	if err := app.Stop(sctx); err != nil {
		log.Error("stop", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

func newLogger(c config.LogConfig, w io.Writer) *slog.Logger {
	var level slog.Level
	switch strings.ToLower(c.Level) {
	case "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	default:
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
