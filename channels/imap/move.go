package imap

import (
	"fmt"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// A move to another folder is a copy and an expunge; a connection that dies between the two (a
// server crash, a MOVE whose answer never came) leaves the mail in both folders, and the next
// sync would handle it again and copy it a second time. So before each move the checkpoint
// records the source UIDs and the destination's UIDNEXT (recordMove); the next session compares
// the sources still present with the destination's messages from that UIDNEXT on and removes
// from the source, without copying, those already there (recoverMove).

// recordMove saves the move about to be made in the checkpoint.
func (s *session) recordMove(uids imap.UIDSet, folder string) error {
	var st *imap.StatusData
	if err := s.cmd(func() (err error) {
		st, err = s.c.Status(folder, &imap.StatusOptions{UIDNext: true, UIDValidity: true}).Wait()
		return err
	}); err != nil {
		return fmt.Errorf("status %s: %w", folder, err)
	}
	cp := s.cp.cp
	ranges := make([][2]uint32, 0, len(uids))
	for _, r := range uids {
		ranges = append(ranges, [2]uint32{uint32(r.Start), uint32(r.Stop)})
	}
	cp.Move = &Move{UIDs: ranges, Folder: folder, DestUIDValidity: st.UIDValidity, DestUIDNext: uint32(st.UIDNext)}
	return s.cp.save(s.ctx, cp)
}

// moveKey identifies a message across folders: its Message-ID, size and arrival time, which a
// copy keeps.
func moveKey(b *imapclient.FetchMessageBuffer) string {
	mid := ""
	if b.Envelope != nil {
		mid = b.Envelope.MessageID
	}
	return fmt.Sprintf("%s|%d|%d", mid, b.RFC822Size, b.InternalDate.Unix())
}

// recoverMove finishes a move the previous session left unconfirmed. It runs after SELECT of the
// folder and leaves it selected.
func (s *session) recoverMove() error {
	mv := s.cp.cp.Move
	if mv == nil {
		return nil
	}
	o := s.m.o
	done := func() error {
		cp := s.cp.cp
		cp.Move = nil
		return s.cp.save(s.ctx, cp)
	}
	var src imap.UIDSet
	for _, r := range mv.UIDs {
		if r[0] != 0 && r[1] >= r[0] {
			src = append(src, imap.UIDRange{Start: imap.UID(r[0]), Stop: imap.UID(r[1])})
		}
	}
	if len(src) == 0 || s.cp.cp.UIDValidity != s.uidv || !s.uidplus {
		// A new UIDVALIDITY rescans anyway, and without UID EXPUNGE the copies cannot be removed
		// alone: the Message-ID index still keeps them from becoming second requests.
		return done()
	}
	fetch := &imap.FetchOptions{UID: true, Envelope: true, RFC822Size: true, InternalDate: true}
	var here []*imapclient.FetchMessageBuffer
	if err := s.cmd(func() (err error) { here, err = s.c.Fetch(src, fetch).Collect(); return err }); err != nil {
		return fmt.Errorf("interrupted move: fetch sources: %w", err)
	}
	if len(here) == 0 {
		return done() // the move completed
	}
	var copies []*imapclient.FetchMessageBuffer
	var dest *imap.SelectData
	if err := s.cmd(func() (err error) {
		dest, err = s.c.Select(mv.Folder, &imap.SelectOptions{ReadOnly: true}).Wait()
		return err
	}); err != nil {
		return fmt.Errorf("interrupted move: examine %s: %w", mv.Folder, err)
	}
	if dest.UIDValidity == mv.DestUIDValidity && dest.NumMessages > 0 {
		from := imap.UIDSet{imap.UIDRange{Start: imap.UID(mv.DestUIDNext), Stop: 0}}
		if err := s.cmd(func() (err error) { copies, err = s.c.Fetch(from, fetch).Collect(); return err }); err != nil {
			return fmt.Errorf("interrupted move: fetch copies: %w", err)
		}
	}
	var sel *imap.SelectData
	if err := s.cmd(func() (err error) { sel, err = s.c.Select(o.Folder, nil).Wait(); return err }); err != nil {
		return fmt.Errorf("select %s: %w", o.Folder, err)
	}
	if sel.UIDValidity != s.uidv {
		return fmt.Errorf("select %s: UIDVALIDITY changed during recovery (%d → %d)", o.Folder, s.uidv, sel.UIDValidity)
	}
	copied := map[string]bool{}
	for _, c := range copies {
		if uint32(c.UID) >= mv.DestUIDNext { // "n:*" includes the highest UID even below n
			copied[moveKey(c)] = true
		}
	}
	var drop imap.UIDSet
	for _, h := range here {
		if copied[moveKey(h)] {
			drop.AddNum(h.UID)
		}
	}
	if len(drop) > 0 {
		if err := s.cmd(func() error {
			return s.c.Store(drop, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagSeen, imap.FlagDeleted}}, nil).Close()
		}); err != nil {
			return fmt.Errorf("interrupted move: store \\Deleted: %w", err)
		}
		if err := s.cmd(func() error { return s.c.UIDExpunge(drop).Close() }); err != nil {
			return fmt.Errorf("interrupted move: expunge: %w", err)
		}
		n := 0
		for _, r := range drop {
			n += int(r.Stop-r.Start) + 1
		}
		s.m.m.moveRecovered.WithLabelValues(o.Name).Add(float64(n))
		s.m.log.Warn("interrupted move completed: the copies were in place, the originals removed", "folder", mv.Folder, "uids", drop.String())
	}
	return done()
}
