package config

import (
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// validate checks every key and returns one error per problem, section by section.
func (c *Config) validate() []error {
	v := &checker{}
	c.validateGeneral(v)
	c.validateNATS(v)
	c.validateIMAP(v)
	c.validateMemo(v)
	c.validateSocial(v)
	c.validateTriageQueues(v)
	c.validateNotify(v)
	c.validateUnits(v)
	return v.errs
}

// checker collects the problems of validate, one error per key.
type checker struct{ errs []error }

func (v *checker) bad(key, format string, a ...any) {
	v.errs = append(v.errs, fmt.Errorf("config: %s: %s", key, fmt.Sprintf(format, a...)))
}

func (v *checker) oneOf(key, got string, allowed ...string) {
	for _, a := range allowed {
		if got == a {
			return
		}
	}
	v.bad(key, "must be %s (got %q)", orList(allowed), got)
}

func (v *checker) positive(key string, n int64) {
	if n <= 0 {
		v.bad(key, "must be greater than 0 (got %d)", n)
	}
}

func (v *checker) atLeast(key string, d, min time.Duration) {
	if d < min {
		v.bad(key, "must be at least %s (got %s)", min, d)
	}
}

func (v *checker) hostPort(key, s string) {
	if err := checkHostPort(s); err != nil {
		v.bad(key, "%q is not host:port (%v)", s, err)
	}
}

// validateGeneral checks data_dir, roles, log and http.
func (c *Config) validateGeneral(v *checker) {
	if strings.TrimSpace(c.DataDir) == "" {
		v.bad("data_dir", "must not be empty")
	}
	if len(c.Roles) == 0 {
		v.bad("roles", "must list at least one of intake, triage, queues")
	}
	seenRole := map[string]bool{}
	for _, r := range c.Roles {
		switch {
		case r != RoleIntake && r != RoleTriage && r != RoleQueues:
			v.bad("roles", "must be intake, triage or queues (got %q)", r)
		case seenRole[r]:
			v.bad("roles", "%q is listed twice", r)
		}
		seenRole[r] = true
	}
	v.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	v.oneOf("log.format", c.Log.Format, "text", "json")

	v.hostPort("http.listen", c.HTTP.Listen)
	v.positive("http.max_body_bytes", c.HTTP.MaxBodyBytes)
}

// validateNATS checks the nats section.
func (c *Config) validateNATS(v *checker) {
	for i, u := range c.NATS.URLs {
		key := "nats.url"
		if len(c.NATS.URLs) > 1 {
			key = fmt.Sprintf("nats.url[%d]", i)
		}
		pu, err := url.Parse(u)
		switch {
		case err != nil:
			v.bad(key, "%q is not a URL", u)
		case pu.Scheme != "nats" && pu.Scheme != "tls" && pu.Scheme != "ws" && pu.Scheme != "wss":
			v.bad(key, "%q: scheme must be nats, tls, ws or wss", u)
		case pu.Host == "":
			v.bad(key, "%q has no host", u)
		}
	}
	switch r := c.NATS.Replicas; {
	case r != 1 && r != 3 && r != 5:
		v.bad("nats.replicas", "must be 1, 3 or 5 (got %d)", r)
	case r != 1 && c.NATS.IsEmbedded():
		v.bad("nats.replicas", "must be 1 with the embedded server (got %d); set nats.url to use a cluster", r)
	}
	if l := c.NATS.Embedded.Listen; l != "" {
		v.hostPort("nats.embedded.listen", l)
	}
	if c.NATS.IsEmbedded() && strings.TrimSpace(c.NATS.Embedded.StoreDir) == "" {
		v.bad("nats.embedded.store_dir", "must not be empty")
	}
	v.positive("nats.embedded.max_memory", c.NATS.Embedded.MaxMemory)
	v.positive("nats.embedded.max_store", c.NATS.Embedded.MaxStore)
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
		v.bad(auth[1], "cannot be combined with %s; choose one way to authenticate", auth[0])
	}
	if c.NATS.User != "" && c.NATS.Password == "" {
		v.bad("nats.password", "required with nats.user (or nats.password_file)")
	}
	if c.NATS.User == "" && c.NATS.Password != "" {
		v.bad("nats.user", "required with nats.password")
	}
	if (c.NATS.TLS.CertFile == "") != (c.NATS.TLS.KeyFile == "") {
		v.bad("nats.tls", "cert_file and key_file go together")
	}
	v.atLeast("nats.dedup_window", c.NATS.DedupWindow, time.Minute)
	if c.NATS.Retention < c.NATS.DedupWindow {
		v.bad("nats.retention", "must be at least nats.dedup_window (%s) (got %s)", c.NATS.DedupWindow, c.NATS.Retention)
	}
	v.atLeast("nats.connect_timeout", c.NATS.ConnectTimeout, time.Millisecond)
	v.atLeast("nats.failover_after", c.NATS.FailoverAfter, 100*time.Millisecond)
	if c.NATS.FailoverAfter > 5*time.Second {
		v.bad("nats.failover_after", "must be at most 5s (got %s)", c.NATS.FailoverAfter)
	}
}

// validateIMAP checks each mailbox of imap.mailboxes.
func (c *Config) validateIMAP(v *checker) {
	if c.IMAP.LeaseTTL < 3*time.Second {
		v.bad("imap.lease_ttl", "must be at least 3s (got %s)", c.IMAP.LeaseTTL)
	}
	if a := c.IMAP.Attachments; a.Read {
		v.positive("imap.attachments.max_bytes", a.MaxBytes)
		v.positive("imap.attachments.max_pages", int64(a.MaxPages))
		v.positive("imap.attachments.workers", int64(a.Workers))
		v.atLeast("imap.attachments.timeout", a.Timeout, time.Second)
	}
	names, channels := map[string]int{}, map[string]int{}
	for i := range c.IMAP.Mailboxes {
		m := &c.IMAP.Mailboxes[i]
		p := fmt.Sprintf("imap.mailboxes[%d]", i)
		switch {
		case m.Name == "":
			v.bad(p+".name", "required")
		case !isToken(m.Name):
			v.bad(p+".name", "%q: use lowercase letters, digits, - and _", m.Name)
		default:
			if j, dup := names[m.Name]; dup {
				v.bad(p+".name", "%q is already used by imap.mailboxes[%d]", m.Name, j)
			}
			names[m.Name] = i
		}
		if m.Address == "" {
			v.bad(p+".address", "required")
		} else if a, err := mail.ParseAddress(m.Address); err != nil || a.Address != m.Address {
			v.bad(p+".address", "%q is not an e-mail address", m.Address)
		}
		if m.Host == "" {
			v.bad(p+".host", "required (host:port, e.g. \"imap.example.mx:993\")")
		} else {
			v.hostPort(p+".host", m.Host)
		}
		v.oneOf(p+".tls", m.TLS, "implicit", "starttls", "insecure")
		if m.Username == "" {
			v.bad(p+".username", "required")
		}
		if m.Password == "" && m.PasswordFile == "" {
			v.bad(p+".password", "required (password or password_file)")
		}
		if strings.TrimSpace(m.Folder) == "" {
			v.bad(p+".folder", "must not be empty")
		}
		if m.FlagOnly && m.ProcessedFolder != "" {
			v.bad(p+".processed_folder", "must be empty with flag_only (got %q)", m.ProcessedFolder)
		}
		if !m.FlagOnly && m.ProcessedFolder == m.Folder {
			v.bad(p+".processed_folder", "must differ from folder (%q)", m.Folder)
		}
		if m.QuarantineFolder == m.Folder {
			v.bad(p+".quarantine_folder", "must differ from folder (%q)", m.Folder)
		}
		v.positive(p+".max_message_bytes", m.MaxMessageBytes)
		v.atLeast(p+".poll_interval", m.PollInterval, time.Second)
		if m.Channel != "" {
			if !isSubject(m.Channel) {
				v.bad(p+".channel", "%q is not a subject suffix (tokens of letters, digits, - and _ joined by dots)", m.Channel)
			} else if j, dup := channels[m.Channel]; dup {
				v.bad(p+".channel", "%q is already used by imap.mailboxes[%d]", m.Channel, j)
			}
			channels[m.Channel] = i
		}
	}
}

// validateMemo checks the memo section.
func (c *Config) validateMemo(v *checker) {
	if c.Memo.Enabled && strings.TrimSpace(c.Memo.SpoolDir) == "" {
		v.bad("memo.spool_dir", "must not be empty")
	}
	v.positive("memo.max_bytes", c.Memo.MaxBytes)
	v.positive("memo.workers", int64(c.Memo.Workers))
	v.positive("memo.page_workers", int64(c.Memo.PageWorkers))
	v.positive("memo.max_pages", int64(c.Memo.MaxPages))
	v.atLeast("memo.page_timeout", c.Memo.PageTimeout, time.Second)
}

// validateSocial checks the social section.
func (c *Config) validateSocial(v *checker) {
	for key, s := range map[string]string{
		"social.facebook.api_base": c.Social.Facebook.APIBase,
		"social.x.api_base":        c.Social.X.APIBase,
	} {
		if u, err := url.Parse(s); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			v.bad(key, "%q is not an http(s) URL", s)
		}
	}
}

// validateTriageQueues checks the triage and queues sections.
func (c *Config) validateTriageQueues(v *checker) {
	v.positive("triage.max_deliver", int64(c.Triage.MaxDeliver))
	v.atLeast("triage.ack_wait", c.Triage.AckWait, time.Second)
	v.positive("triage.workers", int64(c.Triage.Workers))
	v.positive("triage.batch", int64(c.Triage.Batch))
	if c.Triage.Learn.Enabled {
		v.atLeast("triage.learn.interval", c.Triage.Learn.Interval, time.Second)
		v.positive("triage.learn.min_new", int64(c.Triage.Learn.MinNew))
	}
	v.atLeast("queues.lease", c.Queues.Lease, time.Second)
	if c.Console.Enabled {
		v.atLeast("console.session_ttl", c.Console.SessionTTL, time.Minute)
	}
	if c.Queues.MaxLease < c.Queues.Lease {
		v.bad("queues.max_lease", "must be at least queues.lease (%s) (got %s)", c.Queues.Lease, c.Queues.MaxLease)
	}
}

// validateNotify checks the notify section.
func (c *Config) validateNotify(v *checker) {
	v.atLeast("notify.max_age", c.Notify.MaxAge, time.Minute)
	v.positive("notify.max_per_sender_per_day", int64(c.Notify.MaxPerSenderPerDay))
	for _, ch := range c.Notify.Channels {
		v.oneOf("notify.channels", ch, "email", "memo", "facebook", "x", "phone", "in_person")
	}
	for _, o := range c.Notify.Outcomes {
		v.oneOf("notify.outcomes", o, "sai", "informativo", "aclaracion", "no_competente")
	}
	s := c.Notify.SMTP
	v.oneOf("notify.smtp.tls", s.TLS, "starttls", "implicit", "none")
	if s.Port < 1 || s.Port > 65535 {
		v.bad("notify.smtp.port", "must be between 1 and 65535 (got %d)", s.Port)
	}
	if strings.Contains(s.Host, ":") {
		v.bad("notify.smtp.host", "%q: give the port in notify.smtp.port", s.Host)
	}
	if c.Notify.Enabled && s.Host == "" {
		v.bad("notify.smtp.host", "required when notify.enabled is true")
	}
	if s.From != "" {
		if _, err := mail.ParseAddress(s.From); err != nil {
			v.bad("notify.smtp.from", "%q is not an e-mail address", s.From)
		}
	} else if c.Notify.Enabled {
		v.bad("notify.smtp.from", "required when notify.enabled is true")
	}
	if s.Password != "" && s.Username == "" {
		v.bad("notify.smtp.username", "required with notify.smtp.password")
	}
}

// validateUnits checks units.file.
func (c *Config) validateUnits(v *checker) {
	if c.Units.File != "" {
		if _, err := LoadUnits(c.Units.File); err != nil {
			v.errs = append(v.errs, fmt.Errorf("config: units.file: %w", err))
		}
	}
}

// Warnings returns the things that are allowed but that the daemon should log at start, one
// sentence each.
func (c *Config) Warnings() []string {
	w := append([]string(nil), c.envWarnings...)
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
		w = append(w, fmt.Sprintf("nats.embedded.listen %s is not loopback: the bus is reachable from the network without TLS", c.NATS.Embedded.Listen))
	}
	if c.NATS.IsEmbedded() && c.NATS.Embedded.Listen != "" && !c.NATS.Embedded.Auth {
		w = append(w, fmt.Sprintf("nats.embedded.auth is off: any local account can read and inject requests on %s", c.NATS.Embedded.Listen))
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
