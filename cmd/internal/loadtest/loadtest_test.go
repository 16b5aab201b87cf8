package loadtest

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func TestLoopbackOnly(t *testing.T) {
	for _, ok := range []string{"http://127.0.0.1:8080", "http://localhost:8080", "http://[::1]:8080", "http://127.3.4.5"} {
		if err := LoopbackURL(ok); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"http://10.0.0.1:8080", "http://192.168.1.2", "http://8.8.8.8", "http://:8080"} {
		if err := LoopbackURL(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	if err := LoopbackAddr("127.0.0.1:143"); err != nil {
		t.Error(err)
	}
	if err := LoopbackAddr("172.16.0.1:143"); !errors.Is(err, ErrNotLoopback) {
		t.Errorf("private address: %v", err)
	}
}

func TestPercentiles(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	p := Percentiles(d)
	if p(0.5) != 51*time.Millisecond || p(0.99) != 100*time.Millisecond || p(1) != 100*time.Millisecond {
		t.Fatalf("p50 %s p99 %s max %s", p(0.5), p(0.99), p(1))
	}
	if Percentiles(nil)(0.5) != 0 {
		t.Fatal("empty")
	}
}

func TestDriveCountsSuccessesAndFailures(t *testing.T) {
	r := Drive(100, 4, time.Minute, func(i int) error {
		if i%10 == 0 {
			return errors.New("refused")
		}
		time.Sleep(time.Microsecond) // a latency of 0 would read as "not sent"
		return nil
	})
	if len(r.OK) != 90 || r.Failed != 10 || r.FirstErr == nil || r.FirstErr.Error() != "refused" {
		t.Fatalf("ok %d failed %d first %v", len(r.OK), r.Failed, r.FirstErr)
	}
	if !r.Deadline.Equal(r.Start.Add(time.Minute)) || r.Elapsed <= 0 {
		t.Fatalf("start %s deadline %s elapsed %s", r.Start, r.Deadline, r.Elapsed)
	}
}

func TestDriveStopsAtTheDeadline(t *testing.T) {
	var calls atomic.Int64
	r := Drive(1000, 2, -time.Second, func(int) error { calls.Add(1); return nil })
	if calls.Load() != 0 || len(r.OK) != 0 || r.Failed != 0 {
		t.Fatalf("calls %d ok %d failed %d after the deadline", calls.Load(), len(r.OK), r.Failed)
	}
}

func TestSendChecksTheStatus(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/bad" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusCreated)
	}))
	defer srv.Close()
	get := func(path string) *http.Request {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		return req
	}
	if err := Send(srv.Client(), get("/good"), http.StatusOK, http.StatusCreated); err != nil {
		t.Fatal(err)
	}
	if err := Send(srv.Client(), get("/bad"), http.StatusOK); err == nil || err.Error() != "/bad: 401 Unauthorized" {
		t.Fatalf("401 gave %v", err)
	}
}
