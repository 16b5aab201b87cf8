// Package config loads caud's configuration into plain typed structs.
//
// Sources, highest precedence first: command-line flags, environment variables CAU_<KEY PATH>
// (e.g. CAU_HTTP_LISTEN, CAU_NATS_EMBEDDED_LISTEN, CAU_SOCIAL_FACEBOOK_APP_SECRET), a YAML file
// (--config or CAU_CONFIG), then defaults. Viper is used internally and never leaves this package.
// caud.example.yaml beside this file documents every key with its default.
//
// Sizes (the *_bytes, max_memory and max_store keys) are integers in bytes or strings with a unit:
// "512KB", "25MB", "1.5GiB". Units are powers of 1024 whatever the spelling: K, KB and KiB all mean
// 1024 bytes; M/MB/MiB, G/GB/GiB and T/TB/TiB likewise. Durations are Go durations ("90s", "15m",
// "72h"); a bare number other than 0 is refused so that "72" is never read as 72 nanoseconds.
//
// The package also ships the list of IPN units (units.yaml, see LoadUnits).
package config

import (
	"time"
)

// Roles a caud process can run.
const (
	RoleIntake = "intake" // channel adapters: IMAP, memo spool, social webhooks, desk API
	RoleTriage = "triage" // the triage worker on CAU_INBOUND
	RoleQueues = "queues" // agent work queues: claim, done, release, extend, reroute
)

// Config is caud's whole configuration. The zero value is not usable: obtain one from Load.
type Config struct {
	// File is the YAML file that was read, "" when none. It is not a configuration key.
	File string `mapstructure:"-"`
	// envWarnings are the CAU_* variables of the environment that name no key (typos).
	envWarnings []string

	DataDir string        `mapstructure:"data_dir"` // data_dir, default "./data"
	Roles   []string      `mapstructure:"roles"`    // roles, default [intake, triage, queues]
	Log     LogConfig     `mapstructure:"log"`
	HTTP    HTTPConfig    `mapstructure:"http"`
	NATS    NATSConfig    `mapstructure:"nats"`
	IMAP    IMAPConfig    `mapstructure:"imap"`
	Memo    MemoConfig    `mapstructure:"memo"`
	Social  SocialConfig  `mapstructure:"social"`
	Triage  TriageConfig  `mapstructure:"triage"`
	Queues  QueuesConfig  `mapstructure:"queues"`
	Notify  NotifyConfig  `mapstructure:"notify"`
	Units   UnitsConfig   `mapstructure:"units"`
	Console ConsoleConfig `mapstructure:"console"`
}

// HasRole reports whether role is among c.Roles.
func (c *Config) HasRole(role string) bool {
	for _, r := range c.Roles {
		if r == role {
			return true
		}
	}
	return false
}

// LogConfig selects the slog handler: level debug|info|warn|error (default info), format text|json
// (default text).
type LogConfig struct {
	Level  string `mapstructure:"level"`
	Format string `mapstructure:"format"`
}

// HTTPConfig is the single HTTP listener (API, webhooks, health, metrics).
type HTTPConfig struct {
	Listen       string `mapstructure:"listen"`         // http.listen, default "127.0.0.1:8080"
	TokenFile    string `mapstructure:"token_file"`     // http.token_file: file holding the API bearer token
	Token        string `mapstructure:"token"`          // http.token, or the content of token_file; "" = API on loopback only
	MaxBodyBytes int64  `mapstructure:"max_body_bytes"` // http.max_body_bytes, default 1 MiB (desk/API JSON bodies)
}

// NATSConfig says where JetStream is: an embedded server (URL "") or an external cluster.
type NATSConfig struct {
	URL          string       `mapstructure:"url"` // nats.url: "" = embedded; else comma-separated nats:// URLs
	URLs         []string     `mapstructure:"-"`   // URL split and trimmed; nil when embedded
	Embedded     EmbeddedNATS `mapstructure:"embedded"`
	Replicas     int          `mapstructure:"replicas"`      // nats.replicas, default 1 (1, 3 or 5)
	CredsFile    string       `mapstructure:"creds_file"`    // nats.creds_file
	User         string       `mapstructure:"user"`          // nats.user
	Password     string       `mapstructure:"password"`      // nats.password, or the content of password_file
	PasswordFile string       `mapstructure:"password_file"` // nats.password_file
	Token        string       `mapstructure:"token"`         // nats.token
	TLS          TLSFiles     `mapstructure:"tls"`           // nats.tls
	// DedupWindow is the JetStream duplicate window of CAU_INBOUND (nats.dedup_window, default 10m;
	// at least 1m; below 10m is allowed but warned about).
	DedupWindow time.Duration `mapstructure:"dedup_window"`
	// Retention is the max age of CAU_INBOUND, CAU_TRIAGED and CAU_DLQ (nats.retention, default
	// 2160h = 90 days; at least the dedup window).
	Retention      time.Duration `mapstructure:"retention"`
	ConnectTimeout time.Duration `mapstructure:"connect_timeout"` // nats.connect_timeout, default 5s
	// FailoverAfter is how long intake waits for one raft group on a cluster before it takes the
	// other way (nats.failover_after, default 750ms; 100ms to 5s): for CAU_INBOUND's ack before
	// publishing to the spare lane CAU_INBOUND_SPARE too, and (1.33 times it, 1 s by default) for
	// the desk's idempotency record before reading it from any replica.
	FailoverAfter time.Duration `mapstructure:"failover_after"`
}

// IsEmbedded reports whether caud runs its own in-process NATS server (nats.url is empty).
func (n *NATSConfig) IsEmbedded() bool { return n.URL == "" }

// EmbeddedNATS configures the in-process server used when nats.url is empty.
type EmbeddedNATS struct {
	// Listen is the client port (nats.embedded.listen, default "127.0.0.1:4222"); "" (or "none",
	// handy from the environment, where an empty variable counts as unset) = in-process only.
	Listen    string `mapstructure:"listen"`
	StoreDir  string `mapstructure:"store_dir"`  // nats.embedded.store_dir, default <data_dir>/jetstream
	MaxMemory int64  `mapstructure:"max_memory"` // nats.embedded.max_memory, default 256 MiB
	MaxStore  int64  `mapstructure:"max_store"`  // nats.embedded.max_store, default 10 GiB
	// ResumeFree is the free space the store's filesystem needs before caud restarts JetStream
	// after the disk ran full (nats.embedded.resume_free, default 64 MiB, or a tenth of the
	// filesystem when that is less).
	ResumeFree int64 `mapstructure:"resume_free"`
	// Auth requires a token on the client port (nats.embedded.auth, default true). The token is
	// read from TokenFile (nats.embedded.token_file, default <data_dir>/nats.token), which caud
	// creates with mode 0600 and a random token when it does not exist.
	Auth      bool   `mapstructure:"auth"`
	TokenFile string `mapstructure:"token_file"`
}

// TLSFiles are PEM files for a TLS client: CA bundle, and an optional client certificate and key
// (both or neither).
type TLSFiles struct {
	CAFile   string `mapstructure:"ca_file"`
	CertFile string `mapstructure:"cert_file"`
	KeyFile  string `mapstructure:"key_file"`
}

// IMAPConfig lists the mailboxes to ingest. Mailboxes come only from the file (no env, no flag).
type IMAPConfig struct {
	Mailboxes []Mailbox `mapstructure:"mailboxes"`
	// LeaseTTL is how long a mailbox lease lasts without renewal (imap.lease_ttl, default 8s; at
	// least 3s). The holder renews it every third; a standby takes over at most this long after
	// the holder died, and at once when the holder stopped cleanly.
	LeaseTTL time.Duration `mapstructure:"lease_ttl"`
	// Attachments bounds the reading of PDF and image attachments (imap.attachments.*).
	Attachments AttachmentsConfig `mapstructure:"attachments"`
}

// AttachmentsConfig: PDF and image attachments of mail are read (PDF text layer, else OCR) before
// the request is published, so that the triage reads them and an attached oficio fills the memo
// fields. Read default true; MaxBytes default 10 MiB per attachment; MaxPages default 5; Timeout
// default 20s per mail (what is not read by then is published unread); Workers default 2 (files
// read at once across all mailboxes).
type AttachmentsConfig struct {
	Read     bool          `mapstructure:"read"`
	MaxBytes int64         `mapstructure:"max_bytes"`
	MaxPages int           `mapstructure:"max_pages"`
	Timeout  time.Duration `mapstructure:"timeout"`
	Workers  int           `mapstructure:"workers"`
}

// Mailbox is one IMAP mailbox (imap.mailboxes[i]). Name, Address, Host and a password are required.
type Mailbox struct {
	Name             string        `mapstructure:"name"`              // short name: lowercase letters, digits, - and _ (e.g. cau)
	Address          string        `mapstructure:"address"`           // e-mail address of the mailbox (cau@ipn.mx)
	Host             string        `mapstructure:"host"`              // "imap.example.mx:993" (host:port)
	TLS              string        `mapstructure:"tls"`               // implicit (default) | starttls | insecure
	Username         string        `mapstructure:"username"`          // default Address
	Password         string        `mapstructure:"password"`          // or the content of password_file
	PasswordFile     string        `mapstructure:"password_file"`     // file holding the password
	Folder           string        `mapstructure:"folder"`            // default INBOX
	ProcessedFolder  string        `mapstructure:"processed_folder"`  // default "Procesados"; "" with FlagOnly
	FlagOnly         bool          `mapstructure:"flag_only"`         // mark \Seen and a keyword instead of moving
	QuarantineFolder string        `mapstructure:"quarantine_folder"` // default "Cuarentena"
	MaxMessageBytes  int64         `mapstructure:"max_message_bytes"` // default 25 MiB
	PollInterval     time.Duration `mapstructure:"poll_interval"`     // default 1m, used only without IDLE
	Channel          string        `mapstructure:"channel"`           // subject suffix, default "email."+Name
}

// MemoConfig is the scanned-memo spool (memo.*): enabled default true, spool_dir default
// <data_dir>/spool, max_bytes default 50 MiB per upload or file, workers default 2.
type MemoConfig struct {
	Enabled  bool   `mapstructure:"enabled"`
	SpoolDir string `mapstructure:"spool_dir"`
	MaxBytes int64  `mapstructure:"max_bytes"`
	Workers  int    `mapstructure:"workers"`
	// PageWorkers is how many pages of one PDF are read at once (memo.page_workers, default 2).
	PageWorkers int `mapstructure:"page_workers"`
	// PageTimeout bounds rendering and OCR of one page (memo.page_timeout, default 60s).
	PageTimeout time.Duration `mapstructure:"page_timeout"`
	// MaxPages is the most pages a memo may have (memo.max_pages, default 20).
	MaxPages int `mapstructure:"max_pages"`
}

// SocialConfig holds the webhook secrets of the social channels.
type SocialConfig struct {
	Facebook FacebookConfig `mapstructure:"facebook"`
	X        XConfig        `mapstructure:"x"`
}

// FacebookConfig is the Meta app behind the Facebook Page webhook (social.facebook.*). The webhook is
// enabled when AppSecret is set. APIBase defaults to "https://graph.facebook.com/v21.0".
type FacebookConfig struct {
	AppSecret           string `mapstructure:"app_secret"`
	AppSecretFile       string `mapstructure:"app_secret_file"`
	VerifyToken         string `mapstructure:"verify_token"`
	VerifyTokenFile     string `mapstructure:"verify_token_file"`
	PageAccessToken     string `mapstructure:"page_access_token"`
	PageAccessTokenFile string `mapstructure:"page_access_token_file"`
	APIBase             string `mapstructure:"api_base"`
}

// XConfig is the X (Twitter) app behind the Account Activity webhook (social.x.*). The webhook is
// enabled when ConsumerSecret is set. APIBase defaults to "https://api.x.com/2".
type XConfig struct {
	ConsumerSecret     string `mapstructure:"consumer_secret"`
	ConsumerSecretFile string `mapstructure:"consumer_secret_file"`
	BearerToken        string `mapstructure:"bearer_token"`
	BearerTokenFile    string `mapstructure:"bearer_token_file"`
	APIBase            string `mapstructure:"api_base"`
}

// TriageConfig configures the triage worker (triage.*).
type TriageConfig struct {
	Catalog    string        `mapstructure:"catalog"`     // "" = the embedded default catalog
	Model      string        `mapstructure:"model"`       // "" = none; a model learned from agents' corrections (cauctl triage learn)
	MaxDeliver int           `mapstructure:"max_deliver"` // default 5, then dead-lettered
	AckWait    time.Duration `mapstructure:"ack_wait"`    // default 30s
	Workers    int           `mapstructure:"workers"`     // default 4 (concurrent fetch loops; keeps JetStream busy while one batch is decided)
	Batch      int           `mapstructure:"batch"`       // default 256
	// Learn is the automatic, compared retraining from the agents' corrections (triage.learn.*).
	Learn LearnConfig `mapstructure:"learn"`
}

// LearnConfig configures the automatic retraining of the triage model (triage.learn.*): enabled
// default true (it never runs while triage.model names a file, which then stays in force); every
// interval (default 10m) a process with the triage role retrains when min_new (default 10) new
// corrections have arrived, and promotes the candidate only if it beats the model in force.
type LearnConfig struct {
	Enabled  bool          `mapstructure:"enabled"`
	Interval time.Duration `mapstructure:"interval"`
	MinNew   int           `mapstructure:"min_new"`
}

// QueuesConfig bounds agent leases (queues.*): lease default 15m, max_lease default 8h (>= lease).
type QueuesConfig struct {
	Lease    time.Duration `mapstructure:"lease"`
	MaxLease time.Duration `mapstructure:"max_lease"`
}

// NotifyConfig configures the e-mail notifications to requesters (notify.*): enabled default false,
// max_age default 72h (older requests are never notified, so a backlog is not blasted).
type NotifyConfig struct {
	Enabled bool          `mapstructure:"enabled"`
	MaxAge  time.Duration `mapstructure:"max_age"`
	// MaxPerSenderPerDay caps the notices one address receives in a day (notify.max_per_sender_per_day,
	// default 5).
	MaxPerSenderPerDay int `mapstructure:"max_per_sender_per_day"`
	// Channels are the request channels whose requesters are notified (notify.channels, default all:
	// email, memo, facebook, x, phone, in_person; phone and in_person only ever get a notice when the
	// agent asked for a confirmation mail on the desk form).
	Channels []string `mapstructure:"channels"`
	// Outcomes are the triage outcomes that get a notice (notify.outcomes, default all four).
	Outcomes []string `mapstructure:"outcomes"`
	// TemplatesDir overrides the embedded notice templates with files of the same names
	// (notify.templates_dir, default "": the embedded ones).
	TemplatesDir string     `mapstructure:"templates_dir"`
	SMTP         SMTPConfig `mapstructure:"smtp"`
}

// SMTPConfig is the submission server (notify.smtp.*): port default 587, tls starttls (default) |
// implicit | none. Host and From are required when notify is enabled.
type SMTPConfig struct {
	Host         string `mapstructure:"host"`
	Port         int    `mapstructure:"port"`
	TLS          string `mapstructure:"tls"`
	Username     string `mapstructure:"username"`
	Password     string `mapstructure:"password"`
	PasswordFile string `mapstructure:"password_file"`
	From         string `mapstructure:"from"`
}

// UnitsConfig selects the IPN unit list (units.file: "" = the embedded list, see LoadUnits).
type UnitsConfig struct {
	File string `mapstructure:"file"`
}

// ConsoleConfig configures the web console served at / (console.*).
type ConsoleConfig struct {
	// Enabled serves the console (console.enabled, default true; it needs the queues role).
	Enabled bool `mapstructure:"enabled"`
	// UsersFile holds the console accounts (console.users_file, default <data_dir>/users.yaml),
	// edited with `cauctl users add|passwd|disable`.
	UsersFile string `mapstructure:"users_file"`
	// SessionTTL is how long a sign-in lasts (console.session_ttl, default 12h).
	SessionTTL time.Duration `mapstructure:"session_ttl"`
	// SecureCookies marks cookies Secure on plain HTTP too, for TLS ended at a proxy
	// (console.secure_cookies, default false; over TLS cookies are always Secure).
	SecureCookies bool `mapstructure:"secure_cookies"`
}
