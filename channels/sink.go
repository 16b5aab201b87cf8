package channels

import (
	"context"
	"errors"
	"io"
	"time"
)

// Submission is one request on its way onto cau.inbound.<Subject>.
type Submission struct {
	// Request is the normalized request; the sink fills Request.Original when Original is set.
	Request *Request
	// Subject is the channel token of the subject: email.cau, email.crm, memo, facebook, x, desk.
	Subject string
	// MsgID is the deterministic Nats-Msg-Id derived from the source (Message-ID, UIDVALIDITY/UID,
	// file SHA-256, platform id, idempotency key), so that a retry never creates a second request.
	MsgID string
	// Source is the CloudEvents ce-source, e.g. imap://cau@ipn.mx/INBOX or desk://phone.
	Source string
	// Original is the raw input to archive in cau_originals (the e-mail, the scan, the body); may be nil.
	Original []byte
	// OriginalType is the media type of Original.
	OriginalType string
}

// Receipt says what JetStream acknowledged.
type Receipt struct {
	Stream    string
	Sequence  uint64
	Duplicate bool
}

// Sink publishes requests durably. Publish returns only after JetStream acknowledged the message (or
// reported it a duplicate of one it already has); only then may an adapter mark its source as done.
// Implementations are safe for concurrent use.
type Sink interface {
	Publish(ctx context.Context, s Submission) (Receipt, error)
	// Archive stores bytes (an attachment, a scan) in the originals store under a content address
	// and returns the reference. Storing the same bytes twice is harmless.
	Archive(ctx context.Context, name, contentType string, r io.Reader) (*Object, error)
}

// RefusalNoter is implemented by sinks that report in /readyz when JetStream refuses writes for
// lack of resources; an adapter hands it the errors of its own writes to JetStream.
type RefusalNoter interface {
	NoteRefusal(err error)
}

// Recaller is implemented by sinks that can read back the request a receipt names: for a
// duplicate, the request stored the first time (channels/desk checks a reused key with it).
type Recaller interface {
	Recall(ctx context.Context, r Receipt) (*Request, error)
}

// ErrNotReady is returned by a sink that cannot reach JetStream within the caller's deadline.
var ErrNotReady = errors.New("sink not ready")

// Health is one readiness check of an adapter (a mailbox, the memo tools, a webhook), shown by
// /readyz. Since is when the check last changed to failing; zero while OK.
type Health struct {
	Name   string
	OK     bool
	Detail string
	Since  time.Time
}

// HealthReporter is implemented by adapters that have something to say in /readyz. Health must
// answer from what the adapter already knows (a Tracker), within ctx, never by running a slow check.
type HealthReporter interface {
	Health(ctx context.Context) []Health
}
