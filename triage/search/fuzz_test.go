package search_test

import (
	"errors"
	"net/url"
	"testing"

	"github.com/ipn-cgsi/caud/triage/search"
)

// FuzzParseQuery: any query string is either refused with field errors or parsed into a Query that
// survives a round trip through Values unchanged.
func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{
		"", "q=correo", "id=01JD0000000000000000000000", "folio=SAI-1&email=a@ipn.mx&handle=@x&name=ana%20lópez",
		"unit=ESCOM&queue=sai&state=done&channel=email", "from=2025-10-14&to=2025-10-15T00:00:00Z",
		"from=2025-10-15&to=2025-10-14", "limit=0", "limit=501", "cursor=zzz", "q=a&q=b", "x=1", "name=%FF",
		"handle=@@@", "from=2025-10-14T10:00:00.123456789-05:00",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, err := search.ParseQuery(v)
		if err != nil {
			var qe *search.QueryError
			if !errors.As(err, &qe) || len(qe.Fields) == 0 {
				t.Fatalf("%q: error without fields: %v", raw, err)
			}
			return
		}
		if q.Limit < 0 || q.Limit > search.MaxLimit {
			t.Fatalf("%q: limit %d", raw, q.Limit)
		}
		if !q.From.IsZero() && !q.To.IsZero() && !q.From.Before(q.To) {
			t.Fatalf("%q: inverted range accepted", raw)
		}
		back, err := search.ParseQuery(q.Values())
		if err != nil {
			t.Fatalf("%q: round trip refused: %v (values %v)", raw, err, q.Values())
		}
		if !back.From.Equal(q.From) || !back.To.Equal(q.To) {
			t.Fatalf("%q: times changed in round trip: %v %v -> %v %v", raw, q.From, q.To, back.From, back.To)
		}
		back.From, back.To = q.From, q.To
		if back != q {
			t.Fatalf("%q: round trip changed the query:\n%+v\n%+v", raw, q, back)
		}
	})
}
