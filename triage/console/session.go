package console

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ipn-cgsi/caud/channels/natsjs"
)

// SessionBucket is the KV bucket of console sessions. It is owned by this package: keys are the
// SHA-256 of the session cookie (so a dump of the bucket does not hand out sessions), values a
// Session; the bucket's TTL ends abandoned sessions.
const SessionBucket = "cau_console_sessions"

// Cookie names. The session cookie is HttpOnly, SameSite=Strict, Path=/, and Secure when the
// request came over TLS or Options.SecureCookies is set (TLS ended at a proxy).
const (
	sessionCookie = "caud_sesion"
	loginCookie   = "caud_entrada" // double-submit token of the sign-in form (no session yet)
)

// ErrNoSession is returned for a missing, expired or revoked session.
var ErrNoSession = errors.New("no session")

// Session is one signed-in browser.
type Session struct {
	User    string    `json:"user"`
	CSRF    string    `json:"csrf"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
}

// Sessions stores sessions in a JetStream KV bucket, so that any caud replica serves any agent and a
// sign-out ends the session everywhere.
type Sessions struct {
	kv  jetstream.KeyValue
	ttl time.Duration
	now func() time.Time
}

// NewSessions creates or opens the session bucket with the given replicas; ttl is the longest a
// session lasts (0 means 12 h, a working day with margin). Like the core topology it retries
// transient failures (a cluster still forming) until ctx ends; topo supplies the retry settings
// and the callback that reports each wait.
func NewSessions(ctx context.Context, js jetstream.JetStream, replicas int, ttl time.Duration, topo natsjs.Topology) (*Sessions, error) {
	if ttl <= 0 {
		ttl = 12 * time.Hour
	}
	if replicas <= 0 {
		replicas = 1
	}
	// Set up like the core topology: replicas starting together must not race each other's update.
	kv, err := natsjs.EnsureKeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket: SessionBucket, Description: "caud web console sessions", TTL: ttl,
		Storage: jetstream.FileStorage, Replicas: replicas, History: 1,
	}, topo)
	if err != nil {
		return nil, fmt.Errorf("session bucket: %w", err)
	}
	return &Sessions{kv: kv, ttl: ttl, now: time.Now}, nil
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func sessionKey(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// Create starts a session for user and returns the cookie token.
func (s *Sessions) Create(ctx context.Context, user string) (string, Session, error) {
	now := s.now().UTC()
	sess := Session{User: user, CSRF: randomToken(), Created: now, Expires: now.Add(s.ttl)}
	token := randomToken()
	b, _ := json.Marshal(sess)
	if _, err := s.kv.Create(ctx, sessionKey(token), b); err != nil {
		return "", Session{}, fmt.Errorf("create session: %w", err)
	}
	return token, sess, nil
}

// Get returns the session of a cookie token; ErrNoSession when there is none.
func (s *Sessions) Get(ctx context.Context, token string) (Session, error) {
	var sess Session
	if len(token) != 43 {
		return sess, ErrNoSession
	}
	e, err := s.kv.Get(ctx, sessionKey(token))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return sess, ErrNoSession
	}
	if err != nil {
		return sess, fmt.Errorf("read session: %w", err)
	}
	if err := json.Unmarshal(e.Value(), &sess); err != nil {
		return sess, ErrNoSession
	}
	if !s.now().Before(sess.Expires) {
		_ = s.kv.Delete(ctx, sessionKey(token))
		return sess, ErrNoSession
	}
	return sess, nil
}

// Delete ends a session (sign-out).
func (s *Sessions) Delete(ctx context.Context, token string) error {
	if err := s.kv.Purge(ctx, sessionKey(token)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("end session: %w", err)
	}
	return nil
}

// sameToken compares two tokens in constant time.
func sameToken(a, b string) bool {
	return a != "" && len(a) == len(b) && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

func (c *Console) secure(r *http.Request) bool { return r.TLS != nil || c.o.SecureCookies }

func (c *Console) setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge time.Duration) {
	ck := &http.Cookie{
		Name: name, Value: value, Path: "/", HttpOnly: true, Secure: c.secure(r),
		SameSite: http.SameSiteStrictMode,
	}
	if maxAge < 0 {
		ck.MaxAge = -1
	} else if maxAge > 0 {
		ck.MaxAge = int(maxAge / time.Second)
	}
	http.SetCookie(w, ck)
}
