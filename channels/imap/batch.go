package imap

import (
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/ipn-cgsi/caud/channels/natsjs"
)

type pending struct {
	uid  imap.UID
	size int64
}

// sync handles every message above the checkpoint, batch by batch.
func (s *session) sync() error {
	o := s.m.o
	for {
		last := s.cp.cp.LastUID
		var bufs []*imapclient.FetchMessageBuffer
		uids := imap.UIDSet{imap.UIDRange{Start: imap.UID(last + 1), Stop: 0}}
		err := s.cmd(func() (err error) {
			bufs, err = s.c.Fetch(uids, &imap.FetchOptions{UID: true, RFC822Size: true}).Collect()
			return err
		})
		if err != nil {
			return fmt.Errorf("list new messages: %w", err)
		}
		var todo []pending
		for _, b := range bufs {
			// "n:*" always includes the highest UID, even below n; a mail whose attachments are
			// being read is handled again (as a duplicate, then filed) once they are.
			if uint32(b.UID) > last && !s.deferred.has(b.UID) {
				todo = append(todo, pending{uid: b.UID, size: b.RFC822Size})
			}
		}
		if len(todo) == 0 {
			s.m.m.lastSync.WithLabelValues(o.Name).SetToCurrentTime()
			return nil
		}
		sort.Slice(todo, func(i, j int) bool { return todo[i].uid < todo[j].uid })
		var inflight chan error
		wait := func() error {
			if inflight == nil {
				return nil
			}
			err := <-inflight
			inflight = nil
			return err
		}
		for len(todo) > 0 {
			n, bytes := 0, int64(0)
			for n < len(todo) && n < o.BatchSize && (n == 0 || bytes+min(todo[n].size, o.MaxMessageBytes) <= o.BatchBytes) {
				bytes += min(todo[n].size, o.MaxMessageBytes)
				n++
			}
			b, err := s.prepare(todo[:n], last)
			if werr := wait(); werr != nil {
				return werr
			}
			if err != nil {
				return err
			}
			if b.firstErr != nil {
				return s.commit(b)
			}
			// Batch n is filed (STORE, MOVE, checkpoint) while batch n+1 is fetched and handled:
			// the IMAP server's work overlaps ours. Commits stay strictly in order.
			last = b.newLast
			done := make(chan error, 1)
			go func() { done <- s.commit(b) }()
			inflight = done
			todo = todo[n:]
		}
		if err := wait(); err != nil {
			return err
		}
	}
}

type outcome int

const (
	outFailed outcome = iota
	outGone
	outDeferred // attachments being read in the background: neither filed nor checkpointed yet
	outProcessed
	outSuppressed
	outQuarantined
)

type result struct {
	uid imap.UID
	out outcome
	err error
}

// prepared is a fetched and handled batch waiting to be filed.
type prepared struct {
	n        int
	groups   map[outcome]imap.UIDSet
	newLast  uint32
	firstErr error
	dFetch   time.Duration
	dHandle  time.Duration
}

// prepare fetches and handles one batch (publishing what it can). last is the checkpoint the batch
// follows; the result says how far the checkpoint may advance once the batch is filed.
func (s *session) prepare(batch []pending, last uint32) (*prepared, error) {
	o := s.m.o
	var small, large imap.UIDSet
	var total int64
	for _, p := range batch {
		if p.size > o.MaxMessageBytes {
			large.AddNum(p.uid)
		} else {
			small.AddNum(p.uid)
			total += p.size
		}
	}
	raws := map[imap.UID][]byte{}
	tFetch := time.Now()
	if len(small) > 0 {
		section := &imap.FetchItemBodySection{Peek: true}
		err := s.do(o.CommandTimeout+time.Duration(total>>20)*time.Second, func() error {
			cmd := s.c.Fetch(small, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{section}})
			for {
				msg := cmd.Next()
				if msg == nil {
					break
				}
				var uid imap.UID
				var raw []byte
				for item := msg.Next(); item != nil; item = msg.Next() {
					switch it := item.(type) {
					case imapclient.FetchItemDataUID:
						uid = it.UID
					case imapclient.FetchItemDataBodySection:
						if it.Literal != nil {
							b, err := io.ReadAll(io.LimitReader(it.Literal, o.MaxMessageBytes+1))
							if err != nil {
								cmd.Close()
								return err
							}
							raw = b
						}
					}
				}
				if uid != 0 && raw != nil {
					raws[uid] = raw
				}
			}
			return cmd.Close()
		})
		if err != nil {
			return nil, fmt.Errorf("fetch: %w", err)
		}
	}
	if len(large) > 0 {
		// Only the header of an oversized message is read; the quarantine keeps the whole one.
		section := &imap.FetchItemBodySection{Peek: true, Specifier: imap.PartSpecifierHeader}
		var bufs []*imapclient.FetchMessageBuffer
		if err := s.cmd(func() (err error) {
			bufs, err = s.c.Fetch(large, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{section}}).Collect()
			return err
		}); err != nil {
			return nil, fmt.Errorf("fetch headers: %w", err)
		}
		for _, b := range bufs {
			if len(b.BodySection) > 0 {
				raws[b.UID] = b.BodySection[0].Bytes
			}
		}
	}
	s.m.stats.fetched.Add(int64(len(raws)))
	s.m.m.fetched.WithLabelValues(o.Name).Add(float64(len(raws)))

	dFetch := time.Since(tFetch)
	tHandle := time.Now()
	results := make([]result, len(batch))
	for _, wave := range waves(batch, raws) {
		sem := make(chan struct{}, o.Workers)
		var wg sync.WaitGroup
		for _, i := range wave {
			p := batch[i]
			raw, ok := raws[p.uid]
			if !ok {
				results[i] = result{uid: p.uid, out: outGone} // expunged meanwhile by someone else
				continue
			}
			wg.Add(1)
			sem <- struct{}{}
			go func(i int, p pending, raw []byte) {
				defer func() { <-sem; wg.Done() }()
				out, err := s.handle(p.uid, p.size, raw)
				results[i] = result{uid: p.uid, out: out, err: err}
			}(i, p, raw)
		}
		wg.Wait()
	}

	b := &prepared{n: len(batch), groups: map[outcome]imap.UIDSet{}, newLast: last, dFetch: dFetch, dHandle: time.Since(tHandle)}
	prefix := true
	for _, r := range results {
		if r.out == outDeferred {
			prefix = false // the checkpoint stays below it until it is published and filed
			continue
		}
		if r.out == outFailed {
			prefix = false
			if b.firstErr == nil {
				b.firstErr = fmt.Errorf("uid %d: %w", r.uid, r.err)
			}
			continue
		}
		if r.out != outGone {
			set := b.groups[r.out]
			set.AddNum(r.uid)
			b.groups[r.out] = set
		}
		if prefix {
			b.newLast = uint32(r.uid)
		}
	}
	return b, nil
}

// commit files a prepared batch, then advances the checkpoint over its handled prefix. It returns
// the batch's first handling error, if any, once the rest is filed.
func (s *session) commit(b *prepared) error {
	o := s.m.o
	tFile := time.Now()
	defer func() {
		s.m.log.Debug("batch", "n", b.n, "fetch", b.dFetch, "handle", b.dHandle, "file+checkpoint", time.Since(tFile))
	}()
	groups := b.groups
	// File the handled mail before advancing the checkpoint: a crash in between re-reads it, and
	// the Message-ID index turns that into a duplicate, not a second request.
	if err := s.file(groups[outProcessed], o.ProcessedFolder, KeywordProcessed); err != nil {
		return err
	}
	if err := s.file(groups[outSuppressed], o.SuppressedFolder, KeywordSuppressed); err != nil {
		return err
	}
	if err := s.file(groups[outQuarantined], o.QuarantineFolder, KeywordQuarantined); err != nil {
		return err
	}
	if err := s.cp.save(s.ctx, Checkpoint{UIDValidity: s.uidv, LastUID: b.newLast}); err != nil {
		return err
	}
	return b.firstErr
}

// waves orders a batch for concurrent handling: a message that repeats the Message-ID of an
// earlier one in the batch, or answers one, waits for a later wave, so that the index entry it
// needs (duplicate, follow-up) exists by then. Most batches are one wave.
func waves(batch []pending, raws map[imap.UID][]byte) [][]int {
	type ids struct {
		mid  string
		refs []string
	}
	hdr := make([]ids, len(batch))
	for i, p := range batch {
		raw := raws[p.uid]
		if raw == nil {
			continue
		}
		h, _, _ := readHeader(raw)
		hdr[i].mid = natsjs.NormalizeMessageID(firstMsgID(h.Get("Message-Id")))
		for _, r := range append(msgIDList(h.Get("In-Reply-To")), msgIDList(h.Get("References"))...) {
			hdr[i].refs = append(hdr[i].refs, natsjs.NormalizeMessageID(r))
		}
	}
	level := make([]int, len(batch))
	firstAt := map[string]int{} // message id -> index of its first occurrence
	maxLevel := 0
	for i := range batch {
		for _, r := range append([]string{hdr[i].mid}, hdr[i].refs...) {
			if j, ok := firstAt[r]; ok && r != "" && level[j]+1 > level[i] {
				level[i] = level[j] + 1
			}
		}
		if hdr[i].mid != "" {
			if _, ok := firstAt[hdr[i].mid]; !ok {
				firstAt[hdr[i].mid] = i
			}
		}
		maxLevel = max(maxLevel, level[i])
	}
	out := make([][]int, maxLevel+1)
	for i, l := range level {
		out[l] = append(out[l], i)
	}
	return out
}
