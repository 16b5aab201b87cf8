package config

import (
	"fmt"
	"io"
	"os"
	"strings"
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
