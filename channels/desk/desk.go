// Package desk is the phone and in-person channel: agents following the Script de atención
// (FO-CAU-01-01) capture the unit, the role, the extension and the description of the problem, and
// submit them with POST /api/v1/requests. Submissions are validated field by field with messages an
// agent can read, deduplicated by idempotency key, and published through the sink.
package desk

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/mail"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/httpjson"
	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/channels/retry"
)

// Units checks a unit against the IPN unit list.
type Units interface {
	// Canonical returns the unit's canonical id ("ESCOM") when s names a known unit.
	Canonical(s string) (string, bool)
	// Suggest returns up to n close matches for an unknown unit.
	Suggest(s string, n int) []string
}

// Options configures the desk channel. Zero values are documented defaults.
type Options struct {
	// Sink publishes accepted requests (required).
	Sink channels.Sink
	// Units validates the unit; nil accepts any unit as written.
	Units Units
	// Idempotency remembers the request created for each idempotency key, across restarts and
	// replicas: KV cau_requests, keys "idem.desk.<hash>" (required).
	Idempotency jetstream.KeyValue
	// MaxBodyBytes bounds the JSON body; 0 means 1 MiB. Larger bodies get 413.
	MaxBodyBytes int64
	// PublishTimeout bounds the wait for JetStream before answering 503; 0 means 10 s.
	PublishTimeout time.Duration
	// ClaimTimeout bounds the idempotency claim in Idempotency; 0 means 1 s. When the bucket does
	// not answer in time (its raft leader was lost and nats-server takes 4-9 s to elect another),
	// the desk reads the record from any replica and otherwise lets the inbound stream's Nats-Msg-Id
	// decide (see Submit), so a lost leader costs about this long, not the election.
	ClaimTimeout time.Duration
	Logger       *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Desk is the phone / in-person intake. Safe for concurrent use.
type Desk struct {
	o   Options
	ids *channels.IDs
	log *slog.Logger
}

// New returns the desk channel.
func New(o Options) (*Desk, error) {
	if o.Sink == nil {
		return nil, errors.New("desk: no sink")
	}
	if o.Idempotency == nil {
		return nil, errors.New("desk: no idempotency store")
	}
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = 1 << 20
	}
	if o.PublishTimeout == 0 {
		o.PublishTimeout = 10 * time.Second
	}
	if o.ClaimTimeout == 0 {
		o.ClaimTimeout = time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	log := channels.OrDiscard(o.Logger)
	return &Desk{o: o, ids: channels.NewIDs(), log: log}, nil
}

// Submission is the body of POST /api/v1/requests.
type Submission struct {
	Channel        string `json:"channel"`
	Unit           string `json:"unit"`
	Role           string `json:"role"`
	Extension      string `json:"extension"`
	Name           string `json:"name"`
	Email          string `json:"email"`
	Phone          string `json:"phone"`
	Description    string `json:"description"`
	IdempotencyKey string `json:"idempotency_key"`
	Confirm        bool   `json:"confirm"`
}

// Limits of the desk form. MaxDescription is the one limit of a description, in characters, for
// every way of submitting one (API, cauctl, the console's phone intake); the HTTP body limit
// (http.max_body_bytes, 1 MiB) only bounds the envelope and is never the one that refuses a text.
const (
	MaxDescription = 20000
	maxName        = 200
	maxKey         = 200
)

var (
	extRe   = regexp.MustCompile(`^[0-9]{4,6}$`)
	phoneRe = regexp.MustCompile(`^\+?[0-9 ()\-.]{8,25}$`)
)

// FieldErrors maps a field to a Spanish message; Suggestions maps a field to close valid values.
type FieldErrors struct {
	Fields      map[string]string
	Suggestions map[string][]string
}

func (f *FieldErrors) add(field, msg string) {
	if f.Fields == nil {
		f.Fields = map[string]string{}
	}
	if _, ok := f.Fields[field]; !ok {
		f.Fields[field] = msg
	}
}

// Validate checks and normalizes a submission (trimming, canonical unit, extension digits). It
// returns the field errors, empty when the submission is acceptable.
func (d *Desk) Validate(s *Submission) FieldErrors {
	var fe FieldErrors
	trim := func(p *string) { *p = strings.TrimSpace(*p) }
	for _, p := range []*string{&s.Channel, &s.Unit, &s.Role, &s.Extension, &s.Name, &s.Email, &s.Phone, &s.IdempotencyKey} {
		trim(p)
	}
	s.Description = strings.TrimSpace(strings.ToValidUTF8(s.Description, "\uFFFD"))
	switch s.Channel {
	case channels.MediumPhone, channels.MediumInPerson:
	case "":
		fe.add("channel", "Indique el medio: phone (teléfono) o in_person (en persona).")
	default:
		fe.add("channel", fmt.Sprintf("Medio %q no válido; use phone o in_person.", s.Channel))
	}
	switch {
	case s.Description == "":
		fe.add("description", "La descripción del problema es obligatoria.")
	case utf8.RuneCountInString(s.Description) > MaxDescription:
		fe.add("description", fmt.Sprintf("La descripción excede %d caracteres.", MaxDescription))
	}
	switch s.Role {
	case "", channels.RoleDocente, channels.RoleAdministrativo, channels.RoleAlumno, channels.RoleOtro:
	default:
		fe.add("role", "Tipo de usuario no válido; use docente, administrativo, alumno u otro.")
	}
	if s.Unit != "" && d.o.Units != nil {
		if id, ok := d.o.Units.Canonical(s.Unit); ok {
			s.Unit = id
		} else {
			sugg := d.o.Units.Suggest(s.Unit, 3)
			msg := fmt.Sprintf("Unidad %q desconocida.", s.Unit)
			if len(sugg) > 0 {
				msg += " ¿Quiso decir " + strings.Join(sugg, ", ") + "?"
				if fe.Suggestions == nil {
					fe.Suggestions = map[string][]string{}
				}
				fe.Suggestions["unit"] = sugg
			}
			fe.add("unit", msg)
		}
	}
	if s.Extension != "" {
		ext := strings.TrimSpace(strings.TrimPrefix(strings.TrimPrefix(strings.ToLower(s.Extension), "ext."), "ext"))
		if !extRe.MatchString(ext) {
			fe.add("extension", "La extensión debe tener de 4 a 6 dígitos, por ejemplo 52034.")
		} else {
			s.Extension = ext
		}
	}
	if s.Email != "" {
		a, err := mail.ParseAddress(s.Email)
		if err != nil || a.Address != s.Email {
			fe.add("email", "Correo electrónico no válido; escríbalo como usuario@ipn.mx.")
		}
	}
	if s.Phone != "" && !phoneRe.MatchString(s.Phone) {
		fe.add("phone", "Teléfono no válido; use de 8 a 15 dígitos, por ejemplo 55 5729 6000.")
	}
	if utf8.RuneCountInString(s.Name) > maxName {
		fe.add("name", fmt.Sprintf("El nombre excede %d caracteres.", maxName))
	}
	if len(s.IdempotencyKey) > maxKey || strings.IndexFunc(s.IdempotencyKey, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		fe.add("idempotency_key", fmt.Sprintf("La clave de idempotencia debe ser texto imprimible de hasta %d caracteres.", maxKey))
	}
	return fe
}

// Result says what Submit did.
type Result struct {
	ID string
	// Repeated is true when the idempotency key had been seen: no new request was created.
	Repeated bool
}

// Errors of Submit.
var (
	ErrKeyReused = errors.New("idempotency key reused with a different submission")
)

type idemRecord struct {
	Request   channels.Request `json:"request"`
	Hash      string           `json:"hash"`
	Published bool             `json:"published"`
}

// Submit turns a validated submission into a request and publishes it, returning once JetStream
// acknowledged it. With an idempotency key a repeated submission returns the first request's id,
// and a key reused for a different submission fails with ErrKeyReused.
//
// The key's record in KV cau_requests is claimed first (create-only, so of racing replicas one
// wins and the others read its record). When the bucket gives no answer within ClaimTimeout (its
// leader was lost), the record is read from any replica, which has every record but those of the
// last milliseconds; without one, the request is published unclaimed and the inbound stream
// decides: every attempt with the key carries the same Nats-Msg-Id, and an attempt that JetStream
// reports a duplicate answers with the request JetStream kept (or ErrKeyReused when that request
// says something else). The record is then written in the background.
func (d *Desk) Submit(ctx context.Context, s Submission) (Result, error) {
	now := d.o.Now().UTC()
	req := &channels.Request{
		ID:         d.ids.New(now),
		Channel:    s.Channel,
		ReceivedAt: now,
		Source:     channels.Source{IdempotencyKey: s.IdempotencyKey},
		Requester: channels.Requester{
			Name: s.Name, Email: s.Email, Phone: s.Phone, Unit: s.Unit, Role: s.Role, Extension: s.Extension,
		},
		Text:    s.Description,
		Confirm: s.Confirm,
	}
	msgID := "desk:" + req.ID
	var idemKey string
	unclaimed := false
	if s.IdempotencyKey != "" {
		msgID = "desk:key:" + natsjs.ShortHash(s.IdempotencyKey)
		idemKey = natsjs.DeskIdempotencyKey(s.IdempotencyKey).String()
		prev, err := d.claimKey(ctx, idemKey, idemRecord{Request: *req, Hash: fingerprint(s)})
		if errors.Is(err, errClaimUnavailable) {
			prev, err = d.replicaRecord(ctx, idemKey)
			unclaimed = err == nil && prev == nil
		}
		switch {
		case err != nil:
			return Result{}, err
		case prev == nil:
			// The key is ours (or, unclaimed, the stream decides): publish below.
		case prev.Hash != fingerprint(s):
			return Result{}, ErrKeyReused
		case prev.Published:
			return Result{ID: prev.Request.ID, Repeated: true}, nil
		default:
			// The first attempt may have landed without its ack reaching it (a timeout, a full
			// store): the request index knows, even after the duplicate window of the Nats-Msg-Id.
			if d.indexed(ctx, prev.Request.ID) {
				return Result{ID: prev.Request.ID, Repeated: true}, nil
			}
			// Else publish the same request with the same Nats-Msg-Id, which JetStream drops if it
			// did land.
			req = &prev.Request
		}
	}
	rec, err := d.o.Sink.Publish(ctx, channels.Submission{
		Request: req,
		Subject: channels.SubjectDesk,
		MsgID:   msgID,
		Source:  "desk://" + req.Channel,
		// No original is archived: the agent's form is the request itself (the design archives
		// e-mails, scans and webhook bodies).
	})
	if err != nil {
		return Result{}, err
	}
	if rec.Duplicate && idemKey != "" {
		// The request JetStream kept is the one to answer with: it may come from an attempt
		// that published unclaimed while the bucket had no leader.
		kept, err := d.kept(ctx, rec)
		switch {
		case err == nil && fingerprint(submissionOf(kept)) != fingerprint(s):
			return Result{}, ErrKeyReused
		case err == nil:
			req = kept
		case unclaimed:
			return Result{}, err
		default:
			d.log.Warn("read back a duplicate request", "id", req.ID, "err", err)
		}
	}
	if idemKey != "" {
		// Unclaimed, the bucket just gave no answer: do not wait for it again.
		d.recordPublished(ctx, idemKey, idemRecord{Request: *req, Hash: fingerprint(s), Published: true}, !unclaimed)
	}
	return Result{ID: req.ID, Repeated: rec.Duplicate}, nil
}

// errClaimUnavailable means the idempotency bucket gave no answer within ClaimTimeout.
var errClaimUnavailable = errors.New("idempotency records unavailable")

// replicaRecord reads the record of key from any replica of the bucket; nil when there is none.
func (d *Desk) replicaRecord(ctx context.Context, key string) (*idemRecord, error) {
	rctx, cancel := context.WithTimeout(ctx, d.o.ClaimTimeout)
	defer cancel()
	e, err := natsjs.ReplicaGet(rctx, d.o.Idempotency, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("idempotency key: %w", err)
	}
	var prev idemRecord
	if err := json.Unmarshal(e.Value(), &prev); err != nil {
		return nil, fmt.Errorf("idempotency key: decode: %w", err)
	}
	return &prev, nil
}

// indexed reports whether the request index has id, asking for at most ClaimTimeout (a bucket
// without a leader answers nothing; the publish with the same Nats-Msg-Id is then the check).
func (d *Desk) indexed(ctx context.Context, id string) bool {
	ictx, cancel := context.WithTimeout(ctx, d.o.ClaimTimeout)
	defer cancel()
	_, _, err := natsjs.GetState(ictx, d.o.Idempotency, id)
	return err == nil
}

// kept returns the request JetStream kept for a duplicate publish.
func (d *Desk) kept(ctx context.Context, rec channels.Receipt) (*channels.Request, error) {
	r, ok := d.o.Sink.(channels.Recaller)
	if !ok {
		return nil, fmt.Errorf("desk: %w: the sink cannot read back a duplicate", channels.ErrNotReady)
	}
	// The stream just answered, so its leader is there; should it be lost right now, its
	// successor answers within the publish timeout.
	return retry.Do(ctx, retry.Policy{Initial: 50 * time.Millisecond, Max: 500 * time.Millisecond, Jitter: 0.3}, func(ctx context.Context) (*channels.Request, error) {
		actx, cancel := context.WithTimeout(ctx, keyAttempt)
		defer cancel()
		kept, err := r.Recall(actx, rec)
		if err == nil && kept.Source.IdempotencyKey == "" {
			return nil, fmt.Errorf("%w: desk: recall: %s #%d is no keyed desk request", retry.ErrPermanent, rec.Stream, rec.Sequence)
		}
		return kept, err
	}, nil)
}

// recordPublished writes the key's record as published. It waits at most ClaimTimeout (not at
// all unless wait) and finishes in the background: a missing record is harmless (a retry finds
// the request through the index or the Nats-Msg-Id), it only saves work.
func (d *Desk) recordPublished(ctx context.Context, key string, rec idemRecord, wait bool) {
	b, _ := json.Marshal(rec)
	done := make(chan struct{})
	go func() {
		defer close(done)
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
		defer cancel()
		_, err := retry.Do(bctx, retry.Policy{Initial: 100 * time.Millisecond, Max: time.Second, Jitter: 0.3}, func(actx context.Context) (uint64, error) {
			actx, cancel := context.WithTimeout(actx, keyAttempt)
			defer cancel()
			return d.o.Idempotency.Put(actx, key, b)
		}, nil)
		if err != nil {
			d.log.Warn("idempotency record", "err", err)
		}
	}()
	if !wait {
		return
	}
	t := time.NewTimer(d.o.ClaimTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	case <-ctx.Done():
	}
}

// recordTimeout bounds the background write of a published record.
const recordTimeout = 30 * time.Second

// submissionOf is the submission a desk request was made of (for its fingerprint).
func submissionOf(r *channels.Request) Submission {
	q := r.Requester
	return Submission{Channel: r.Channel, Unit: q.Unit, Role: q.Role, Extension: q.Extension, Name: q.Name,
		Email: q.Email, Phone: q.Phone, Description: r.Text, Confirm: r.Confirm}
}

// claimKey records rec under an idempotency key, or returns the record already there (nil when rec
// was recorded). Several replicas may race for a key: the bucket's leader admits one create, and
// the others read that record, waiting while it is still in flight. Attempts are retried for at
// most ClaimTimeout; then it fails with errClaimUnavailable, at once when nobody serves the bucket
// (no responders: no leader). A resource refusal fails at once.
func (d *Desk) claimKey(ctx context.Context, key string, rec idemRecord) (*idemRecord, error) {
	b, _ := json.Marshal(rec)
	p := retry.Policy{Initial: 20 * time.Millisecond, Max: 250 * time.Millisecond, Jitter: 0.3}
	cctx, cancel := context.WithTimeout(ctx, d.o.ClaimTimeout)
	defer cancel()
	prev, err := retry.Do(cctx, p, func(ctx context.Context) (*idemRecord, error) {
		actx, cancel := context.WithTimeout(ctx, keyAttempt)
		defer cancel()
		_, err := d.o.Idempotency.Create(actx, key, b)
		if err == nil {
			return nil, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			if r, ok := d.o.Sink.(channels.RefusalNoter); ok {
				r.NoteRefusal(err)
			}
			if _, full := natsjs.ResourceRefusal(err); full {
				// The store is full: answer at once (503, retry later), no point in waiting.
				return nil, fmt.Errorf("%w: idempotency key: %w", retry.ErrPermanent, err)
			}
			if errors.Is(err, jetstream.ErrNoStreamResponse) {
				// Nobody serves the bucket: it has no leader now, and will not for seconds.
				return nil, fmt.Errorf("%w: %w: %w", retry.ErrPermanent, errClaimUnavailable, err)
			}
			return nil, fmt.Errorf("idempotency key: %w", err)
		}
		e, err := d.o.Idempotency.Get(actx, key)
		if err != nil {
			// Not found: the other create is still in flight (or failed); try again.
			return nil, fmt.Errorf("idempotency key: %w", err)
		}
		var prev idemRecord
		if err := json.Unmarshal(e.Value(), &prev); err != nil {
			return nil, fmt.Errorf("%w: idempotency key: decode: %v", retry.ErrPermanent, err)
		}
		return &prev, nil
	}, func(attempt int, err error, wait time.Duration) {
		if attempt > 3 {
			d.log.Warn("idempotency key, retrying", "attempt", attempt, "err", err, "in", wait)
		}
	})
	switch {
	case errors.Is(err, errClaimUnavailable):
		d.log.Debug("idempotency records have no leader; the inbound stream decides", "err", err)
		return nil, err
	case err != nil && ctx.Err() == nil && cctx.Err() != nil && !errors.Is(err, retry.ErrPermanent):
		d.log.Debug("idempotency records gave no answer in time; the inbound stream decides", "after", d.o.ClaimTimeout, "err", err)
		return nil, fmt.Errorf("%w: %w", errClaimUnavailable, err)
	}
	return prev, err
}

// keyAttempt bounds one attempt at an idempotency record.
const keyAttempt = 2 * time.Second

// fingerprint identifies what a submission asks, to detect a key reused for something else.
func fingerprint(s Submission) string {
	s.IdempotencyKey = ""
	b, _ := json.Marshal(s)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// ServeHTTP handles POST /api/v1/requests.
func (d *Desk) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, err := httpjson.ReadBody(w, r, d.o.MaxBodyBytes)
	if errors.Is(err, httpjson.ErrTooLarge) {
		httpjson.Fail(w, http.StatusRequestEntityTooLarge, err.Error())
		return
	}
	if err != nil {
		httpjson.Fail(w, http.StatusBadRequest, err.Error())
		return
	}
	var s Submission
	if err := httpjson.DecodeBytes(raw, &s, false); err != nil {
		httpjson.Fail(w, http.StatusBadRequest, err.Error())
		return
	}
	if fe := d.Validate(&s); len(fe.Fields) > 0 {
		httpjson.Write(w, http.StatusBadRequest, httpjson.Error{
			Error: "La solicitud tiene datos inválidos; revise los campos marcados.", Fields: fe.Fields, Suggestions: fe.Suggestions,
		})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), d.o.PublishTimeout)
	defer cancel()
	res, err := d.Submit(ctx, s)
	switch {
	case errors.Is(err, ErrKeyReused):
		httpjson.Write(w, http.StatusConflict, httpjson.Error{
			Error:  "La clave de idempotencia ya se usó con otros datos.",
			Fields: map[string]string{"idempotency_key": "Use una clave nueva para una solicitud distinta."},
		})
	case errors.Is(err, channels.ErrInvalid):
		httpjson.Fail(w, http.StatusBadRequest, err.Error())
	case err != nil:
		d.log.Error("desk submit", "err", err)
		w.Header().Set("Retry-After", "5")
		httpjson.Fail(w, http.StatusServiceUnavailable, "No se pudo registrar la solicitud en este momento; reintente con la misma clave de idempotencia.")
	case res.Repeated:
		httpjson.Write(w, http.StatusOK, map[string]string{"id": res.ID})
	default:
		httpjson.Write(w, http.StatusCreated, map[string]string{"id": res.ID})
	}
}
