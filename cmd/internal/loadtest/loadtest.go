// Package loadtest holds what caud's load tools share: the rule that they only ever target this
// machine, a driver that sends N requests from C clients, and latency percentiles.
package loadtest

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"time"
)

// ErrNotLoopback is returned for a target that is not on this machine.
var ErrNotLoopback = errors.New("not a loopback address (127.0.0.0/8, ::1 or localhost)")

// LoopbackURL checks that a base URL (http://127.0.0.1:8080) points at this machine.
func LoopbackURL(server string) error {
	u, err := url.Parse(server)
	if err != nil {
		return fmt.Errorf("%q: %w", server, err)
	}
	return loopbackHost(server, u.Hostname())
}

// LoopbackAddr checks that host:port points at this machine (every address the host resolves to).
func LoopbackAddr(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: %w", addr, err)
	}
	return loopbackHost(addr, host)
}

func loopbackHost(target, host string) error {
	if host == "" {
		return fmt.Errorf("%q: no host", target)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil {
		if ip.IsLoopback() {
			return nil
		}
		return fmt.Errorf("%q: %w", target, ErrNotLoopback)
	}
	ips, err := net.LookupIP(host)
	if err != nil {
		return fmt.Errorf("%q: %w", target, err)
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return fmt.Errorf("%q: %w", target, ErrNotLoopback)
		}
	}
	return nil
}

// Percentiles sorts d (in place) and returns a function giving the p-th percentile (0 < p <= 1;
// 1 is the maximum). An empty d gives 0 for every p.
func Percentiles(d []time.Duration) func(p float64) time.Duration {
	slices.Sort(d)
	return func(p float64) time.Duration {
		if len(d) == 0 {
			return 0
		}
		return d[min(len(d)-1, int(p*float64(len(d))))]
	}
}
