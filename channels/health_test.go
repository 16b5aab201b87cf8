package channels

import (
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"
)

// Since says when a check started failing, survives further failures, and clears on success.
func TestHealthTrackerSince(t *testing.T) {
	now := time.Date(2025, 10, 14, 16, 0, 0, 0, time.UTC)
	tr := HealthTracker{Now: func() time.Time { return now }}
	tr.Set("imap:cau", false, "starting")
	first := now
	now = now.Add(time.Minute)
	tr.Set("imap:cau", false, "down: connection refused")
	tr.SetErr("x webhook", nil)
	h := tr.List()
	if len(h) != 2 || h[0].OK || !h[0].Since.Equal(first) || h[0].Detail != "down: connection refused" || !h[1].OK {
		t.Fatalf("%+v", h)
	}
	tr.Set("imap:cau", true, "connected, idle")
	if h := tr.List()[0]; !h.OK || !h.Since.IsZero() {
		t.Fatalf("after recovery %+v", h)
	}
	now = now.Add(time.Minute)
	tr.SetErr("imap:cau", errors.New("down again"))
	if h := tr.List()[0]; h.OK || !h.Since.Equal(now) {
		t.Fatalf("second failure %+v", h)
	}
}

func TestOrDefault(t *testing.T) {
	if OrDefault(0, 5) != 5 || OrDefault(-1, 5) != 5 || OrDefault(3, 5) != 3 {
		t.Fatal("int")
	}
	if OrDefault(time.Duration(0), time.Second) != time.Second || OrDefault(2*time.Millisecond, time.Second) != 2*time.Millisecond {
		t.Fatal("duration")
	}
	if OrDefault(0.0, 80e6) != 80e6 || OrDefault(1.5, 80e6) != 1.5 {
		t.Fatal("float")
	}
}

func TestOrDiscard(t *testing.T) {
	if OrDiscard(nil) == nil {
		t.Fatal("nil logger")
	}
	l := slog.New(slog.NewTextHandler(io.Discard, nil))
	if OrDiscard(l) != l {
		t.Fatal("logger replaced")
	}
}
