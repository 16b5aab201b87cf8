package loadtest

import (
	"errors"
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
