package natstest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/ipn-cgsi/caud/channels/natsjs/natscluster"
)

// StartProcessCluster runs a JetStream cluster of three nats-server processes on loopback, built
// from the module caud depends on, so that Kill is a real SIGKILL: the node's peers get no
// leadership hand-over and elect new leaders only after nats-server's election timeout, as in
// production. In-process nodes (StartCluster) cannot be killed alone: their Kill is a clean stop.
// The cluster stops at cleanup.
func StartProcessCluster(t testing.TB) *natscluster.Cluster {
	t.Helper()
	dir := t.TempDir()
	if d := os.Getenv("CAU_TEST_CLUSTER_DIR"); d != "" {
		// Kept after the test, for the nodes' logs (<dir>/cluster/nN.log).
		dir = d
	}
	bin := filepath.Join(dir, "nats-server")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		// The race build's packages are in the build cache already (the test binary has them).
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "github.com/nats-io/nats-server/v2")...)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("build nats-server: %v", err)
	}
	c, err := natscluster.Start(natscluster.Options{Dir: filepath.Join(dir, "cluster"), Exec: bin})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Shutdown)
	return c
}
