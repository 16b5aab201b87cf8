package social

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ipn-cgsi/caud/channels"
)

// Defaults of ProfileOptions.
const (
	DefaultGraphBase       = "https://graph.facebook.com/v21.0"
	DefaultProfileTimeout  = 2 * time.Second
	DefaultProfileTTL      = 24 * time.Hour
	DefaultProfileMissTTL  = time.Hour
	DefaultProfileRetryTTL = time.Minute
	DefaultProfileEntries  = 10000
)

// ProfileOptions configures Profiles. Zero values are documented defaults.
type ProfileOptions struct {
	// PageAccessToken is the Page access token the Graph API is called with (required).
	PageAccessToken string
	// AppSecret, when set, signs every call with appsecret_proof (HMAC-SHA256 of the token), as
	// Meta recommends and apps with "Require App Secret" demand.
	AppSecret string
	// GraphBase is the Graph API base with its version; "" means https://graph.facebook.com/v21.0.
	GraphBase string
	// Client makes the calls; nil means a client without a timeout of its own (Timeout bounds
	// each call).
	Client *http.Client
	// Timeout bounds one lookup; 0 means 2 s. A delivery waits at most this long for a name and
	// is published without one when the Graph API does not answer in time.
	Timeout time.Duration
	// TTL keeps a name; 0 means 24 h. MissTTL keeps "no profile" (error 2018218, unknown id);
	// 0 means 1 h. RetryTTL keeps a failed call (timeout, rate limit, 5xx) from being repeated;
	// 0 means 1 min.
	TTL, MissTTL, RetryTTL time.Duration
	// MaxEntries bounds the cache; 0 means 10,000. When full, expired entries go first, then
	// the oldest.
	MaxEntries int
	Logger     *slog.Logger
	// Registerer receives caud_social_profile_lookups_total; nil registers nothing.
	Registerer prometheus.Registerer
	// Now is the clock of the cache; nil means time.Now.
	Now func() time.Time
}

// Profiles fetches the names of Messenger senders from the Graph API User Profile endpoint
// (GET /<PSID>?fields=name,first_name,last_name) and caches them, so that a conversation costs one
// call per sender and day. Concurrent lookups of one id share one call. Safe for concurrent use.
type Profiles struct {
	o       ProfileOptions
	log     *slog.Logger
	lookups *prometheus.CounterVec

	mu       sync.Mutex
	cache    map[string]profileEntry
	inflight map[string]*profileCall
}

type profileEntry struct {
	name    string
	expires time.Time
	added   time.Time
}

type profileCall struct {
	done chan struct{}
	name string
}

// ErrGraph wraps an error answer of the Graph API.
var ErrGraph = errors.New("graph api error")

// NewProfiles returns a Profiles, or an error without a token.
func NewProfiles(o ProfileOptions) (*Profiles, error) {
	if o.PageAccessToken == "" {
		return nil, errors.New("social profiles: no page access token")
	}
	if o.GraphBase == "" {
		o.GraphBase = DefaultGraphBase
	}
	o.GraphBase = strings.TrimRight(o.GraphBase, "/")
	if o.Client == nil {
		o.Client = &http.Client{}
	}
	o.Timeout = channels.OrDefault(o.Timeout, DefaultProfileTimeout)
	o.TTL = channels.OrDefault(o.TTL, DefaultProfileTTL)
	o.MissTTL = channels.OrDefault(o.MissTTL, DefaultProfileMissTTL)
	o.RetryTTL = channels.OrDefault(o.RetryTTL, DefaultProfileRetryTTL)
	o.MaxEntries = channels.OrDefault(o.MaxEntries, DefaultProfileEntries)
	if o.Now == nil {
		o.Now = time.Now
	}
	log := channels.OrDiscard(o.Logger)
	p := &Profiles{
		o: o, log: log, cache: map[string]profileEntry{}, inflight: map[string]*profileCall{},
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "caud_social_profile_lookups_total",
			Help: "Messenger sender names looked up, by result (cached, found, no_profile, failed).",
		}, []string{"result"}),
	}
	if o.Registerer != nil {
		p.lookups = channels.Register(o.Registerer, p.lookups)
	}
	return p, nil
}

// Name returns the sender's display name, "" when the Graph API has none or could not be asked
// in time (the request is then published without a name; the failure is logged and counted).
func (p *Profiles) Name(ctx context.Context, psid string) string {
	if psid == "" {
		return ""
	}
	now := p.o.Now()
	p.mu.Lock()
	if e, ok := p.cache[psid]; ok && now.Before(e.expires) {
		p.mu.Unlock()
		p.lookups.WithLabelValues("cached").Inc()
		return e.name
	}
	if c, ok := p.inflight[psid]; ok {
		p.mu.Unlock()
		select {
		case <-c.done:
			return c.name
		case <-ctx.Done():
			return ""
		}
	}
	c := &profileCall{done: make(chan struct{})}
	p.inflight[psid] = c
	p.mu.Unlock()

	// The call is not tied to ctx alone: others may wait for it.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.o.Timeout)
	name, err := p.fetch(cctx, psid)
	cancel()
	ttl := p.o.TTL
	switch {
	case err == nil && name != "":
		p.lookups.WithLabelValues("found").Inc()
	case err == nil, errors.Is(err, errNoProfile):
		p.lookups.WithLabelValues("no_profile").Inc()
		ttl = p.o.MissTTL
	default:
		p.lookups.WithLabelValues("failed").Inc()
		p.log.Warn("messenger sender name not fetched", "psid", psid, "err", err)
		ttl = p.o.RetryTTL
	}
	c.name = name
	p.mu.Lock()
	p.store(psid, name, now, ttl)
	delete(p.inflight, psid)
	p.mu.Unlock()
	close(c.done)
	return name
}

// store keeps one entry within MaxEntries (p.mu held).
func (p *Profiles) store(psid, name string, now time.Time, ttl time.Duration) {
	if _, ok := p.cache[psid]; !ok && len(p.cache) >= p.o.MaxEntries {
		var oldest string
		var oldestAt time.Time
		for k, e := range p.cache {
			if !now.Before(e.expires) {
				delete(p.cache, k)
				continue
			}
			if oldest == "" || e.added.Before(oldestAt) {
				oldest, oldestAt = k, e.added
			}
		}
		if len(p.cache) >= p.o.MaxEntries {
			delete(p.cache, oldest)
		}
	}
	p.cache[psid] = profileEntry{name: name, expires: now.Add(ttl), added: now}
}

var errNoProfile = errors.New("no profile")

// graphError is the error object of a Graph API answer.
type graphError struct {
	Error *struct {
		Message   string `json:"message"`
		Type      string `json:"type"`
		Code      int    `json:"code"`
		Subcode   int    `json:"error_subcode"`
		FBTraceID string `json:"fbtrace_id"`
	} `json:"error"`
}

func (p *Profiles) fetch(ctx context.Context, psid string) (string, error) {
	q := url.Values{"fields": {"name,first_name,last_name"}, "access_token": {p.o.PageAccessToken}}
	if p.o.AppSecret != "" {
		m := hmac.New(sha256.New, []byte(p.o.AppSecret))
		m.Write([]byte(p.o.PageAccessToken))
		q.Set("appsecret_proof", hex.EncodeToString(m.Sum(nil)))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.o.GraphBase+"/"+url.PathEscape(psid)+"?"+q.Encode(), nil)
	if err != nil {
		return "", err
	}
	resp, err := p.o.Client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		var ge graphError
		if json.Unmarshal(body, &ge) == nil && ge.Error != nil {
			// 2018218: no profile for this user (phone-number accounts); 100: unknown id or field.
			if ge.Error.Code == 2018218 || ge.Error.Code == 100 {
				return "", fmt.Errorf("%w: %w: %d %s", errNoProfile, ErrGraph, ge.Error.Code, ge.Error.Message)
			}
			return "", fmt.Errorf("%w: %d %s (%s, status %d)", ErrGraph, ge.Error.Code, ge.Error.Message, ge.Error.Type, resp.StatusCode)
		}
		return "", fmt.Errorf("%w: status %d", ErrGraph, resp.StatusCode)
	}
	var prof struct {
		Name      string `json:"name"`
		FirstName string `json:"first_name"`
		LastName  string `json:"last_name"`
	}
	if err := json.Unmarshal(body, &prof); err != nil {
		return "", fmt.Errorf("%w: %v", ErrGraph, err)
	}
	name := strings.TrimSpace(prof.Name)
	if name == "" {
		name = strings.TrimSpace(prof.FirstName + " " + prof.LastName)
	}
	return cleanName(name), nil
}

// cleanName keeps a display name to one line of at most 200 bytes of valid UTF-8.
func cleanName(s string) string {
	s = strings.Join(strings.Fields(strings.ToValidUTF8(s, "")), " ")
	if len(s) > 200 {
		s = strings.ToValidUTF8(s[:200], "")
	}
	return s
}
