package desk_test

import (
	"testing"
	"time"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/desk"
	"github.com/ipn-cgsi/caud/channels/httpjson"
)

// FuzzSubmission feeds arbitrary bodies through the desk's decoding and validation: it must never
// panic, and whatever it accepts must make a valid Request.
func FuzzSubmission(f *testing.F) {
	f.Add([]byte(`{"channel":"phone","unit":"ESCOM","role":"docente","extension":"52034","description":"no puedo entrar a mi correo"}`))
	f.Add([]byte(`{"channel":"in_person","description":"\u0000\ud800","email":"a@b","phone":"+52 (55) 5729-6000"}`))
	f.Add([]byte(`{"channel":"phone","description":"x","idempotency_key":"\u2028"}`))
	d, err := desk.New(desk.Options{Sink: failingSink{}, Units: units{}, Idempotency: nil})
	if err == nil {
		f.Fatal("desk without idempotency store accepted")
	}
	env := newEnvOnce(f)
	d, err = desk.New(desk.Options{Sink: failingSink{}, Units: units{}, Idempotency: env.Requests})
	if err != nil {
		f.Fatal(err)
	}
	ids := channels.NewIDs()
	f.Fuzz(func(t *testing.T, body []byte) {
		var s desk.Submission
		if err := httpjson.DecodeBytes(body, &s, false); err != nil {
			return
		}
		if fe := d.Validate(&s); len(fe.Fields) > 0 {
			for k, v := range fe.Fields {
				if k == "" || v == "" {
					t.Fatalf("empty field error %q: %q", k, v)
				}
			}
			return
		}
		now := time.Now()
		r := channels.Request{ID: ids.New(now), Channel: s.Channel, ReceivedAt: now, Text: s.Description,
			Requester: channels.Requester{Role: s.Role, Unit: s.Unit, Extension: s.Extension}}
		if err := r.Validate(); err != nil {
			t.Fatalf("accepted submission %+v makes an invalid request: %v", s, err)
		}
	})
}
