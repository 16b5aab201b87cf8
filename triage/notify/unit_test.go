package notify

import (
	"strings"
	"testing"
	"time"
)

func TestReplySubject(t *testing.T) {
	for in, want := range map[string]string{
		"Contraseña":            "Re: Contraseña",
		"RE: Contraseña":        "Re: Contraseña",
		"Re: RE: re:Contraseña": "Re: Contraseña",
		"RV: Fwd: Oficio  0457": "Re: Oficio 0457",
		"Reunión: mañana":       "Re: Reunión: mañana",
		"Solicitud: correo":     "Re: Solicitud: correo",
		"":                      "Re:",
	} {
		if got := ReplySubject(in); got != want {
			t.Errorf("ReplySubject(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNoReply(t *testing.T) {
	for _, a := range []string{"MAILER-DAEMON@ipn.mx", "postmaster@ipn.mx", "noreply@x.com", "no-reply@accounts.google.com",
		"do-not-reply@ipn.mx", "No_Responder@ipn.mx", "lista-request@ipn.mx", "owner-lista@ipn.mx", "bounces+1234@mail.example.com",
		"listserv@ipn.mx", "nada"} {
		if !noReply(a) {
			t.Errorf("noReply(%q) = false", a)
		}
	}
	for _, a := range []string{"aruiz@ipn.mx", "jorge.paz@ipn.mx", "norma.reyes@ipn.mx", "replica@ipn.mx"} {
		if noReply(a) {
			t.Errorf("noReply(%q) = true", a)
		}
	}
}

func TestMessageIDIsPerRequestKindAndDomain(t *testing.T) {
	if id := MessageID("01JD3ABCDEF", KindAcuse, "cau@IPN.mx"); id != "caud.01JD3ABCDEF.acuse@ipn.mx" {
		t.Fatalf("MessageID %q", id)
	}
}

func TestRateKeyIsPerMexicoCityDay(t *testing.T) {
	// 05:59 UTC is still the previous day in Mexico City.
	a := RateKey("Ana@IPN.mx", time.Date(2025, 10, 15, 5, 59, 0, 0, time.UTC))
	b := RateKey("ana@ipn.mx", time.Date(2025, 10, 14, 12, 0, 0, 0, time.UTC))
	if a != b || !strings.HasSuffix(a, ".20251014") || len(strings.Split(a, ".")[1]) != 32 {
		t.Errorf("rate keys %s %s", a, b)
	}
}

func TestCompose(t *testing.T) {
	e := &Email{From: "cau@ipn.mx", FromName: "CAU IPN", To: "aruiz@ipn.mx", ToName: "Ana Ruiz Pérez",
		Subject: "Re: " + strings.Repeat("Contraseña del correo institucional ", 4), MessageID: "caud.1.acuse@ipn.mx",
		InReplyTo: "a@b", References: []string{"x@y", "a@b"}, Text: "Hola, ñandú", HTML: "<p>Hola, ñandú</p>"}
	b, err := compose(e, time.Date(2025, 10, 14, 10, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	p := parse(t, b)
	if p.subject != e.Subject || p.text != "Hola, ñandú" || p.html != "<p>Hola, ñandú</p>" {
		t.Errorf("round trip: %q %q %q", p.subject, p.text, p.html)
	}
	for _, line := range strings.Split(string(b), "\r\n") {
		if len(line) > 998 {
			t.Errorf("line over 998 octets")
		}
		for _, r := range line {
			if r > 127 {
				t.Fatalf("8-bit header or body line %q", line)
			}
		}
	}
}
