package triage

import (
	"os"
	"testing"
)

// TestAttachmentTextDecidesAMailThatSaysNothing: a mail whose only content is an attached oficio
// is triaged from the oficio (not aclaracion); with a body of its own, the body decides.
func TestAttachmentTextDecidesAMailThatSaysNothing(t *testing.T) {
	e := NewEngine(DefaultCatalog())
	read := func(name string) string {
		b, err := os.ReadFile("testdata/attachments/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	nodos := read("oficio-nodos-red.txt")
	if got := e.Decide(Input{Channel: "email", Subject: "", Text: ""}); got.Outcome != OutcomeAclaracion {
		t.Fatalf("empty mail: %s, want aclaracion", got.Outcome)
	}
	for _, in := range []Input{
		{Channel: "email", Attachments: nodos},
		{Channel: "email", Subject: "Oficio", Text: "Buen día, adjunto oficio.", Attachments: nodos},
	} {
		got := e.Decide(in)
		if got.Outcome != OutcomeSAI || got.Service == nil || got.Service.Area != "RED" {
			t.Errorf("%q + oficio: %s %+v (%s), want sai RED", in.Text, got.Outcome, got.Service, got.Explanation)
		}
	}
	// The requester's own words come first: the same oficio beside a body about something else.
	body := "No puedo entrar a mi correo institucional, me dice que la contraseña es incorrecta desde ayer y necesito enviar calificaciones."
	alone := e.Decide(Input{Channel: "email", Text: body})
	with := e.Decide(Input{Channel: "email", Text: body, Attachments: read("oficio-aire.txt")})
	if alone.Outcome != with.Outcome || (alone.Service == nil) != (with.Service == nil) || alone.Service != nil && alone.Service.ID != with.Service.ID {
		t.Errorf("body alone %s %+v; with an unrelated attachment %s %+v", alone.Outcome, alone.Service, with.Outcome, with.Service)
	}
}
