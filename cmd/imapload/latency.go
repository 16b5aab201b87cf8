package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/nats-io/nats.go"

	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/cmd/internal/loadtest"
	"github.com/ipn-cgsi/caud/triage"
	"github.com/ipn-cgsi/caud/triage/worker"
)

// idle APPENDs one message at a time while the adapter idles and measures, per message:
//   - server: APPEND answered → EXISTS seen by a bare IDLE client on the same folder (the IMAP
//     server's own notification delay, which caud cannot change);
//   - caud: that EXISTS → the triaged item on CAU_TRIAGED (what caud adds: fetch, normalize,
//     attachments, archive, publish, triage, publish);
//   - total: APPEND answered → triaged item.
//
// In-process (no --nats) the triage worker runs here too; with --nats the running caud triages.
func idle(ctx context.Context, c config, h *natsjs.Handles, nc *nats.Conn, cl *imapclient.Client, runID string, startAdapter func(func(context.Context, string, string) (net.Conn, error)) (func(), error), inProcess bool) error {
	if inProcess {
		engine := triage.NewEngine(triage.DefaultCatalog())
		w, err := worker.New(ctx, h, worker.Options{Decide: engine.Decide})
		if err != nil {
			return err
		}
		wctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { _ = w.Run(wctx); close(done) }()
		defer func() { cancel(); <-done }()
	}
	var mu sync.Mutex
	var exists []time.Time // when the bare IDLE client saw EXISTS
	bare, err := imapclient.DialInsecure(c.imapAddr, &imapclient.Options{
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{
			Mailbox: func(d *imapclient.UnilateralDataMailbox) {
				if d.NumMessages != nil {
					now := time.Now()
					mu.Lock()
					exists = append(exists, now)
					mu.Unlock()
				}
			},
		},
	})
	if err != nil {
		return fmt.Errorf("bare idle client: %w", err)
	}
	defer bare.Close()
	if err := bare.Login(c.user, c.pass).Wait(); err != nil {
		return err
	}
	if _, err := bare.Select(c.folder, nil).Wait(); err != nil {
		return err
	}
	idleCmd, err := bare.Idle()
	if err != nil {
		return err
	}
	defer func() { _ = idleCmd.Close() }()

	var caudExists []time.Time // when caud's own connection read an EXISTS
	stop, err := startAdapter(func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &existsConn{Conn: conn, seen: func(t time.Time) {
			mu.Lock()
			caudExists = append(caudExists, t)
			mu.Unlock()
		}}, nil
	})
	if err != nil {
		return err
	}
	defer stop()
	time.Sleep(2 * time.Second) // let the adapter drain the folder and enter IDLE
	if !inProcess && !c.adapter {
		fmt.Println("note: the adapter runs in another process: caud's own EXISTS cannot be observed; reporting against the bare client only")
	}

	appended := map[string]time.Time{}
	triaged := map[string]time.Time{}
	sub, err := nc.Subscribe(natsjs.SubjectTriagedPrefix+">", func(m *nats.Msg) {
		now := time.Now()
		var item struct {
			Request struct {
				Source struct {
					MessageID string `json:"message_id"`
				} `json:"source"`
			} `json:"request"`
		}
		if json.Unmarshal(m.Data, &item) != nil {
			return
		}
		mu.Lock()
		if _, seen := triaged[item.Request.Source.MessageID]; !seen {
			triaged[item.Request.Source.MessageID] = now
		}
		mu.Unlock()
	})
	if err != nil {
		return err
	}
	defer sub.Unsubscribe()
	inbound := map[string]time.Time{}
	sub2, err := nc.Subscribe(natsjs.SubjectInboundPrefix+">", func(m *nats.Msg) {
		now := time.Now()
		var req struct {
			Source struct {
				MessageID string `json:"message_id"`
			} `json:"source"`
		}
		if json.Unmarshal(m.Data, &req) != nil {
			return
		}
		mu.Lock()
		if _, seen := inbound[req.Source.MessageID]; !seen {
			inbound[req.Source.MessageID] = now
		}
		mu.Unlock()
	})
	if err != nil {
		return err
	}
	defer sub2.Unsubscribe()

	interval := time.Second / time.Duration(max(c.rate, 1))
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for i := range c.n {
		raw := c.message(i, runID)
		mid := fmt.Sprintf("<load-%s-%d@ipn.mx>", runID, i)
		cmd := cl.Append(c.folder, int64(len(raw)), nil)
		if _, err := cmd.Write(raw); err != nil {
			return err
		}
		if err := cmd.Close(); err != nil {
			return err
		}
		if _, err := cmd.Wait(); err != nil {
			return err
		}
		mu.Lock()
		appended[mid] = time.Now()
		mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		mu.Lock()
		n := 0
		for mid := range appended {
			if _, ok := triaged[mid]; ok {
				n++
			}
		}
		mu.Unlock()
		if n >= c.n {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out: %d of %d triaged", n, c.n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	sort.Slice(exists, func(i, j int) bool { return exists[i].Before(exists[j]) })
	sort.Slice(caudExists, func(i, j int) bool { return caudExists[i].Before(caudExists[j]) })
	// next is the first time of ts at or after t (the EXISTS that announced a message appended at
	// t: the server announces it after the APPEND completed), or false.
	next := func(ts []time.Time, t, limit time.Time) (time.Time, bool) {
		k := sort.Search(len(ts), func(i int) bool { return !ts[i].Before(t) })
		if k == len(ts) || ts[k].After(limit) {
			return time.Time{}, false
		}
		return ts[k], true
	}
	var server, caudServer, own, vsBare, total, ownAttached []time.Duration
	attachedMID := map[string]bool{}
	for i := range c.n {
		if c.attached(i) {
			attachedMID[fmt.Sprintf("<load-%s-%d@ipn.mx>", runID, i)] = true
		}
	}
	for mid, ta := range appended {
		tt := triaged[mid]
		if te, ok := next(exists, ta, tt); ok {
			server = append(server, te.Sub(ta))
			vsBare = append(vsBare, tt.Sub(te))
		}
		if te, ok := next(caudExists, ta, tt); ok {
			caudServer = append(caudServer, te.Sub(ta))
			if attachedMID[mid] {
				ownAttached = append(ownAttached, tt.Sub(te))
			} else {
				own = append(own, tt.Sub(te))
			}
		}
		total = append(total, tt.Sub(ta))
		if os.Getenv("IMAPLOAD_DEBUG") != "" {
			fmt.Printf("%s appended %s published +%v triaged +%v\n", mid, ta.Format("15:04:05.000"), inbound[mid].Sub(ta), tt.Sub(ta))
		}
	}
	if len(total) == 0 {
		return errors.New("nothing triaged")
	}
	pr := func(name string, d []time.Duration) {
		q := loadtest.Percentiles(d)
		fmt.Printf("  %-40s p50 %8v  p90 %8v  p99 %8v  max %8v\n", name, q(0.50).Round(10*time.Microsecond),
			q(0.90).Round(10*time.Microsecond), q(0.99).Round(10*time.Microsecond), q(1).Round(10*time.Microsecond))
	}
	fmt.Printf("idle: %d APPENDs at %d/s (attachments read: %v); EXISTS matched: caud's connection %d, bare IDLE client %d\n",
		c.n, c.rate, c.attachments, len(own)+len(ownAttached), len(vsBare))
	pr("server → caud: APPEND answered → EXISTS", caudServer)
	pr("server → bare client: APPEND → EXISTS", server)
	pr("caud's share: its EXISTS → triaged", own)
	if len(ownAttached) > 0 {
		pr("  the same, mails with "+c.attachName, ownAttached)
	}
	pr("bare client's EXISTS → triaged", vsBare)
	pr("total: APPEND answered → triaged", total)
	return nil
}

// existsConn reports when an untagged EXISTS response is read from the server.
type existsConn struct {
	net.Conn
	seen func(time.Time)
	tail []byte
}

func (c *existsConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		now := time.Now()
		buf := append(c.tail, p[:n]...)
		if bytes.Contains(buf, []byte(" EXISTS\r\n")) {
			c.seen(now)
			buf = buf[:0]
		}
		if len(buf) > 16 {
			buf = buf[len(buf)-16:]
		}
		c.tail = append(c.tail[:0], buf...)
	}
	return n, err
}
