package search

import (
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/oklog/ulid/v2"
)

// Limits of a query.
const (
	// DefaultLimit is the page size when none is asked for.
	DefaultLimit = 50
	// MaxLimit is the largest page.
	MaxLimit = 500
	// maxValue bounds one parameter's length: longer is no name, address or folio.
	maxValue = 256
)

// MexicoCity is the help desk's time zone (UTC-6 all year since 2022), used for dates given without
// a time: from=2025-10-14 means that day's midnight in Mexico City.
var MexicoCity = time.FixedZone("America/Mexico_City", -6*60*60)

// Query is a search of requests. Every non-empty criterion must match (AND); text comparisons ignore
// case and accents. The zero Query matches everything, newest first.
type Query struct {
	// Text (q): every word must appear in the id, folio, name, e-mail, handle, unit, subject or the
	// first 300 bytes of the text.
	Text string `json:"q,omitempty"`
	// ID is a request id (exact).
	ID string `json:"id,omitempty"`
	// Folio is the SAI folio an agent finished the request with (exact).
	Folio string `json:"folio,omitempty"`
	// Email is the requester's address (exact).
	Email string `json:"email,omitempty"`
	// Handle is the requester's social handle, with or without "@" (exact).
	Handle string `json:"handle,omitempty"`
	// Name: every word must start a word of the requester's name ("ana lop" finds "Ana López").
	Name string `json:"name,omitempty"`
	// Unit is the requester's school, centre or unit (exact, e.g. ESCOM).
	Unit string `json:"unit,omitempty"`
	// Queue is the work queue (triage outcome): sai, informativo, aclaracion, no_competente.
	Queue string `json:"queue,omitempty"`
	// State is received, queued, claimed, done or dead.
	State string `json:"state,omitempty"`
	// Channel is the medium: email, memo, facebook, x, phone, in_person.
	Channel string `json:"channel,omitempty"`
	// From and To bound the arrival time: From <= received_at < To. Zero means unbounded.
	From time.Time `json:"from,omitzero"`
	To   time.Time `json:"to,omitzero"`
	// Limit is the page size, 1..MaxLimit; 0 means DefaultLimit.
	Limit int `json:"limit,omitempty"`
	// Cursor continues a search after a page: Result.Next of the previous page.
	Cursor string `json:"cursor,omitempty"`
}

// QueryError lists the parameters of a search that cannot be used, with a message in Spanish for
// each (the API answers them as 400 {"error":…,"fields":{…}}).
type QueryError struct {
	Fields map[string]string
}

func (e *QueryError) Error() string {
	keys := make([]string, 0, len(e.Fields))
	for k := range e.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + ": " + e.Fields[k]
	}
	return "búsqueda inválida: " + strings.Join(parts, "; ")
}

// Known values of the enumerated criteria.
var (
	knownStates   = []string{"received", "queued", "claimed", "done", "dead"}
	knownQueues   = []string{"sai", "informativo", "aclaracion", "no_competente"}
	knownChannels = []string{"email", "memo", "facebook", "x", "phone", "in_person"}
)

// params are the query parameters ParseQuery knows.
var params = map[string]bool{
	"q": true, "id": true, "folio": true, "email": true, "handle": true, "name": true, "unit": true,
	"queue": true, "state": true, "channel": true, "from": true, "to": true, "limit": true, "cursor": true,
}

// ParseQuery reads a Query from URL parameters (q, id, folio, email, handle, name, unit, queue,
// state, channel, from, to, limit, cursor). Dates are RFC 3339 or YYYY-MM-DD (a day in Mexico City;
// to=2025-10-14 includes that whole day). Unknown or repeated parameters, bad dates, an inverted
// range, unknown states, queues or channels, and malformed ids or cursors are refused with a
// *QueryError naming each.
func ParseQuery(v url.Values) (Query, error) {
	var q Query
	bad := map[string]string{}
	get := func(k string) string {
		vals := v[k]
		if len(vals) == 0 {
			return ""
		}
		if len(vals) > 1 {
			bad[k] = "se indicó más de una vez"
		}
		s := strings.TrimSpace(vals[0])
		switch {
		case !utf8.ValidString(s):
			bad[k] = "no es texto UTF-8 válido"
			return ""
		case len(s) > maxValue:
			bad[k] = fmt.Sprintf("es demasiado largo (máximo %d caracteres)", maxValue)
			return ""
		}
		return s
	}
	for k := range v {
		if !params[k] {
			bad[k] = "parámetro desconocido; use q, id, folio, email, handle, name, unit, queue, state, channel, from, to, limit o cursor"
		}
	}
	q.Text, q.Folio, q.Email, q.Name, q.Unit = get("q"), get("folio"), get("email"), get("name"), get("unit")
	q.Handle = strings.TrimSpace(strings.TrimLeft(get("handle"), "@"))
	if q.ID = strings.ToUpper(get("id")); q.ID != "" {
		if _, err := ulid.ParseStrict(q.ID); err != nil {
			bad["id"] = "no es un id de solicitud (26 caracteres)"
		}
	}
	enum := func(k string, known []string, dst *string) {
		s := strings.ToLower(get(k))
		if s == "" {
			return
		}
		for _, x := range known {
			if s == x {
				*dst = s
				return
			}
		}
		bad[k] = fmt.Sprintf("%q no es válido; use %s", s, strings.Join(known, ", "))
	}
	enum("state", knownStates, &q.State)
	enum("queue", knownQueues, &q.Queue)
	enum("channel", knownChannels, &q.Channel)
	var err error
	if s := get("from"); s != "" {
		if q.From, err = parseTime(s, false); err != nil {
			bad["from"] = err.Error()
		}
	}
	if s := get("to"); s != "" {
		if q.To, err = parseTime(s, true); err != nil {
			bad["to"] = err.Error()
		}
	}
	if !q.From.IsZero() && !q.To.IsZero() && !q.From.Before(q.To) {
		bad["to"] = "la fecha final debe ser posterior a la inicial"
	}
	if s := get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxLimit {
			bad["limit"] = fmt.Sprintf("debe ser un número entre 1 y %d", MaxLimit)
		} else {
			q.Limit = n
		}
	}
	if q.Cursor = get("cursor"); q.Cursor != "" {
		if _, err := ulid.ParseStrict(q.Cursor); err != nil {
			bad["cursor"] = "no es un cursor de esta búsqueda"
		}
	}
	if len(bad) > 0 {
		return Query{}, &QueryError{Fields: bad}
	}
	return q, nil
}

// parseTime reads RFC 3339 or a Mexico City day; a day as an upper bound means the end of that day.
func parseTime(s string, end bool) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := time.ParseInLocation("2006-01-02", s, MexicoCity)
	if err != nil {
		return time.Time{}, fmt.Errorf("fecha %q inválida; use AAAA-MM-DD o AAAA-MM-DDThh:mm:ssZ", s)
	}
	if end {
		d = d.AddDate(0, 0, 1)
	}
	return d, nil
}

// Values writes q as URL parameters, the inverse of ParseQuery (cauctl and the console use it).
func (q Query) Values() url.Values {
	v := url.Values{}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	set("q", q.Text)
	set("id", q.ID)
	set("folio", q.Folio)
	set("email", q.Email)
	set("handle", q.Handle)
	set("name", q.Name)
	set("unit", q.Unit)
	set("queue", q.Queue)
	set("state", q.State)
	set("channel", q.Channel)
	if !q.From.IsZero() {
		v.Set("from", q.From.Format(time.RFC3339Nano))
	}
	if !q.To.IsZero() {
		v.Set("to", q.To.Format(time.RFC3339Nano))
	}
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	set("cursor", q.Cursor)
	return v
}
