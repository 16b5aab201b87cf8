package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/ipn-cgsi/caud/channels/imap"
	"github.com/ipn-cgsi/caud/channels/natsjs"
)

// compare runs caud's adapter and mbsync against the same Dovecot in interleaved rounds. Each
// round fills two identical mailboxes (Maildir files written under --mail-root, owned by
// --mail-owner); mbsync pulls one into a local Maildir, caud ingests the other (every mail
// published on CAU_INBOUND and moved out of INBOX); the order alternates between rounds. Both pay
// Dovecot's first indexing of a fresh Maildir.
//
//	imapload --mode compare --imap 127.0.0.1:31493 --pass secret --mail-root /srv/mail --mail-owner caudtest: --n 5000
func compare(ctx context.Context, c config, h *natsjs.Handles, log *slog.Logger) error {
	if c.mailRoot == "" {
		return fmt.Errorf("compare mode needs --mail-root (Dovecot's maildir:<root>/%%n)")
	}
	if _, err := exec.LookPath(c.mbsync); err != nil {
		return fmt.Errorf("mbsync not found (apt-get install isync): %w", err)
	}
	runID := fmt.Sprintf("%d", time.Now().Unix()%100000)
	var caudTimes, mbsyncTimes []time.Duration
	for r := range c.rounds {
		ua, ub := fmt.Sprintf("cmp%sa%d", runID, r), fmt.Sprintf("cmp%sb%d", runID, r)
		for _, u := range []string{ua, ub} {
			cu := c
			cu.maildir = filepath.Join(c.mailRoot, u)
			if err := fillMaildir(cu, runID+u); err != nil {
				return err
			}
			if c.mailOwner != "" {
				if out, err := exec.Command("chown", "-R", c.mailOwner, cu.maildir).CombinedOutput(); err != nil {
					return fmt.Errorf("chown: %v: %s", err, out)
				}
			}
		}
		runMbsync := func() error {
			d, err := timeMbsync(ctx, c, ua+"@ipn.mx")
			if err != nil {
				return err
			}
			mbsyncTimes = append(mbsyncTimes, d)
			fmt.Printf("round %d: mbsync pulled %d mails in %v\n", r+1, c.n, d.Round(time.Millisecond))
			return nil
		}
		runCaud := func() error {
			pub, empty, err := timeCaud(ctx, c, h, log, ub+"@ipn.mx", fmt.Sprintf("cmp%d", r))
			if err != nil {
				return err
			}
			caudTimes = append(caudTimes, empty)
			fmt.Printf("round %d: caud published %d mails in %v, INBOX empty after %v (attachments read: %v)\n",
				r+1, c.n, pub.Round(time.Millisecond), empty.Round(time.Millisecond), c.attachments)
			return nil
		}
		first, second := runMbsync, runCaud
		if r%2 == 1 {
			first, second = runCaud, runMbsync
		}
		if err := first(); err != nil {
			return err
		}
		if err := second(); err != nil {
			return err
		}
	}
	best := func(d []time.Duration) time.Duration {
		b := d[0]
		for _, x := range d {
			b = min(b, x)
		}
		return b
	}
	var sc, sm time.Duration
	for i := range caudTimes {
		sc += caudTimes[i]
		sm += mbsyncTimes[i]
	}
	fmt.Printf("compare: %d rounds of %d mails: caud best %v mean %v; mbsync best %v mean %v; ratio caud/mbsync best %.2f mean %.2f\n",
		c.rounds, c.n, best(caudTimes).Round(time.Millisecond), (sc / time.Duration(len(caudTimes))).Round(time.Millisecond),
		best(mbsyncTimes).Round(time.Millisecond), (sm / time.Duration(len(mbsyncTimes))).Round(time.Millisecond),
		best(caudTimes).Seconds()/best(mbsyncTimes).Seconds(), sc.Seconds()/sm.Seconds())
	return nil
}

// timeMbsync pulls user's INBOX into a fresh local Maildir and returns how long mbsync took.
func timeMbsync(ctx context.Context, c config, user string) (time.Duration, error) {
	dir, err := os.MkdirTemp("", "imapload-mbsync-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	host, port, err := net.SplitHostPort(c.imapAddr)
	if err != nil {
		return 0, err
	}
	conf := fmt.Sprintf(`IMAPAccount far
Host %s
Port %s
User %s
Pass %s
SSLType None
AuthMechs LOGIN

IMAPStore far
Account far

MaildirStore near
Path %[5]s/
Inbox %[5]s/INBOX

Channel load
Far :far:
Near :near:
Patterns INBOX
Create Near
Sync Pull
SyncState *
`, host, port, user, c.pass, dir)
	cfg := filepath.Join(dir, "mbsyncrc")
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		return 0, err
	}
	t0 := time.Now()
	out, err := exec.CommandContext(ctx, c.mbsync, "-q", "-c", cfg, "load").CombinedOutput()
	d := time.Since(t0)
	if err != nil {
		return 0, fmt.Errorf("mbsync: %v: %s", err, out)
	}
	n := 0
	for _, sub := range []string{"new", "cur"} {
		es, _ := os.ReadDir(filepath.Join(dir, "INBOX", sub))
		n += len(es)
	}
	if n != c.n {
		return 0, fmt.Errorf("mbsync pulled %d mails, want %d: %s", n, c.n, out)
	}
	return d, nil
}

// timeCaud runs the adapter on user until every mail is published and INBOX is empty.
func timeCaud(ctx context.Context, c config, h *natsjs.Handles, log *slog.Logger, user, name string) (published, empty time.Duration, err error) {
	o, err := adapterOptions(ctx, c, h, log, user, name)
	if err != nil {
		return 0, 0, err
	}
	mb, err := imap.New(o)
	if err != nil {
		return 0, 0, err
	}
	cl, err := imapclient.DialInsecure(c.imapAddr, nil)
	if err != nil {
		return 0, 0, err
	}
	defer cl.Close()
	if err := cl.Login(user, c.pass).Wait(); err != nil {
		return 0, 0, err
	}
	actx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	t0 := time.Now()
	go func() { _ = mb.Run(actx, natsjs.NewSink(h, natsjs.SinkOptions{Logger: log})); close(done) }()
	defer func() { cancel(); <-done }()
	for published == 0 || empty == 0 {
		if published == 0 && mb.Stats().Published >= int64(c.n) {
			published = time.Since(t0)
		}
		if empty == 0 && published != 0 {
			st, err := cl.Status(c.folder, &goimap.StatusOptions{NumMessages: true}).Wait()
			if err != nil {
				return 0, 0, err
			}
			if *st.NumMessages == 0 {
				empty = time.Since(t0)
			}
		}
		select {
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
	return published, empty, nil
}
