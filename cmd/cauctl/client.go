package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/triage"
	"github.com/ipn-cgsi/caud/triage/audit"
	"github.com/ipn-cgsi/caud/triage/queue"
	"github.com/ipn-cgsi/caud/triage/search"
)

// maxResponseBytes bounds what the client reads of one response; a triaged item with its text is far
// smaller, so anything bigger is a misbehaving server or proxy.
const maxResponseBytes = 8 << 20

// ErrQueueEmpty is returned by Client.Claim when the queue has nothing to claim (HTTP 204).
var ErrQueueEmpty = errors.New("queue is empty")

// Client is a typed client of caud's HTTP API. The zero value is not usable; set BaseURL.
// A Client is safe for concurrent use if its HTTP client is.
type Client struct {
	// BaseURL is the server root, e.g. http://127.0.0.1:8080 (no trailing slash).
	BaseURL string
	// Token, when not empty, is sent as "Authorization: Bearer <Token>".
	Token string
	// HTTP is the client used for every call; nil means http.DefaultClient.
	HTTP *http.Client
	// Agent, when not empty, is sent as who acts on done, release, extend and reroute (the audit
	// trail records it; without it the server names the agent who claimed).
	Agent string
}

// APIError is an error answer of the server: any status other than the ones a call expects. Message
// and Fields come from the JSON body {"error":…,"fields":{…},"suggestions":{…}} when there is one.
type APIError struct {
	Status      int
	Message     string
	Fields      map[string]string
	Suggestions map[string][]string
	// Body is the raw answer, kept so --json can pass it through to scripts.
	Body []byte
}

// Error returns the status and the server's message.
func (e *APIError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("%d %s", e.Status, http.StatusText(e.Status))
	}
	return fmt.Sprintf("%d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// Check is one readiness check of GET /readyz.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
	// Warning: the check passes but needs attention (a refused catalog reload).
	Warning bool `json:"warning"`
	// Since is when the check last changed state (RFC 3339), or empty.
	Since string `json:"since"`
}

// Readiness is the answer of GET /readyz, whether 200 or 503.
type Readiness struct {
	Ready  bool            `json:"ready"`
	Checks []Check         `json:"checks"`
	Raw    json.RawMessage `json:"-"`
}

// QueueStat is one row of GET /api/v1/queues.
type QueueStat struct {
	Name             string  `json:"name"`
	Pending          int     `json:"pending"`
	InProgress       int     `json:"in_progress"`
	OldestAgeSeconds float64 `json:"oldest_age_seconds"`
}

// Queues is the answer of GET /api/v1/queues.
type Queues struct {
	Queues []QueueStat     `json:"queues"`
	Raw    json.RawMessage `json:"-"`
}

// Item is a triaged item as queued on cau.triaged.<outcome>.
type Item struct {
	Request channels.Request `json:"request"`
	Triage  *Triage          `json:"triage"`
	// TriagedAt is kept as text: it is only shown, and an odd value must not make the item unreadable.
	TriagedAt string `json:"triaged_at"`
}

// Triage, Service and Orientation are the server's types: the JSON contract is theirs.
type (
	Triage      = triage.Triage
	Service     = triage.Service
	Orientation = triage.Orientation
)

// Outcomes, one work queue each, in queue order (triage.Outcomes).
const (
	outcomeSAI          = triage.OutcomeSAI
	outcomeInformativo  = triage.OutcomeInformativo
	outcomeAclaracion   = triage.OutcomeAclaracion
	outcomeNoCompetente = triage.OutcomeNoCompetente

	kindFalla    = triage.KindFalla
	kindServicio = triage.KindServicio

	conceptInformativo = triage.ConceptInformativo
)

var outcomes = []string{outcomeSAI, outcomeInformativo, outcomeAclaracion, outcomeNoCompetente}

// Claim is the answer of POST /api/v1/queues/{queue}/claim.
type Claim struct {
	Lease     string          `json:"lease"`
	ExpiresAt time.Time       `json:"expires_at"`
	Item      Item            `json:"item"`
	Raw       json.RawMessage `json:"-"`
}

// RequestView is the answer of GET /api/v1/requests/{id}.
type RequestView struct {
	Request   channels.Request `json:"request"`
	Triage    *Triage          `json:"triage"`
	State     string           `json:"state"`
	Queue     string           `json:"queue"`
	Folio     string           `json:"folio"`
	UpdatedAt string           `json:"updated_at"`
	// History is who did what, oldest first; servers before the audit trail send none.
	History []HistoryEvent  `json:"history"`
	Raw     json.RawMessage `json:"-"`
}

// HistoryEvent, SearchResult and Found are the server's types: the JSON contract is theirs.
type (
	HistoryEvent = audit.Event
	SearchResult = search.Result
	Found        = search.Summary
)

// Submission is the body of POST /api/v1/requests (desk intake, Script de atención).
type Submission struct {
	Channel        string `json:"channel"`
	Unit           string `json:"unit,omitempty"`
	Role           string `json:"role,omitempty"`
	Extension      string `json:"extension,omitempty"`
	Name           string `json:"name,omitempty"`
	Email          string `json:"email,omitempty"`
	Phone          string `json:"phone,omitempty"`
	Description    string `json:"description"`
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	Confirm        bool   `json:"confirm"`
}

// Submitted is the answer of POST /api/v1/requests. Created is false when the server already had a
// request with the same idempotency key (200 instead of 201).
type Submitted struct {
	ID      string          `json:"id"`
	Created bool            `json:"-"`
	Raw     json.RawMessage `json:"-"`
}

// Reroute is the body of POST /api/v1/leases/{lease}/reroute: the agent's corrected triage, as the
// queues package defines it.
type Reroute = queue.Reroute

// LeaseResult is the answer of the lease calls: State for done and release, ExpiresAt for extend,
// Queue for reroute.
type LeaseResult struct {
	State     string          `json:"state,omitempty"`
	ExpiresAt time.Time       `json:"expires_at,omitzero"`
	Queue     string          `json:"queue,omitempty"`
	Raw       json.RawMessage `json:"-"`
}

// Ready calls GET /readyz. A 503 is not an error: it is returned as Readiness with Ready false.
func (c *Client) Ready(ctx context.Context) (*Readiness, error) {
	status, body, err := c.call(ctx, http.MethodGet, "/readyz", nil)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK && status != http.StatusServiceUnavailable {
		return nil, apiError(status, body)
	}
	var r Readiness
	if err := decode(body, &r); err != nil {
		return nil, err
	}
	r.Raw = body
	return &r, nil
}

// Queues calls GET /api/v1/queues.
func (c *Client) Queues(ctx context.Context) (*Queues, error) {
	var q Queues
	raw, err := c.json(ctx, http.MethodGet, "/api/v1/queues", nil, &q, http.StatusOK)
	if err != nil {
		return nil, err
	}
	q.Raw = raw
	return &q, nil
}

// Claim takes the next item of queue under a lease. It returns ErrQueueEmpty when there is none.
// agent may be empty.
func (c *Client) Claim(ctx context.Context, queue, agent string) (*Claim, error) {
	body := struct {
		Agent string `json:"agent,omitempty"`
	}{agent}
	status, raw, err := c.call(ctx, http.MethodPost, "/api/v1/queues/"+url.PathEscape(queue)+"/claim", body)
	if err != nil {
		return nil, err
	}
	switch status {
	case http.StatusNoContent:
		return nil, ErrQueueEmpty
	case http.StatusOK:
	default:
		return nil, apiError(status, raw)
	}
	var cl Claim
	if err := decode(raw, &cl); err != nil {
		return nil, err
	}
	cl.Raw = raw
	return &cl, nil
}

// Done finishes a lease with the SAI folio, or with noFolio, the reason an sai item has none (both
// may be empty outside the sai queue).
func (c *Client) Done(ctx context.Context, lease, folio, noFolio string) (*LeaseResult, error) {
	body := struct {
		Folio         string `json:"folio,omitempty"`
		NoFolioReason string `json:"no_folio_reason,omitempty"`
		Agent         string `json:"agent,omitempty"`
	}{folio, noFolio, c.Agent}
	return c.lease(ctx, lease, "done", body)
}

// Release gives a lease back; the item returns to its queue.
func (c *Client) Release(ctx context.Context, lease string) (*LeaseResult, error) {
	return c.lease(ctx, lease, "release", struct {
		Agent string `json:"agent,omitempty"`
	}{c.Agent})
}

// Extend keeps a lease for d more (zero: the server's default).
func (c *Client) Extend(ctx context.Context, lease string, d time.Duration) (*LeaseResult, error) {
	body := struct {
		Duration string `json:"duration,omitempty"`
		Agent    string `json:"agent,omitempty"`
	}{Agent: c.Agent}
	if d > 0 {
		body.Duration = d.String()
	}
	return c.lease(ctx, lease, "extend", body)
}

// Reroute replaces the triage of a leased item and moves it to the queue of the new outcome.
func (c *Client) Reroute(ctx context.Context, lease string, r Reroute) (*LeaseResult, error) {
	if r.Agent == "" {
		r.Agent = c.Agent
	}
	return c.lease(ctx, lease, "reroute", r)
}

func (c *Client) lease(ctx context.Context, lease, action string, body any) (*LeaseResult, error) {
	var r LeaseResult
	raw, err := c.json(ctx, http.MethodPost, "/api/v1/leases/"+url.PathEscape(lease)+"/"+action, body, &r, http.StatusOK)
	if err != nil {
		return nil, err
	}
	r.Raw = raw
	return &r, nil
}

// Request calls GET /api/v1/requests/{id}.
func (c *Client) Request(ctx context.Context, id string) (*RequestView, error) {
	var v RequestView
	raw, err := c.json(ctx, http.MethodGet, "/api/v1/requests/"+url.PathEscape(id), nil, &v, http.StatusOK)
	if err != nil {
		return nil, err
	}
	v.Raw = raw
	return &v, nil
}

// Search calls GET /api/v1/requests with the query's parameters; raw is the server's answer.
func (c *Client) Search(ctx context.Context, q search.Query) (r *SearchResult, raw json.RawMessage, err error) {
	r = new(SearchResult)
	path := "/api/v1/requests"
	if v := q.Values(); len(v) > 0 {
		path += "?" + v.Encode()
	}
	if raw, err = c.json(ctx, http.MethodGet, path, nil, r, http.StatusOK); err != nil {
		return nil, nil, err
	}
	return r, raw, nil
}

// Submit calls POST /api/v1/requests.
func (c *Client) Submit(ctx context.Context, s Submission) (*Submitted, error) {
	status, raw, err := c.call(ctx, http.MethodPost, "/api/v1/requests", s)
	if err != nil {
		return nil, err
	}
	if status != http.StatusCreated && status != http.StatusOK {
		return nil, apiError(status, raw)
	}
	var r Submitted
	if err := decode(raw, &r); err != nil {
		return nil, err
	}
	r.Created = status == http.StatusCreated
	r.Raw = raw
	return &r, nil
}

// json makes a call that must answer with status ok and decodes the body into out.
func (c *Client) json(ctx context.Context, method, path string, in, out any, ok int) (json.RawMessage, error) {
	status, raw, err := c.call(ctx, method, path, in)
	if err != nil {
		return nil, err
	}
	if status != ok {
		return nil, apiError(status, raw)
	}
	if err := decode(raw, out); err != nil {
		return nil, err
	}
	return raw, nil
}

// call sends one request (in, when not nil, as JSON) and returns the status and the whole body.
func (c *Client) call(ctx context.Context, method, path string, in any) (int, []byte, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, nil, fmt.Errorf("encode body: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, body)
	if err != nil {
		return 0, nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	return c.send(req)
}

// send signs req as cauctl (user agent, bearer token) and returns the status and the whole body.
func (c *Client) send(req *http.Request) (int, []byte, error) {
	req.Header.Set("User-Agent", "cauctl")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return 0, nil, fmt.Errorf("read answer: %w", err)
	}
	return resp.StatusCode, raw, nil
}

// apiError builds the APIError for an unexpected status, from the JSON error body when there is one
// and otherwise from the first line of whatever came (a proxy's HTML page, say).
func apiError(status int, body []byte) *APIError {
	e := &APIError{Status: status, Body: body}
	var eb struct {
		Error       string              `json:"error"`
		Fields      map[string]string   `json:"fields"`
		Suggestions map[string][]string `json:"suggestions"`
	}
	if json.Unmarshal(body, &eb) == nil {
		e.Message, e.Fields, e.Suggestions = eb.Error, eb.Fields, eb.Suggestions
		return e
	}
	e.Body = nil // not JSON: nothing a script could parse
	line, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
	if len(line) > 200 {
		line = line[:200] + "…"
	}
	e.Message = line
	return e
}

// ErrBadAnswer wraps answers that do not decode as the documented JSON.
var ErrBadAnswer = errors.New("unexpected answer from server")

func decode(raw []byte, out any) error {
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("%w: %v", ErrBadAnswer, err)
	}
	return nil
}
