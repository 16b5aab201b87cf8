package notify

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ipn-cgsi/caud/triage"
)

func TestTemplatesOverrideFromDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "acuse.txt.tmpl"), []byte("Folio {{.RequestID}} para {{.Name}} ({{.Unit}}).\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "LEEME.md"), []byte("not a template"), 0o644); err != nil {
		t.Fatal(err)
	}
	h := start(t, nil, func(o *Options) { o.TemplatesDir = dir })
	h.run(t)
	it := item(triage.OutcomeSAI)
	publishItem(t, h, it, "")
	eventually(t, "notice", 10*time.Second, func() bool { return len(h.be.messages()) == 1 })
	p := parse(t, h.be.messages()[0].Data)
	if want := "Folio " + it.Request.ID + " para Ana Ruiz Pérez (ESCOM).\n"; strings.ReplaceAll(p.text, "\r\n", "\n") != want {
		t.Errorf("text %q, want %q", p.text, want)
	}
	if !strings.Contains(p.html, "Recibimos su solicitud") {
		t.Errorf("embedded HTML not kept: %q", p.html)
	}
}

func TestBadTemplatesAreRefused(t *testing.T) {
	cases := []struct{ file, src, want string }{
		{"informativo.html.tmpl", "<p>Hola</p>\n<p>\n{{if .Name}}sin cerrar</p>\n", "informativo.html.tmpl:4: unexpected EOF"},
		{"aclaracion.txt.tmpl", "Hola\n{{.Nombre}}\n", "can't evaluate field Nombre"},
		{"subject.txt.tmpl", "Solicitud {{.RequestID\n", "subject.txt.tmpl:1"},
		{"acuse.txtt.tmpl", "x", "unknown template name"},
	}
	for _, c := range cases {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, c.file), []byte(c.src), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := loadTemplates(dir)
		if !errors.Is(err, ErrTemplate) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), filepath.Join(dir, c.file)) {
			t.Errorf("%s: error %v, want ErrTemplate naming the file and %q", c.file, err, c.want)
		}
	}
	// New refuses to start with it.
	dir := t.TempDir()
	_ = os.WriteFile(filepath.Join(dir, "acuse.social.tmpl"), []byte("{{end}}"), 0o644)
	env := start(t, nil, nil).env
	if _, err := New(t.Context(), Options{JS: env.JS, Triaged: env.Triaged, Requests: env.Requests, TemplatesDir: dir}); !errors.Is(err, ErrTemplate) {
		t.Errorf("New with a broken template: %v", err)
	}
}

func TestEmbeddedTemplatesRender(t *testing.T) {
	tm, err := loadTemplates("")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range Kinds {
		r, err := tm.render(k, Data{RequestID: "01ABC", Kind: k, Concept: triage.ConceptInformativo})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(r.Subject, "01ABC") || !strings.Contains(r.Text, "Estimado(a) usuario(a):") || strings.Contains(r.Text, "<no value>") {
			t.Errorf("%s: %q\n%s", k, r.Subject, r.Text)
		}
	}
}
