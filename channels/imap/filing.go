package imap

import (
	"bytes"
	"context"
	"fmt"
	"strconv"

	"github.com/emersion/go-imap/v2"

	"github.com/ipn-cgsi/caud/channels/deadletter"
)

// file marks uids \Seen and moves them to folder (MOVE, else COPY + STORE \Deleted + UID
// EXPUNGE); with no folder it adds keyword and leaves them in place.
func (s *session) file(uids imap.UIDSet, folder, keyword string) error {
	if len(uids) == 0 {
		return nil
	}
	flags := []imap.Flag{imap.FlagSeen}
	if folder == "" || folder == s.m.o.Folder {
		flags = append(flags, imap.Flag(keyword))
	}
	if err := s.cmd(func() error {
		return s.c.Store(uids, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: flags}, nil).Close()
	}); err != nil {
		return fmt.Errorf("store flags: %w", err)
	}
	if folder == "" || folder == s.m.o.Folder {
		return nil
	}
	if err := s.recordMove(uids, folder); err != nil {
		return err
	}
	if s.move {
		if err := s.cmd(func() error { _, err := s.c.Move(uids, folder).Wait(); return err }); err != nil {
			return fmt.Errorf("move to %s: %w", folder, err)
		}
		return nil
	}
	if err := s.cmd(func() error { _, err := s.c.Copy(uids, folder).Wait(); return err }); err != nil {
		return fmt.Errorf("copy to %s: %w", folder, err)
	}
	if err := s.cmd(func() error {
		return s.c.Store(uids, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close()
	}); err != nil {
		return fmt.Errorf("store \\Deleted: %w", err)
	}
	if err := s.cmd(func() error {
		if s.uidplus {
			return s.c.UIDExpunge(uids).Close()
		}
		return s.c.Expunge().Close()
	}); err != nil {
		return fmt.Errorf("expunge: %w", err)
	}
	return nil
}

// quarantine archives a poison message, dead-letters it with the reason and files it in the
// quarantine folder. The mailbox goes on.
func (s *session) quarantine(uid imap.UID, raw []byte, reason, detail string) (outcome, error) {
	o := s.m.o
	obj, err := s.sink.Archive(s.ctx, o.Channel, "message/rfc822", bytes.NewReader(raw))
	if err != nil {
		return outFailed, fmt.Errorf("archive poison: %w", err)
	}
	var body []byte
	if len(raw) <= 256<<10 {
		body = raw
	}
	msg := deadletter.NewMsg(deadletter.StageIMAP, fmt.Sprintf("imap-dlq:%s:%d:%d", o.Name, s.uidv, uid), reason+": "+detail, body)
	msg.Header.Set(deadletter.HeaderOrigObject, obj.Object)
	msg.Header.Set("Cau-Mailbox", o.Address)
	msg.Header.Set("Cau-Folder", o.Folder)
	msg.Header.Set("Cau-Uidvalidity", strconv.FormatUint(uint64(s.uidv), 10))
	msg.Header.Set("Cau-Uid", strconv.FormatUint(uint64(uid), 10))
	pctx, cancel := context.WithTimeout(s.ctx, o.CommandTimeout)
	defer cancel()
	if err := deadletter.Publish(pctx, o.JS, msg); err != nil {
		return outFailed, err
	}
	s.m.stats.quarantined.Add(1)
	s.m.m.quarantined.WithLabelValues(o.Name, reason).Inc()
	s.m.log.Warn("poison mail quarantined", "uid", uid, "reason", reason, "detail", detail, "object", obj.Object)
	return outQuarantined, nil
}
