package notify

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	texttemplate "text/template"
)

//go:embed templates/*.tmpl
var embedded embed.FS

// Data is what every template sees. Strings are empty when unknown; templates must cope.
type Data struct {
	// RequestID is the request's id (a ULID), the number the requester quotes.
	RequestID string
	// Kind is the notice: acuse | no_competente | informativo | aclaracion.
	Kind string
	// Name is the requester's name as it arrived.
	Name string
	// Subject is the subject of the original message or memo.
	Subject string
	// Text is an excerpt of the request text (at most 300 characters, whitespace collapsed).
	Text string
	// Office and Orientation are the triage's orientation (no_competente): where to go and what to say.
	Office      string
	Orientation string
	// Questions are the clarification questions (aclaracion).
	Questions []string
	// Concept is the SAI concept (CAU_INFORMATIVO_04A for informativo).
	Concept string
	// Service is the name of the SAI service (sai).
	Service string
	// ReceivedAt is when the request arrived, in Mexico City time: "14/10/2025 10:03 h".
	ReceivedAt string
	// Channel is the medium it arrived by: email, memo, facebook, x, phone, in_person.
	Channel string
	// Unit is the requester's school, centre or unit when known.
	Unit string
	// Public is true when the text is published where others can read it (a reply to a comment).
	Public bool
}

// Kinds of notice.
const (
	KindAcuse        = "acuse"
	KindNoCompetente = "no_competente"
	KindInformativo  = "informativo"
	KindAclaracion   = "aclaracion"
)

// Kinds lists every kind of notice.
var Kinds = []string{KindAcuse, KindNoCompetente, KindInformativo, KindAclaracion}

// ErrTemplate is wrapped by every template error: a file that does not parse or does not execute
// against sample data, or an unknown file name in the templates directory.
var ErrTemplate = errors.New("bad notification template")

// templates holds the parsed set: per kind a text, an HTML and a social body, and the subject.
type templates struct {
	subject *texttemplate.Template
	text    map[string]*texttemplate.Template
	html    map[string]*htmltemplate.Template
	social  map[string]*texttemplate.Template
}

var funcs = map[string]any{
	"inc": func(i int) int { return i + 1 },
}

// templateNames lists every file a templates directory may hold.
func templateNames() []string {
	names := []string{"subject.txt.tmpl"}
	for _, k := range Kinds {
		names = append(names, k+".txt.tmpl", k+".html.tmpl", k+".social.tmpl")
	}
	return names
}

// loadTemplates parses the embedded templates, each replaced by the file of the same name in dir
// when dir is set, and executes every one against sample data so that a template referring to an
// unknown variable is refused at start rather than when a requester is waiting.
func loadTemplates(dir string) (*templates, error) {
	known := map[string]bool{}
	for _, n := range templateNames() {
		known[n] = true
	}
	if dir != "" {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("%w: templates dir: %v", ErrTemplate, err)
		}
		for _, e := range entries {
			if !e.IsDir() && strings.HasSuffix(e.Name(), ".tmpl") && !known[e.Name()] {
				return nil, fmt.Errorf("%w: %s: unknown template name (known: %s)", ErrTemplate,
					filepath.Join(dir, e.Name()), strings.Join(templateNames(), ", "))
			}
		}
	}
	read := func(name string) (src, path string, err error) {
		if dir != "" {
			p := filepath.Join(dir, name)
			b, err := os.ReadFile(p)
			if err == nil {
				return string(b), p, nil
			}
			if !errors.Is(err, fs.ErrNotExist) {
				return "", p, fmt.Errorf("%w: %v", ErrTemplate, err)
			}
		}
		b, err := embedded.ReadFile("templates/" + name)
		return string(b), "templates/" + name + " (embedded)", err
	}
	t := &templates{
		text:   map[string]*texttemplate.Template{},
		html:   map[string]*htmltemplate.Template{},
		social: map[string]*texttemplate.Template{},
	}
	parseText := func(name string) (*texttemplate.Template, error) {
		src, path, err := read(name)
		if err != nil {
			return nil, err
		}
		tt, err := texttemplate.New(name).Funcs(funcs).Parse(src)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrTemplate, path, err)
		}
		if err := tryText(tt); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrTemplate, path, err)
		}
		return tt, nil
	}
	var err error
	if t.subject, err = parseText("subject.txt.tmpl"); err != nil {
		return nil, err
	}
	for _, k := range Kinds {
		if t.text[k], err = parseText(k + ".txt.tmpl"); err != nil {
			return nil, err
		}
		if t.social[k], err = parseText(k + ".social.tmpl"); err != nil {
			return nil, err
		}
		name := k + ".html.tmpl"
		src, path, err := read(name)
		if err != nil {
			return nil, err
		}
		ht, err := htmltemplate.New(name).Funcs(funcs).Parse(src)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrTemplate, path, err)
		}
		for _, d := range sampleData(k) {
			if err := ht.Execute(&bytes.Buffer{}, d); err != nil {
				return nil, fmt.Errorf("%w: %s: %v", ErrTemplate, path, err)
			}
		}
		t.html[k] = ht
	}
	return t, nil
}

func tryText(tt *texttemplate.Template) error {
	for _, k := range Kinds {
		for _, d := range sampleData(k) {
			if err := tt.Execute(&bytes.Buffer{}, d); err != nil {
				return err
			}
		}
	}
	return nil
}

// sampleData is a full and an empty Data, to exercise every branch a template may take.
func sampleData(kind string) []Data {
	return []Data{{
		RequestID: "01JD0000000000000000000000", Kind: kind, Name: "Ana Ruiz", Subject: "Correo",
		Text: "No puedo entrar a mi correo", Office: "Dirección de Servicios Estudiantiles",
		Orientation: "Consulte la convocatoria.", Questions: []string{"¿Qué servicio?", "¿Desde cuándo?"},
		Concept: "CAU_INFORMATIVO_04A", Service: "Correo institucional", ReceivedAt: "14/10/2025 10:03 h",
		Channel: "email", Unit: "ESCOM", Public: true,
	}, {Kind: kind}}
}

// rendered is one notice's text in every form.
type rendered struct {
	Subject, Text, HTML, Social string
}

func (t *templates) render(kind string, d Data) (rendered, error) {
	var r rendered
	var b bytes.Buffer
	if err := t.subject.Execute(&b, d); err != nil {
		return r, fmt.Errorf("render subject: %w", err)
	}
	r.Subject = strings.Join(strings.Fields(b.String()), " ")
	b.Reset()
	if err := t.text[kind].Execute(&b, d); err != nil {
		return r, fmt.Errorf("render %s text: %w", kind, err)
	}
	r.Text = b.String()
	b.Reset()
	if err := t.html[kind].Execute(&b, d); err != nil {
		return r, fmt.Errorf("render %s html: %w", kind, err)
	}
	r.HTML = b.String()
	b.Reset()
	if err := t.social[kind].Execute(&b, d); err != nil {
		return r, fmt.Errorf("render %s social: %w", kind, err)
	}
	r.Social = strings.TrimSpace(b.String())
	return r, nil
}
