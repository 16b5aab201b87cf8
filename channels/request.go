// Package channels defines the Request envelope that every intake channel produces, the Sink that
// publishes it durably, and the Channel interface that adapters implement. Implementations live in
// sub-packages named after what they depend on (channels/jetstream, channels/desk, ...).
package channels

import (
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
)

// Subject tokens of CAU_INBOUND: a request is published on cau.inbound.<token> (Submission.Subject).
// They name where it came in (a mailbox, the spool, a webhook), not the medium: Request.Channel
// holds the medium (Medium*), so mail to cau@ and crm@ is Subject email.cau / email.crm and Medium
// email.
const (
	SubjectEmailCAU = "email.cau"
	SubjectEmailCRM = "email.crm"
	SubjectMemo     = "memo"
	SubjectFacebook = "facebook"
	SubjectX        = "x"
	SubjectDesk     = "desk"
)

// Request.Channel values: the medium the request arrived by (e-mail, memo, Facebook, X, phone, in
// person), as agents and the triage read it.
const (
	MediumEmail    = "email"
	MediumMemo     = "memo"
	MediumFacebook = "facebook"
	MediumX        = "x"
	MediumPhone    = "phone"
	MediumInPerson = "in_person"
)

// Requester roles of the Script de atención (FO-CAU-01-01).
const (
	RoleDocente        = "docente"
	RoleAdministrativo = "administrativo"
	RoleAlumno         = "alumno"
	RoleOtro           = "otro"
)

// Request is the normalized form of anything that reached the help desk. It is the JSON body of
// messages on cau.inbound.*. Optional parts are pointers or omitted when empty.
type Request struct {
	ID          string       `json:"id"`
	Channel     string       `json:"channel"`
	ReceivedAt  time.Time    `json:"received_at"`
	Source      Source       `json:"source"`
	Requester   Requester    `json:"requester"`
	Subject     string       `json:"subject,omitempty"`
	Text        string       `json:"text"`
	Signature   string       `json:"signature,omitempty"`
	Quoted      string       `json:"quoted,omitempty"`
	Attachments []Attachment `json:"attachments,omitempty"`
	Original    *Object      `json:"original,omitempty"`
	Thread      *Thread      `json:"thread,omitempty"`
	Auto        Auto         `json:"auto"`
	// Defects lists what was wrong with the input and was worked around (a broken mail header, a
	// guessed charset…), so that the agent knows the text may be incomplete. Empty for clean input.
	Defects []Defect `json:"defects,omitempty"`
	// Forwarded is true when Text includes a message the requester forwarded (after its own
	// marker line); the requester is still who forwarded it.
	Forwarded bool `json:"forwarded,omitempty"`
	// Memo holds the fields of a scanned memo (channel memo).
	Memo *Memo `json:"memo,omitempty"`
	// Confirm asks for a confirmation message to the requester even on channels where the agent
	// already spoke to the person (desk intake).
	Confirm bool `json:"confirm,omitempty"`
}

// Source says where exactly a request came from; which fields are set depends on the channel.
type Source struct {
	Mailbox        string `json:"mailbox,omitempty"`
	Folder         string `json:"folder,omitempty"`
	UIDValidity    uint32 `json:"uidvalidity,omitempty"`
	UID            uint32 `json:"uid,omitempty"`
	MessageID      string `json:"message_id,omitempty"`
	File           string `json:"file,omitempty"`
	PlatformID     string `json:"platform_id,omitempty"`
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	Agent          string `json:"agent,omitempty"`
	// Social keeps what a reply on a social network needs.
	Social *Social `json:"social,omitempty"`
}

// Social identifies a Facebook or X message or post so that a reply can reach it.
type Social struct {
	Platform string `json:"platform"`          // facebook | x
	Kind     string `json:"kind"`              // message | comment | dm | mention
	PageID   string `json:"page_id,omitempty"` // Facebook Page that received it
	// SenderID is the Messenger PSID, the commenter's id, or the X user id.
	SenderID       string `json:"sender_id,omitempty"`
	RecipientID    string `json:"recipient_id,omitempty"`
	MessageID      string `json:"message_id,omitempty"` // Messenger mid, X DM event id
	CommentID      string `json:"comment_id,omitempty"`
	PostID         string `json:"post_id,omitempty"`
	TweetID        string `json:"tweet_id,omitempty"`
	ConversationID string `json:"conversation_id,omitempty"`
	ForUserID      string `json:"for_user_id,omitempty"` // the X account the webhook is for
	// Media are the URLs (or geo: URIs) of what the message carried: photos, files, locations.
	// They point to the platform and are not archived; they may expire.
	Media []string `json:"media,omitempty"`
}

// Memo is what was read off a scanned official memo (oficio).
type Memo struct {
	Number     string   `json:"number,omitempty"`    // Oficio No. ESCOM/SA/0457/2025
	Date       string   `json:"date,omitempty"`      // 2025-10-14 when the date could be read
	DateText   string   `json:"date_text,omitempty"` // as printed
	Unit       string   `json:"unit,omitempty"`      // issuing unit, canonical id when known
	Subject    string   `json:"subject,omitempty"`   // Asunto:
	Addressee  string   `json:"addressee,omitempty"`
	Signer     string   `json:"signer,omitempty"`
	Position   string   `json:"position,omitempty"`
	CCP        []string `json:"ccp,omitempty"`
	Emails     []string `json:"emails,omitempty"`
	Extensions []string `json:"extensions,omitempty"`
	Pages      int      `json:"pages,omitempty"`
	// Method is "text" (PDF text layer) or "ocr"; Confidence is tesseract's mean word confidence 0-100.
	Method     string  `json:"method,omitempty"`
	Confidence float64 `json:"confidence,omitempty"`
}

// AttachmentText is the text of the request's attachments, each under a "[adjunto NAME]" line,
// at most max bytes (cut at a rune boundary); "" when none was read.
func (r *Request) AttachmentText(max int) string {
	var b strings.Builder
	for _, a := range r.Attachments {
		if strings.TrimSpace(a.Text) == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("\n\n")
		}
		b.WriteString("[adjunto " + a.Name + "]\n")
		b.WriteString(a.Text)
		if b.Len() >= max {
			break
		}
	}
	s := b.String()
	if len(s) > max {
		s = strings.ToValidUTF8(s[:max], "")
	}
	return s
}

// Requester is who asked. Handle is the social-network handle; nil when not applicable.
type Requester struct {
	Name      string  `json:"name,omitempty"`
	Email     string  `json:"email,omitempty"`
	Phone     string  `json:"phone,omitempty"`
	Handle    *string `json:"handle"`
	Unit      string  `json:"unit,omitempty"`
	Role      string  `json:"role,omitempty"`
	Extension string  `json:"extension,omitempty"`
}

// Attachment is a file that came with the request, archived in the object store.
type Attachment struct {
	Name        string `json:"name"`
	ContentType string `json:"content_type"`
	Size        int64  `json:"size"`
	SHA256      string `json:"sha256"`
	Object      string `json:"object,omitempty"`
	// Text is what could be read of a PDF or image attachment (its text layer, or OCR); it is
	// triaged below the body (triage reads it as attachment text). Method is "text" or "ocr",
	// Pages the pages read. Unread, when set, says why a readable type was not read (too_large,
	// too_many_pages, timeout, tools_missing, unreadable).
	Text   string `json:"text,omitempty"`
	Method string `json:"method,omitempty"`
	Pages  int    `json:"pages,omitempty"`
	Unread string `json:"unread,omitempty"`
}

// Object references bytes archived in the cau_originals object store.
type Object struct {
	Object string `json:"object"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// Thread carries the mail threading headers used to link follow-ups.
type Thread struct {
	InReplyTo  string   `json:"in_reply_to,omitempty"`
	References []string `json:"references,omitempty"`
	FollowupOf string   `json:"followup_of,omitempty"`
}

// Auto flags machine-generated input (auto-replies, bounces) and list or bulk mail; such requests
// get no notification (NoReply).
type Auto struct {
	AutoSubmitted bool `json:"auto_submitted"`
	// Bulk is "list" for mail through a mailing list (List-Id…) and "bulk" for Precedence: bulk or
	// junk: a person may have written it, but it is never answered automatically.
	Bulk string `json:"bulk,omitempty"`
	// ListID is the List-Id of list mail, as written.
	ListID string `json:"list_id,omitempty"`
}

// NoReply reports whether the requester must not get an automatic notice.
func (a Auto) NoReply() bool { return a.AutoSubmitted || a.Bulk != "" }

// Defect is one problem of the input that was worked around: a stable code for tools and metrics,
// and a sentence in Spanish for the agent.
type Defect struct {
	Code string `json:"code"`
	Text string `json:"text"`
}

// Limits on what a Request may carry; larger input is rejected, never truncated silently.
const (
	MaxTextBytes    = 256 << 10
	MaxSubjectBytes = 2 << 10
)

// ErrInvalid is wrapped by every validation error of Validate.
var ErrInvalid = errors.New("invalid request")

var knownChannels = map[string]bool{
	MediumEmail: true, MediumMemo: true, MediumFacebook: true, MediumX: true,
	MediumPhone: true, MediumInPerson: true,
}

var knownRoles = map[string]bool{
	"": true, RoleDocente: true, RoleAdministrativo: true, RoleAlumno: true, RoleOtro: true,
}

// Validate checks the invariants every consumer relies on. Errors wrap ErrInvalid.
func (r *Request) Validate() error {
	switch {
	case r.ID == "":
		return fmt.Errorf("%w: id is empty", ErrInvalid)
	case !knownChannels[r.Channel]:
		return fmt.Errorf("%w: unknown channel %q", ErrInvalid, r.Channel)
	case r.ReceivedAt.IsZero():
		return fmt.Errorf("%w: received_at is zero", ErrInvalid)
	case strings.TrimSpace(r.Text) == "" && strings.TrimSpace(r.Subject) == "" && len(r.Attachments) == 0:
		return fmt.Errorf("%w: no text, subject or attachment", ErrInvalid)
	case len(r.Text) > MaxTextBytes:
		return fmt.Errorf("%w: text is %d bytes, over %d", ErrInvalid, len(r.Text), MaxTextBytes)
	case len(r.Subject) > MaxSubjectBytes:
		return fmt.Errorf("%w: subject is %d bytes, over %d", ErrInvalid, len(r.Subject), MaxSubjectBytes)
	case !knownRoles[r.Requester.Role]:
		return fmt.Errorf("%w: unknown role %q", ErrInvalid, r.Requester.Role)
	}
	if _, err := ulid.ParseStrict(r.ID); err != nil {
		return fmt.Errorf("%w: id %q is not a ULID: %v", ErrInvalid, r.ID, err)
	}
	return nil
}

// IDs makes monotonic ULIDs; safe for concurrent use.
type IDs struct {
	mu      sync.Mutex
	entropy *ulid.MonotonicEntropy
}

// NewIDs returns a ULID generator seeded from crypto/rand.
func NewIDs() *IDs {
	return &IDs{entropy: ulid.Monotonic(rand.Reader, 0)}
}

// New returns a new ULID string for time t.
func (g *IDs) New(t time.Time) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return ulid.MustNew(ulid.Timestamp(t), g.entropy).String()
}
