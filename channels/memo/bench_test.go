package memo

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// BenchmarkDropToPublished measures, for a one-page memo (D053.png), the time from the file
// appearing in the spool to the file in processed/ (published and acknowledged by JetStream), with
// the default StableFor of 1 s replaced by 100 ms (subtract nothing: the figure includes it).
func BenchmarkDropToPublished(b *testing.B) {
	requireTools(b)
	data, err := os.ReadFile("testdata/scans/D053.png")
	if err != nil {
		b.Fatal(err)
	}
	te := newEnv(b, nil)
	for b.Loop() {
		// A fresh spool each time, so the scan is new to the channel (JetStream still dedups it).
		b.StopTimer()
		te.spool = b.TempDir()
		m := te.newMemo(b, nil)
		stop := te.run(b, m)
		b.StartTimer()
		dropFile(b, te.spool, "D053.png", data)
		waitFor(b, 60*time.Second, "processed", func() bool {
			return len(files(b, filepath.Join(te.spool, "processed"))) == 1
		})
		b.StopTimer()
		stop()
		b.StartTimer()
	}
}

// BenchmarkPagesPerMinute drops the 12 fixture scans at once and reports pages per minute with
// Workers memos at once (2 here, the default).
func BenchmarkPagesPerMinute(b *testing.B) {
	requireTools(b)
	fx := fixtures(b)
	te := newEnv(b, nil)
	var pages float64
	var elapsed time.Duration
	for b.Loop() {
		b.StopTimer()
		te.spool = b.TempDir()
		m := te.newMemo(b, nil)
		stop := te.run(b, m)
		b.StartTimer()
		start := time.Now()
		for _, f := range fx {
			data, err := os.ReadFile("testdata/scans/" + f.File)
			if err != nil {
				b.Fatal(err)
			}
			dropFile(b, te.spool, f.File, data)
		}
		waitFor(b, 5*time.Minute, "all processed", func() bool {
			return len(files(b, filepath.Join(te.spool, "processed"))) == len(fx)
		})
		elapsed += time.Since(start)
		b.StopTimer()
		stop()
		pages += metricValue(m)
		b.StartTimer()
	}
	b.ReportMetric(pages/elapsed.Minutes(), "pages/min")
}

func metricValue(m *Memo) float64 {
	return testutil.ToFloat64(m.m.pages)
}
