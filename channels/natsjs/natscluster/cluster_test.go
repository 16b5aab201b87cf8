package natscluster

import (
	"net"
	"testing"
)

// A port picked for a node is taken by someone else before the node binds it (the race of picking
// free ports): the cluster starts over on new ports and comes up (in-process nodes; process nodes
// detect the same from nats-server's exit and log).
func TestStartOverWhenAPortIsTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for name, which := range map[string]int{"client port": 1, "route port": 4} {
		t.Run(name, func(t *testing.T) {
			picks := 0
			pick := func(n int) ([]int, error) {
				picks++
				ports, err := freePorts(n)
				if err == nil && picks == 1 {
					ports[which] = taken.Addr().(*net.TCPAddr).Port
				}
				return ports, err
			}
			c, err := start(Options{Dir: t.TempDir()}, pick)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Shutdown()
			if picks != 2 {
				t.Fatalf("ports picked %d times, want 2 (the first set had a taken port)", picks)
			}
			nc, err := c.Connect()
			if err != nil {
				t.Fatal(err)
			}
			nc.Close()
		})
	}
}
