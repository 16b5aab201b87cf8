// Package imap is the e-mail channel: it ingests IMAP mailboxes (crm@, cau@) pushed by IDLE, with
// UIDVALIDITY/UID checkpoints in KV, a Message-ID index against duplicates, MIME normalization,
// auto-reply and bounce suppression, follow-up linking, quarantine of poison mail, and a lease so
// that one process at a time works each mailbox. It is the only package that imports go-imap.
package imap

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/config"
)

// TLS modes of Options.TLS.
const (
	TLSImplicit = "implicit"
	TLSStartTLS = "starttls"
	TLSInsecure = "insecure"
)

// Options configures one mailbox. Zero values are the documented defaults.
type Options struct {
	// Name is the short name used in KV keys and metrics: lowercase letters, digits, - and _. Required.
	Name string
	// Address is the mailbox's e-mail address (cau@ipn.mx). Required.
	Address string
	// Host is "host:port" or "host"; the port defaults to 993 with implicit TLS, else 143. Required.
	Host string
	// TLS is implicit (default), starttls, or insecure (plaintext; logged as a warning).
	TLS string
	// TLSConfig overrides the TLS client configuration (e.g. a private CA); nil means system roots.
	TLSConfig *tls.Config
	// Username defaults to Address.
	Username string
	// Password, or PasswordFile (read once by New, trailing newline trimmed).
	Password     string
	PasswordFile string
	// Folder to ingest; default INBOX.
	Folder string
	// ProcessedFolder receives handled mail (created if missing); default "Procesados". Ignored
	// with FlagOnly, which leaves mail in Folder marked \Seen and $CauProcesado instead.
	ProcessedFolder string
	FlagOnly        bool
	// QuarantineFolder receives poison mail (unparseable, over MaxMessageBytes); default "Cuarentena".
	QuarantineFolder string
	// SuppressedFolder receives auto-replies and bounces; default ProcessedFolder (with FlagOnly:
	// flagged in place).
	SuppressedFolder string
	// MaxMessageBytes is the largest message ingested; larger ones are quarantined. Default 25 MiB.
	MaxMessageBytes int64
	// PollInterval is the sync interval when the server lacks IDLE; default 1 min.
	PollInterval time.Duration
	// Channel is the subject token (cau.inbound.<Channel>); default "email."+Name.
	Channel string
	// State is KV cau_state (checkpoints, lease). Required.
	State jetstream.KeyValue
	// Requests is KV cau_requests (the Message-ID index). Required.
	Requests jetstream.KeyValue
	// JS publishes dead letters on cau.dlq.imap and reads CAU_INBOUND. Required.
	JS jetstream.JetStream
	// Holder identifies this process in the lease; default "<hostname>:<pid>". A holder that finds
	// the lease under its own name takes it at once, so a value that survives a restart (caud uses
	// an instance id kept in its data dir) lets a restarted process resume without waiting.
	Holder string
	// LeaseTTL is how long a lease lasts without renewal (renewed every third of it); default 8 s.
	// A standby takes over at most this long after the holder died, at once after a clean stop.
	LeaseTTL time.Duration
	// CommandTimeout bounds every IMAP command (go-imap has no timeout on the first response
	// byte); fetches get this plus 1 s per MiB. Default 60 s.
	CommandTimeout time.Duration
	// IdleRefresh is how often IDLE is re-issued (RFC 2177 asks for less than 29 min); default 20 min.
	IdleRefresh time.Duration
	// BatchSize is the most messages fetched per UID FETCH; default 200. BatchBytes caps the bytes
	// of one batch; default 32 MiB.
	BatchSize  int
	BatchBytes int64
	// Workers is how many messages of a batch are normalized and published at once; default 16.
	Workers int
	// MinBackoff and MaxBackoff bound the reconnect backoff (exponential with full jitter);
	// defaults 500 ms and 2 min.
	MinBackoff, MaxBackoff time.Duration
	// RedialBackoff caps the backoff while the server cannot be reached at all (connection
	// refused, no greeting); default 1 s, so the mailbox reconnects within about a second of
	// the server's return. Login and protocol failures back off up to MaxBackoff.
	RedialBackoff time.Duration
	// Units is the IPN unit list for signatures; default the embedded config list.
	Units *config.Units
	// Logger defaults to a discarding logger; Registerer to none (metrics kept but not exported).
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Attachments reads PDF and image attachments (channels/memo.Reader) before the request is
	// published; nil archives them unread.
	Attachments channels.AttachmentReader
	// AttachmentTimeout bounds the reading of one mail's attachments; default 20 s. What is not
	// read by then is published unread (Unread "timeout").
	AttachmentTimeout time.Duration
	// MaxAttachmentReadBytes: larger attachments are archived but not read; default 10 MiB.
	// MaxAttachmentsRead is the most attachments read per mail; default 4.
	MaxAttachmentReadBytes int64
	MaxAttachmentsRead     int
	// Dial opens the TCP connection (tests use it to inject faults); default a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

var validName = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)

// ErrConfig is wrapped by New's validation errors.
var ErrConfig = errors.New("invalid imap mailbox options")

func (o Options) withDefaults() (Options, error) {
	if !validName.MatchString(o.Name) {
		return o, fmt.Errorf("%w: name %q: want lowercase letters, digits, - and _", ErrConfig, o.Name)
	}
	if o.Address == "" || o.Host == "" {
		return o, fmt.Errorf("%w: %s: address and host are required", ErrConfig, o.Name)
	}
	if o.State == nil || o.Requests == nil || o.JS == nil {
		return o, fmt.Errorf("%w: %s: State, Requests and JS are required", ErrConfig, o.Name)
	}
	o.TLS = strings.ToLower(o.TLS)
	switch o.TLS {
	case "":
		o.TLS = TLSImplicit
	case TLSImplicit, TLSStartTLS, TLSInsecure:
	default:
		return o, fmt.Errorf("%w: %s: tls %q: want implicit, starttls or insecure", ErrConfig, o.Name, o.TLS)
	}
	if _, _, err := net.SplitHostPort(o.Host); err != nil {
		port := "143"
		if o.TLS == TLSImplicit {
			port = "993"
		}
		o.Host = net.JoinHostPort(strings.Trim(o.Host, "[]"), port)
	}
	if o.Username == "" {
		o.Username = o.Address
	}
	if o.Password == "" && o.PasswordFile != "" {
		b, err := os.ReadFile(o.PasswordFile)
		if err != nil {
			return o, fmt.Errorf("%w: %s: password file: %v", ErrConfig, o.Name, err)
		}
		o.Password = strings.TrimRight(string(b), "\r\n")
	}
	if o.Folder == "" {
		o.Folder = "INBOX"
	}
	if o.FlagOnly {
		o.ProcessedFolder = ""
	} else if o.ProcessedFolder == "" {
		o.ProcessedFolder = "Procesados"
	}
	if o.SuppressedFolder == "" {
		o.SuppressedFolder = o.ProcessedFolder
	}
	if o.QuarantineFolder == "" {
		o.QuarantineFolder = "Cuarentena"
	}
	if o.MaxMessageBytes <= 0 {
		o.MaxMessageBytes = 25 << 20
	}
	if o.PollInterval <= 0 {
		o.PollInterval = time.Minute
	}
	if o.Channel == "" {
		o.Channel = "email." + o.Name
	}
	if o.Holder == "" {
		h, _ := os.Hostname()
		o.Holder = fmt.Sprintf("%s:%d", h, os.Getpid())
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = 8 * time.Second
	}
	if o.CommandTimeout <= 0 {
		o.CommandTimeout = 60 * time.Second
	}
	if o.IdleRefresh <= 0 || o.IdleRefresh > 28*time.Minute {
		o.IdleRefresh = 20 * time.Minute
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 200
	}
	if o.BatchBytes <= 0 {
		o.BatchBytes = 32 << 20
	}
	if o.Workers <= 0 {
		o.Workers = 16
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 500 * time.Millisecond
	}
	if o.AttachmentTimeout <= 0 {
		o.AttachmentTimeout = 20 * time.Second
	}
	if o.MaxAttachmentReadBytes <= 0 {
		o.MaxAttachmentReadBytes = 10 << 20
	}
	if o.MaxAttachmentsRead <= 0 {
		o.MaxAttachmentsRead = 4
	}
	if o.RedialBackoff <= 0 {
		o.RedialBackoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 2 * time.Minute
	}
	if o.Units == nil {
		u, err := config.LoadUnits("")
		if err != nil {
			return o, fmt.Errorf("%w: units: %v", ErrConfig, err)
		}
		o.Units = u
	}
	o.Logger = channels.OrDiscard(o.Logger)
	if o.Dial == nil {
		d := &net.Dialer{Timeout: o.CommandTimeout, KeepAlive: 30 * time.Second}
		o.Dial = d.DialContext
	}
	return o, nil
}
