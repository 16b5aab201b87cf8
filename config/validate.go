package config

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/mail"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// secret is one value that may be given directly or as a file.
type secret struct {
	key   string // key of the plain value, e.g. "http.token"
	value *string
	file  string
}

// secrets lists every value/_file pair of c.
func (c *Config) secrets() []secret {
	s := []secret{
		{"http.token", &c.HTTP.Token, c.HTTP.TokenFile},
		{"nats.password", &c.NATS.Password, c.NATS.PasswordFile},
		{"social.facebook.app_secret", &c.Social.Facebook.AppSecret, c.Social.Facebook.AppSecretFile},
		{"social.facebook.verify_token", &c.Social.Facebook.VerifyToken, c.Social.Facebook.VerifyTokenFile},
		{"social.facebook.page_access_token", &c.Social.Facebook.PageAccessToken, c.Social.Facebook.PageAccessTokenFile},
		{"social.x.consumer_secret", &c.Social.X.ConsumerSecret, c.Social.X.ConsumerSecretFile},
		{"social.x.bearer_token", &c.Social.X.BearerToken, c.Social.X.BearerTokenFile},
		{"notify.smtp.password", &c.Notify.SMTP.Password, c.Notify.SMTP.PasswordFile},
	}
	for i := range c.IMAP.Mailboxes {
		m := &c.IMAP.Mailboxes[i]
		s = append(s, secret{fmt.Sprintf("imap.mailboxes[%d].password", i), &m.Password, m.PasswordFile})
	}
	return s
}

// readSecrets replaces each *_file by the trimmed content of the file it names.
func readSecrets(c *Config) []error {
	var errs []error
	for _, s := range c.secrets() {
		if s.file == "" {
			continue
		}
		if *s.value != "" {
			errs = append(errs, fmt.Errorf("config: %s: set both %s and %s_file; keep one", s.key, s.key, s.key))
			continue
		}
		b, err := readSmallFile(s.file, maxSecretBytes)
		if err != nil {
			errs = append(errs, fmt.Errorf("config: %s_file: %w", s.key, err))
			continue
		}
		v := strings.TrimSpace(string(b))
		if v == "" {
			errs = append(errs, fmt.Errorf("config: %s_file: %s is empty", s.key, s.file))
			continue
		}
		*s.value = v
	}
	return errs
}

// maxSecretBytes bounds a secret file, so that a wrong path (a log, /dev/zero) fails fast.
const maxSecretBytes = 64 << 10

// readSmallFile reads at most max bytes of path and fails if the file is longer.
func readSmallFile(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, max)
	}
	return b, nil
}

// validate checks every key and returns one error per problem.
func (c *Config) validate() []error {
	var errs []error
	bad := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("config: %s: %s", key, fmt.Sprintf(format, a...)))
	}
	oneOf := func(key, got string, allowed ...string) {
		for _, a := range allowed {
			if got == a {
				return
			}
		}
		bad(key, "must be %s (got %q)", orList(allowed), got)
	}
	positive := func(key string, n int64) {
		if n <= 0 {
			bad(key, "must be greater than 0 (got %d)", n)
		}
	}
	atLeast := func(key string, d, min time.Duration) {
		if d < min {
			bad(key, "must be at least %s (got %s)", min, d)
		}
	}
	hostPort := func(key, s string) {
		if err := checkHostPort(s); err != nil {
			bad(key, "%q is not host:port (%v)", s, err)
		}
	}

	if strings.TrimSpace(c.DataDir) == "" {
		bad("data_dir", "must not be empty")
	}
	if len(c.Roles) == 0 {
		bad("roles", "must list at least one of intake, triage, queues")
	}
	seenRole := map[string]bool{}
	for _, r := range c.Roles {
		switch {
		case r != RoleIntake && r != RoleTriage && r != RoleQueues:
			bad("roles", "must be intake, triage or queues (got %q)", r)
		case seenRole[r]:
			bad("roles", "%q is listed twice", r)
		}
		seenRole[r] = true
	}
	oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	oneOf("log.format", c.Log.Format, "text", "json")

	hostPort("http.listen", c.HTTP.Listen)
	positive("http.max_body_bytes", c.HTTP.MaxBodyBytes)

	// NATS
	for i, u := range c.NATS.URLs {
		key := "nats.url"
		if len(c.NATS.URLs) > 1 {
			key = fmt.Sprintf("nats.url[%d]", i)
		}
		pu, err := url.Parse(u)
		switch {
		case err != nil:
			bad(key, "%q is not a URL", u)
		case pu.Scheme != "nats" && pu.Scheme != "tls" && pu.Scheme != "ws" && pu.Scheme != "wss":
			bad(key, "%q: scheme must be nats, tls, ws or wss", u)
		case pu.Host == "":
			bad(key, "%q has no host", u)
		}
	}
	switch r := c.NATS.Replicas; {
	case r != 1 && r != 3 && r != 5:
		bad("nats.replicas", "must be 1, 3 or 5 (got %d)", r)
	case r != 1 && c.NATS.IsEmbedded():
		bad("nats.replicas", "must be 1 with the embedded server (got %d); set nats.url to use a cluster", r)
	}
	if l := c.NATS.Embedded.Listen; l != "" {
		hostPort("nats.embedded.listen", l)
	}
	if c.NATS.IsEmbedded() && strings.TrimSpace(c.NATS.Embedded.StoreDir) == "" {
		bad("nats.embedded.store_dir", "must not be empty")
	}
	positive("nats.embedded.max_memory", c.NATS.Embedded.MaxMemory)
	positive("nats.embedded.max_store", c.NATS.Embedded.MaxStore)
	var auth []string
	if c.NATS.CredsFile != "" {
		auth = append(auth, "nats.creds_file")
	}
	if c.NATS.User != "" || c.NATS.Password != "" {
		auth = append(auth, "nats.user")
	}
	if c.NATS.Token != "" {
		auth = append(auth, "nats.token")
	}
	if len(auth) > 1 {
		bad(auth[1], "cannot be combined with %s; choose one way to authenticate", auth[0])
	}
	if c.NATS.User != "" && c.NATS.Password == "" {
		bad("nats.password", "required with nats.user (or nats.password_file)")
	}
	if c.NATS.User == "" && c.NATS.Password != "" {
		bad("nats.user", "required with nats.password")
	}
	if (c.NATS.TLS.CertFile == "") != (c.NATS.TLS.KeyFile == "") {
		bad("nats.tls", "cert_file and key_file go together")
	}
	atLeast("nats.dedup_window", c.NATS.DedupWindow, time.Minute)
	if c.NATS.Retention < c.NATS.DedupWindow {
		bad("nats.retention", "must be at least nats.dedup_window (%s) (got %s)", c.NATS.DedupWindow, c.NATS.Retention)
	}
	atLeast("nats.connect_timeout", c.NATS.ConnectTimeout, time.Millisecond)

	// IMAP
	names, channels := map[string]int{}, map[string]int{}
	for i := range c.IMAP.Mailboxes {
		m := &c.IMAP.Mailboxes[i]
		p := fmt.Sprintf("imap.mailboxes[%d]", i)
		switch {
		case m.Name == "":
			bad(p+".name", "required")
		case !isToken(m.Name):
			bad(p+".name", "%q: use lowercase letters, digits, - and _", m.Name)
		default:
			if j, dup := names[m.Name]; dup {
				bad(p+".name", "%q is already used by imap.mailboxes[%d]", m.Name, j)
			}
			names[m.Name] = i
		}
		if m.Address == "" {
			bad(p+".address", "required")
		} else if a, err := mail.ParseAddress(m.Address); err != nil || a.Address != m.Address {
			bad(p+".address", "%q is not an e-mail address", m.Address)
		}
		if m.Host == "" {
			bad(p+".host", "required (host:port, e.g. \"imap.example.mx:993\")")
		} else {
			hostPort(p+".host", m.Host)
		}
		oneOf(p+".tls", m.TLS, "implicit", "starttls", "insecure")
		if m.Username == "" {
			bad(p+".username", "required")
		}
		if m.Password == "" && m.PasswordFile == "" {
			bad(p+".password", "required (password or password_file)")
		}
		if strings.TrimSpace(m.Folder) == "" {
			bad(p+".folder", "must not be empty")
		}
		if m.FlagOnly && m.ProcessedFolder != "" {
			bad(p+".processed_folder", "must be empty with flag_only (got %q)", m.ProcessedFolder)
		}
		if !m.FlagOnly && m.ProcessedFolder == m.Folder {
			bad(p+".processed_folder", "must differ from folder (%q)", m.Folder)
		}
		if m.QuarantineFolder == m.Folder {
			bad(p+".quarantine_folder", "must differ from folder (%q)", m.Folder)
		}
		positive(p+".max_message_bytes", m.MaxMessageBytes)
		atLeast(p+".poll_interval", m.PollInterval, time.Second)
		if m.Channel != "" {
			if !isSubject(m.Channel) {
				bad(p+".channel", "%q is not a subject suffix (tokens of letters, digits, - and _ joined by dots)", m.Channel)
			} else if j, dup := channels[m.Channel]; dup {
				bad(p+".channel", "%q is already used by imap.mailboxes[%d]", m.Channel, j)
			}
			channels[m.Channel] = i
		}
	}

	// Memo
	if c.Memo.Enabled && strings.TrimSpace(c.Memo.SpoolDir) == "" {
		bad("memo.spool_dir", "must not be empty")
	}
	positive("memo.max_bytes", c.Memo.MaxBytes)
	positive("memo.workers", int64(c.Memo.Workers))
	positive("memo.page_workers", int64(c.Memo.PageWorkers))
	positive("memo.max_pages", int64(c.Memo.MaxPages))
	atLeast("memo.page_timeout", c.Memo.PageTimeout, time.Second)

	// Social
	for key, s := range map[string]string{
		"social.facebook.api_base": c.Social.Facebook.APIBase,
		"social.x.api_base":        c.Social.X.APIBase,
	} {
		if u, err := url.Parse(s); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad(key, "%q is not an http(s) URL", s)
		}
	}

	// Triage and queues
	positive("triage.max_deliver", int64(c.Triage.MaxDeliver))
	atLeast("triage.ack_wait", c.Triage.AckWait, time.Second)
	positive("triage.workers", int64(c.Triage.Workers))
	positive("triage.batch", int64(c.Triage.Batch))
	atLeast("queues.lease", c.Queues.Lease, time.Second)
	if c.Console.Enabled {
		atLeast("console.session_ttl", c.Console.SessionTTL, time.Minute)
	}
	if c.Queues.MaxLease < c.Queues.Lease {
		bad("queues.max_lease", "must be at least queues.lease (%s) (got %s)", c.Queues.Lease, c.Queues.MaxLease)
	}

	// Notify
	atLeast("notify.max_age", c.Notify.MaxAge, time.Minute)
	positive("notify.max_per_sender_per_day", int64(c.Notify.MaxPerSenderPerDay))
	for _, ch := range c.Notify.Channels {
		oneOf("notify.channels", ch, "email", "memo", "facebook", "x", "phone", "in_person")
	}
	for _, o := range c.Notify.Outcomes {
		oneOf("notify.outcomes", o, "sai", "informativo", "aclaracion", "no_competente")
	}
	s := c.Notify.SMTP
	oneOf("notify.smtp.tls", s.TLS, "starttls", "implicit", "none")
	if s.Port < 1 || s.Port > 65535 {
		bad("notify.smtp.port", "must be between 1 and 65535 (got %d)", s.Port)
	}
	if strings.Contains(s.Host, ":") {
		bad("notify.smtp.host", "%q: give the port in notify.smtp.port", s.Host)
	}
	if c.Notify.Enabled && s.Host == "" {
		bad("notify.smtp.host", "required when notify.enabled is true")
	}
	if s.From != "" {
		if _, err := mail.ParseAddress(s.From); err != nil {
			bad("notify.smtp.from", "%q is not an e-mail address", s.From)
		}
	} else if c.Notify.Enabled {
		bad("notify.smtp.from", "required when notify.enabled is true")
	}
	if s.Password != "" && s.Username == "" {
		bad("notify.smtp.username", "required with notify.smtp.password")
	}

	// Units
	if c.Units.File != "" {
		if _, err := LoadUnits(c.Units.File); err != nil {
			errs = append(errs, fmt.Errorf("config: units.file: %w", err))
		}
	}
	return errs
}

// Warnings returns the things that are allowed but that the daemon should log at start, one
// sentence each.
func (c *Config) Warnings() []string {
	var w []string
	if c.HTTP.Token == "" {
		w = append(w, "http.token is not set: the /api/ endpoints answer only on loopback; set http.token_file to open them")
	}
	if c.HasRole(RoleIntake) && len(c.IMAP.Mailboxes) == 0 {
		w = append(w, "no IMAP mailbox configured: add one under imap.mailboxes in the config file (see caud.example.yaml)")
	}
	for i, m := range c.IMAP.Mailboxes {
		if m.TLS == "insecure" {
			w = append(w, fmt.Sprintf("imap.mailboxes[%d] (%s): tls is insecure: the password and the mail travel in clear", i, m.Name))
		}
	}
	if c.NATS.DedupWindow < 10*time.Minute {
		w = append(w, fmt.Sprintf("nats.dedup_window is %s: below 10m a late retry may create a second request", c.NATS.DedupWindow))
	}
	if c.NATS.IsEmbedded() && (c.NATS.CredsFile != "" || c.NATS.User != "" || c.NATS.Token != "" || c.NATS.TLS != TLSFiles{}) {
		w = append(w, "nats credentials and tls are ignored with the embedded server (nats.url is empty)")
	}
	if !c.NATS.IsEmbedded() && c.NATS.Replicas == 1 && len(c.NATS.URLs) > 1 {
		w = append(w, "nats.replicas is 1 on a cluster: streams are not replicated")
	}
	if c.NATS.IsEmbedded() && c.NATS.Embedded.Listen != "" && !isLoopback(c.NATS.Embedded.Listen) {
		w = append(w, fmt.Sprintf("nats.embedded.listen %s is not loopback and the embedded server has no authentication", c.NATS.Embedded.Listen))
	}
	fb := c.Social.Facebook
	if fb.AppSecret != "" && fb.VerifyToken == "" {
		w = append(w, "social.facebook.verify_token is not set: Meta cannot verify the webhook subscription")
	}
	if fb.AppSecret == "" && (fb.VerifyToken != "" || fb.PageAccessToken != "") {
		w = append(w, "social.facebook.app_secret is not set: the Facebook webhook stays disabled")
	}
	if c.Social.X.ConsumerSecret == "" && c.Social.X.BearerToken != "" {
		w = append(w, "social.x.consumer_secret is not set: the X webhook stays disabled")
	}
	if c.Notify.Enabled && c.Notify.SMTP.TLS == "none" {
		w = append(w, "notify.smtp.tls is none: notifications (and any SMTP password) travel in clear")
	}
	if !c.Notify.Enabled && c.Notify.SMTP.Host != "" {
		w = append(w, "notify.smtp.host is set but notify.enabled is false: no notification will be sent")
	}
	return w
}

// checkHostPort accepts "host:port" and ":port" with a numeric port (0 = any free port).
func checkHostPort(s string) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			return errors.New(ae.Err)
		}
		return err
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("bad port %q", port)
	}
	return nil
}

func isLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// isToken reports whether s is a NATS subject token made of lowercase letters, digits, - and _.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// isSubject reports whether s is dot-separated tokens of letters, digits, - and _.
func isSubject(s string) bool {
	for _, t := range strings.Split(s, ".") {
		if !isToken(strings.ToLower(t)) {
			return false
		}
	}
	return true
}

// orList formats ["a","b","c"] as "a, b or c".
func orList(s []string) string {
	if len(s) == 1 {
		return s[0]
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}
