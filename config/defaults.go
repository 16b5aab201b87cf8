package config

import (
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"time"
)

// Sizes in bytes.
const (
	KiB int64 = 1 << 10
	MiB int64 = 1 << 20
	GiB int64 = 1 << 30
)

// Mailbox defaults, applied to every imap.mailboxes entry after loading.
const (
	DefaultMailboxTLS             = "implicit"
	DefaultMailboxFolder          = "INBOX"
	DefaultMailboxProcessedFolder = "Procesados"
	DefaultMailboxQuarantine      = "Cuarentena"
	DefaultMailboxMaxMessageBytes = 25 * MiB
	DefaultMailboxPollInterval    = time.Minute
)

// defaults returns the configuration used when nothing is set. Derived paths (store_dir, spool_dir)
// are left empty here and filled from data_dir after loading.
func defaults() Config {
	return Config{
		DataDir: "./data",
		Roles:   []string{RoleIntake, RoleTriage, RoleQueues},
		Log:     LogConfig{Level: "info", Format: "text"},
		HTTP:    HTTPConfig{Listen: "127.0.0.1:8080", MaxBodyBytes: 1 * MiB},
		NATS: NATSConfig{
			Embedded: EmbeddedNATS{
				Listen:    "127.0.0.1:4222",
				MaxMemory: 256 * MiB,
				MaxStore:  10 * GiB,
				Auth:      true,
			},
			Replicas:       1,
			DedupWindow:    10 * time.Minute,
			Retention:      90 * 24 * time.Hour,
			ConnectTimeout: 5 * time.Second,
			FailoverAfter:  750 * time.Millisecond,
		},
		IMAP: IMAPConfig{LeaseTTL: 8 * time.Second, Attachments: AttachmentsConfig{
			Read: true, MaxBytes: 10 * MiB, MaxPages: 5, Timeout: 20 * time.Second, Workers: 2,
		}},
		Memo: MemoConfig{Enabled: true, MaxBytes: 50 * MiB, Workers: 2, PageWorkers: 2, PageTimeout: time.Minute, MaxPages: 20},
		Social: SocialConfig{
			Facebook: FacebookConfig{APIBase: "https://graph.facebook.com/v21.0"},
			X:        XConfig{APIBase: "https://api.x.com/2"},
		},
		Triage: TriageConfig{MaxDeliver: 5, AckWait: 30 * time.Second, Workers: 4, Batch: 256,
			Learn: LearnConfig{Enabled: true, Interval: 10 * time.Minute, MinNew: 10}},
		Queues: QueuesConfig{Lease: 15 * time.Minute, MaxLease: 8 * time.Hour},
		Notify: NotifyConfig{
			MaxAge: 72 * time.Hour, MaxPerSenderPerDay: 5,
			Channels: []string{"email", "memo", "facebook", "x", "phone", "in_person"},
			Outcomes: []string{"sai", "informativo", "aclaracion", "no_competente"},
			SMTP:     SMTPConfig{Port: 587, TLS: "starttls"},
		},
		Console: ConsoleConfig{Enabled: true, SessionTTL: 12 * time.Hour},
	}
}

// applyDerived fills what depends on other keys once everything is loaded.
func applyDerived(c *Config) {
	if c.NATS.Embedded.StoreDir == "" {
		c.NATS.Embedded.StoreDir = under(c.DataDir, "jetstream")
	}
	if c.NATS.Embedded.TokenFile == "" {
		c.NATS.Embedded.TokenFile = under(c.DataDir, "nats.token")
	}
	if c.Memo.SpoolDir == "" {
		c.Memo.SpoolDir = under(c.DataDir, "spool")
	}
	if c.Console.UsersFile == "" {
		c.Console.UsersFile = under(c.DataDir, "users.yaml")
	}
	if c.NATS.Embedded.Listen == "none" {
		c.NATS.Embedded.Listen = ""
	}
	c.NATS.URLs = nil
	for _, u := range strings.Split(c.NATS.URL, ",") {
		if u = strings.TrimSpace(u); u != "" {
			c.NATS.URLs = append(c.NATS.URLs, u)
		}
	}
	if len(c.NATS.URLs) == 0 {
		c.NATS.URL = ""
	}
	c.Roles = splitList(c.Roles)
	c.Notify.Channels = splitList(c.Notify.Channels)
	c.Notify.Outcomes = splitList(c.Notify.Outcomes)
	if len(c.IMAP.Mailboxes) == 0 {
		c.IMAP.Mailboxes = nil // "mailboxes: []" and no key at all load the same
	}
	for i := range c.IMAP.Mailboxes {
		m := &c.IMAP.Mailboxes[i]
		if m.TLS == "" {
			m.TLS = DefaultMailboxTLS
		}
		if m.Username == "" {
			m.Username = m.Address
		}
		if m.Folder == "" {
			m.Folder = DefaultMailboxFolder
		}
		if m.ProcessedFolder == "" && !m.FlagOnly {
			m.ProcessedFolder = DefaultMailboxProcessedFolder
		}
		if m.QuarantineFolder == "" {
			m.QuarantineFolder = DefaultMailboxQuarantine
		}
		if m.MaxMessageBytes == 0 {
			m.MaxMessageBytes = DefaultMailboxMaxMessageBytes
		}
		if m.PollInterval == 0 {
			m.PollInterval = DefaultMailboxPollInterval
		}
		if m.Channel == "" && m.Name != "" {
			m.Channel = "email." + m.Name
		}
	}
}

// splitList normalizes a list key: items split on commas (as the environment gives them), trimmed,
// lowercased, empty ones dropped.
func splitList(in []string) []string {
	var out []string
	for _, r := range in {
		for _, p := range strings.Split(r, ",") {
			if p = strings.ToLower(strings.TrimSpace(p)); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// under joins dir and name without cleaning dir, so "./data" gives "./data/spool" as documented.
func under(dir, name string) string {
	if dir == "" || os.IsPathSeparator(dir[len(dir)-1]) {
		return dir + name
	}
	return dir + string(filepath.Separator) + name
}

// node describes one level of the key tree, derived from the mapstructure tags of Config.
type node struct {
	leaf     bool
	list     bool             // a leaf that is a list of values (roles, notify.channels)
	children map[string]*node // for a struct
	elem     *node            // for a list of structs (imap.mailboxes)
}

// schema returns the key tree of Config: every key a file may contain.
func schema() *node { return schemaOf(reflect.TypeOf(Config{})) }

func schemaOf(t reflect.Type) *node {
	switch {
	case t == reflect.TypeOf(time.Duration(0)):
		return &node{leaf: true}
	case t.Kind() == reflect.Struct:
		n := &node{children: map[string]*node{}}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name := f.Tag.Get("mapstructure")
			if name == "" || name == "-" {
				continue
			}
			n.children[name] = schemaOf(f.Type)
		}
		return n
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct:
		return &node{elem: schemaOf(t.Elem())}
	case t.Kind() == reflect.Slice:
		return &node{leaf: true, list: true}
	default:
		return &node{leaf: true}
	}
}

// names returns the child keys of n, sorted.
func (n *node) names() []string {
	var ks []string
	for k := range n.children {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// flatten walks v (a Config or part of it) and calls fn for every scalar key with its value. Lists of
// structs (imap.mailboxes) are skipped: they have no default and no environment variable.
func flatten(prefix string, v reflect.Value, fn func(key string, val any)) {
	t := v.Type()
	if t.Kind() != reflect.Struct || t == reflect.TypeOf(time.Duration(0)) {
		fn(prefix, v.Interface())
		return
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := f.Tag.Get("mapstructure")
		if name == "" || name == "-" {
			continue
		}
		if f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct {
			continue
		}
		key := name
		if prefix != "" {
			key = prefix + "." + name
		}
		flatten(key, v.Field(i), fn)
	}
}

// envName is the environment variable of a key: CAU_ and the path in capitals with _.
func envName(key string) string {
	return "CAU_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}
