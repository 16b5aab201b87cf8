package imap

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type lenientCase struct {
	File      string   `json:"file"`
	Expect    string   `json:"expect"` // request | suppress | quarantine
	Subject   *string  `json:"subject"`
	Contains  []string `json:"contains"`
	Defects   []string `json:"defects"`
	Forwarded *bool    `json:"forwarded"`
	Bulk      *string  `json:"bulk"`
	Files     []string `json:"attachments"`
	Note      string   `json:"note"`
}

// TestLenientReader runs one small mail per defect class (testdata/lenient, written for this
// project) through Assess, the decision the mailbox takes, and checks what an agent would read.
func TestLenientReader(t *testing.T) {
	for _, c := range readJSONL[lenientCase](t, "testdata/lenient/manifest.jsonl") {
		t.Run(c.File, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("testdata/lenient", c.File))
			if err != nil {
				t.Fatal(err)
			}
			v := Assess(raw, 0)
			want := map[string]string{"request": VerdictRequest, "suppress": VerdictSuppressed, "quarantine": VerdictQuarantined}[c.Expect]
			if v.Outcome != want {
				t.Fatalf("%s: outcome %s (%s %s), want %s", c.Note, v.Outcome, v.Reason, v.Detail, want)
			}
			if v.Message == nil {
				return
			}
			m := v.Message
			if c.Subject != nil && m.Subject != *c.Subject {
				t.Errorf("subject %q, want %q", m.Subject, *c.Subject)
			}
			sp := SplitRequest(m)
			for _, s := range c.Contains {
				if !strings.Contains(squeeze(sp.Text), squeeze(s)) {
					t.Errorf("text lacks %q:\n%s", s, sp.Text)
				}
			}
			for _, d := range c.Defects {
				if !contains(m.Defects, d) {
					t.Errorf("defects %v lack %s", m.Defects, d)
				}
			}
			if c.Forwarded != nil && m.Forwarded != *c.Forwarded {
				t.Errorf("forwarded %v, want %v", m.Forwarded, *c.Forwarded)
			}
			for _, want := range c.Files {
				found := false
				for _, a := range m.Attachments {
					found = found || a.Name == want
				}
				if !found {
					t.Errorf("attachments %+v lack %s", m.Attachments, want)
				}
			}
			if c.Bulk != nil && m.Bulk != *c.Bulk {
				t.Errorf("bulk %q, want %q", m.Bulk, *c.Bulk)
			}
		})
	}
}

// TestCleanMailHasNoDefects: the reader does not invent defects for well-formed mail.
func TestCleanMailHasNoDefects(t *testing.T) {
	files, _ := filepath.Glob("testdata/mail/*.eml")
	if len(files) == 0 {
		t.Fatal("no fixture mail")
	}
	for _, p := range files {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		v := Assess(raw, 0)
		if v.Message == nil || len(v.Message.Defects) > 0 {
			t.Errorf("%s: %s, defects %v", p, v.Outcome, v.Message.Defects)
		}
	}
}

// TestReaderPanicIsUnparseable: should the reader ever fail on a mail, that mail is quarantined
// with the reason, and the mailbox goes on.
func TestReaderPanicIsUnparseable(t *testing.T) {
	raw := []byte("From: a@ipn.mx\nContent-Type: application/pdf; name=x.pdf\n\n%PDF-1.4\n")
	_, err := normalizeSafe(raw, func(name, ct string, r io.Reader) (string, error) { panic("boom") })
	if !errors.Is(err, ErrUnparseable) || !errors.Is(err, ErrReaderPanic) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("err %q", err)
	}
}
