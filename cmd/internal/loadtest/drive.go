package loadtest

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Result is what one Drive measured.
type Result struct {
	Start    time.Time       // when the first request could start
	Deadline time.Time       // Start plus the timeout
	Elapsed  time.Duration   // from Start until the last client stopped
	OK       []time.Duration // latency of every request that succeeded, in the order sent
	Failed   int64           // requests that failed
	FirstErr error           // the first failure seen, nil when none
}

// Drive sends requests 0 to n-1 with c concurrent clients, calling do(i) for each and timing it,
// until all are sent or the timeout has passed. A do that returns an error counts as a failure.
func Drive(n, c int, timeout time.Duration, do func(i int) error) Result {
	lat := make([]time.Duration, n)
	var next, failed atomic.Int64
	var firstErr atomic.Pointer[error]
	start := time.Now()
	deadline := start.Add(timeout)
	var wg sync.WaitGroup
	for range c {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || time.Now().After(deadline) {
					return
				}
				t0 := time.Now()
				if err := do(i); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, &err)
					continue
				}
				lat[i] = time.Since(t0)
			}
		})
	}
	wg.Wait()
	r := Result{Start: start, Deadline: deadline, Elapsed: time.Since(start), Failed: failed.Load()}
	r.OK = slices.DeleteFunc(lat, func(d time.Duration) bool { return d == 0 })
	if e := firstErr.Load(); e != nil {
		r.FirstErr = *e
	}
	return r
}

// Send does req with client, reads the whole answer and closes it. It fails on a transport error
// and on any status but the ones in want (its message is the path and the status).
func Send(client *http.Client, req *http.Request, want ...int) error {
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if !slices.Contains(want, resp.StatusCode) {
		return fmt.Errorf("%s: %s", req.URL.Path, resp.Status)
	}
	return nil
}
