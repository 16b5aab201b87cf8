package channels

import (
	"cmp"
	"log/slog"
)

// OrDefault returns v, or def when v is zero or negative: how the Options of this module read a
// number left unset ("0 means …").
func OrDefault[T cmp.Ordered](v, def T) T {
	var zero T
	if v <= zero {
		return def
	}
	return v
}

// OrDiscard returns log, or a logger that drops everything when log is nil: how the Options of
// this module read an unset Logger.
func OrDiscard(log *slog.Logger) *slog.Logger {
	if log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return log
}
