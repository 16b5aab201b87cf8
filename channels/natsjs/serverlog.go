package natsjs

import (
	"context"
	"fmt"
	"log/slog"
)

// serverLog passes the embedded nats-server's own log into caud's, so what the server refuses and
// why (store full, out of disk space, JetStream disabled) is in the operator's log beside caud's
// lines. Notices (the start-up banner, routine state changes) go in at debug level, warnings and
// errors at theirs; the server's debug and trace output stays off. Warnings and errors also go to
// line when it is set (the StoreGuard reads them).
type serverLog struct {
	log  *slog.Logger
	line func(string)
}

func (l serverLog) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l serverLog) Warnf(format string, v ...any)   { l.emit(slog.LevelWarn, format, v) }
func (l serverLog) Fatalf(format string, v ...any)  { l.emit(slog.LevelError, format, v) }
func (l serverLog) Errorf(format string, v ...any)  { l.emit(slog.LevelError, format, v) }
func (l serverLog) Debugf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l serverLog) Tracef(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }

func (l serverLog) emit(level slog.Level, format string, v []any) {
	msg := fmt.Sprintf(format, v...)
	l.log.Log(context.Background(), level, msg)
	if l.line != nil {
		l.line(msg)
	}
}
