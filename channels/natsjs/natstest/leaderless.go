package natstest

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// Leaderless makes stream answer publishes the way a raft group that lost its leader does while
// nats-server elects another (4-9 s after a SIGKILL): nobody serves its subjects, so a publish
// gets "no responders". Reads through the stream API and direct gets still work, as they do on
// the surviving replicas. The returned function restores the stream.
func Leaderless(t testing.TB, js jetstream.JetStream, stream string) (restore func()) {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	off := cfg
	off.Subjects = []string{"cau.test.unserved." + stream}
	if _, err := js.UpdateStream(ctx, off); err != nil {
		t.Fatal(err)
	}
	return func() {
		t.Helper()
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
}
