package natsjs

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// StoreCollector exports, at each scrape, what JetStream holds for caud: the account's file-store
// use and limit, and the messages and bytes of CAU_INBOUND, CAU_TRIAGED and CAU_DLQ (a dead-letter
// count above zero is something nobody has looked at yet). A scrape that cannot reach JetStream
// within two seconds exports caud_jetstream_up 0 and nothing else.
type StoreCollector struct {
	js       jetstream.JetStream
	maxStore int64
}

// NewStoreCollector returns the collector over js. maxStore is the store limit to report when the
// account has none of its own (the embedded server's max_store); 0 when unknown.
func NewStoreCollector(js jetstream.JetStream, maxStore int64) *StoreCollector {
	return &StoreCollector{js: js, maxStore: maxStore}
}

var (
	descJSUp       = prometheus.NewDesc("caud_jetstream_up", "1 when JetStream answered the last scrape.", nil, nil)
	descStoreUsed  = prometheus.NewDesc("caud_jetstream_store_bytes", "File storage used by the JetStream account.", nil, nil)
	descStoreLimit = prometheus.NewDesc("caud_jetstream_store_limit_bytes", "File storage the JetStream account may use (absent when unlimited and unknown).", nil, nil)
	descStreamMsgs = prometheus.NewDesc("caud_stream_messages", "Messages kept in a stream.", []string{"stream"}, nil)
	descStreamSize = prometheus.NewDesc("caud_stream_bytes", "Bytes kept in a stream.", []string{"stream"}, nil)
)

// Describe implements prometheus.Collector.
func (c *StoreCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descJSUp, descStoreUsed, descStoreLimit, descStreamMsgs, descStreamSize} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *StoreCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	info, err := c.js.AccountInfo(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(descJSUp, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(descJSUp, prometheus.GaugeValue, 1)
	ch <- prometheus.MustNewConstMetric(descStoreUsed, prometheus.GaugeValue, float64(info.Store))
	if limit := info.Limits.MaxStore; limit > 0 {
		ch <- prometheus.MustNewConstMetric(descStoreLimit, prometheus.GaugeValue, float64(limit))
	} else if c.maxStore > 0 {
		ch <- prometheus.MustNewConstMetric(descStoreLimit, prometheus.GaugeValue, float64(c.maxStore))
	}
	for _, name := range []string{StreamInbound, StreamTriaged, StreamDLQ} {
		s, err := c.js.Stream(ctx, name)
		if err != nil {
			continue
		}
		si, err := s.Info(ctx)
		if err != nil {
			continue
		}
		ch <- prometheus.MustNewConstMetric(descStreamMsgs, prometheus.GaugeValue, float64(si.State.Msgs), name)
		ch <- prometheus.MustNewConstMetric(descStreamSize, prometheus.GaugeValue, float64(si.State.Bytes), name)
	}
}
