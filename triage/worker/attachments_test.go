package worker_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/channels/natsjs/natstest"
	"github.com/ipn-cgsi/caud/triage"
	"github.com/ipn-cgsi/caud/triage/worker"
)

// TestMailWithOnlyAnAttachedOficioIsNotAclaracion: a mail without text whose attachment was read
// (a scanned oficio) is triaged from the attachment, into its service's queue.
func TestMailWithOnlyAnAttachedOficioIsNotAclaracion(t *testing.T) {
	env := natstest.Start(t, natsjs.Topology{})
	sink := natsjs.NewSink(env.Handles, natsjs.SinkOptions{})
	ocr, err := os.ReadFile("testdata/oficio-nodos-red.txt")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	publishMail := func(id string, a channels.Attachment) string {
		r := &channels.Request{
			ID: channels.NewIDs().New(now), Channel: channels.MediumEmail, ReceivedAt: now,
			Source:      channels.Source{Mailbox: "cau@ipn.mx", MessageID: "<" + id + "@ipn.mx>"},
			Requester:   channels.Requester{Email: "direccion.cecyt9@ipn.mx"},
			Attachments: []channels.Attachment{a},
		}
		if _, err := sink.Publish(context.Background(), channels.Submission{Request: r, Subject: "email.cau", MsgID: "email:" + id, Source: "imap://cau@ipn.mx/INBOX"}); err != nil {
			t.Fatal(err)
		}
		return r.ID
	}
	read := publishMail("read", channels.Attachment{Name: "oficio.jpg", ContentType: "image/jpeg", Size: 75756, SHA256: "x", Text: string(ocr), Method: "ocr", Pages: 1})
	unread := publishMail("unread", channels.Attachment{Name: "oficio.jpg", ContentType: "image/jpeg", Size: 75756, SHA256: "y", Unread: "tools_missing"})
	startWorker(t, env, worker.Options{})
	ctx := context.Background()
	for id, want := range map[string]string{read: triage.OutcomeSAI, unread: triage.OutcomeAclaracion} {
		waitFor(t, "index of "+id, func() bool {
			s, _, err := natsjs.GetState(ctx, env.Requests, id)
			return err == nil && s.State == natsjs.StateQueued
		})
		s, _, _ := natsjs.GetState(ctx, env.Requests, id)
		if s.Queue != want {
			t.Errorf("%s: queue %q, want %q", id, s.Queue, want)
		}
	}
}
