package triage

import (
	"slices"
	"testing"
	"unicode/utf8"
)

func FuzzParseCatalog(f *testing.F) {
	f.Add([]byte(smallCatalog))
	f.Add([]byte("version: x\nservices: [{id: a, keywords: [b: 1, {c: d}]}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseCatalog(data, "fuzz.yaml")
		if err != nil {
			return
		}
		// Whatever validates must compile and decide.
		e := NewEngine(c)
		got := e.Decide(Input{Subject: "prueba", Text: "no funciona el correo institucional"})
		if !slices.Contains(Outcomes, got.Outcome) {
			t.Fatalf("outcome %q", got.Outcome)
		}
	})
}

func FuzzDecide(f *testing.F) {
	f.Add("", "ayuda por favor", "facebook")
	f.Add("RE:", "Sigue igual.\n\nSaludos\nIng. X\nExt. 1", "email")
	f.Add("Solicitud", "P R E S E N T E\n\nSolicito una extensión telefónica.\n\nATENTAMENTE", "memo")
	e := NewEngine(DefaultCatalog())
	f.Fuzz(func(t *testing.T, subject, text, channel string) {
		got := e.Decide(Input{Subject: subject, Text: text, Channel: channel})
		checkTriage(t, e, got)
		if !utf8.ValidString(got.Explanation) && utf8.ValidString(subject+text) {
			t.Fatalf("invalid UTF-8 explanation %q", got.Explanation)
		}
	})
}
