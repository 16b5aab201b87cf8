package imap

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ipn-cgsi/caud/config"
)

type fixtureRequest struct {
	ID        string  `json:"id"`
	FromName  string  `json:"from_name"`
	FromAddr  string  `json:"from_addr"`
	Subject   string  `json:"subject"`
	Body      string  `json:"body"`
	Unit      *string `json:"unit"`
	Role      *string `json:"role"`
	Extension *string `json:"extension"`
}

type mailManifest struct {
	ID        string `json:"id"`
	File      string `json:"file"`
	MessageID string `json:"message_id"`
}

type edgeManifest struct {
	File        string  `json:"file"`
	Expect      string  `json:"expect"`
	MustContain *string `json:"must_contain"`
}

func readJSONL[T any](t testing.TB, path string) []T {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []T
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, v)
	}
	return out
}

func fixtureRequests(t testing.TB) map[string]fixtureRequest {
	out := map[string]fixtureRequest{}
	for _, r := range readJSONL[fixtureRequest](t, "testdata/requests.jsonl") {
		out[r.ID] = r
	}
	return out
}

// squeeze collapses whitespace runs, so that texts compare exactly up to line wrapping.
func squeeze(s string) string { return strings.Join(strings.Fields(s), " ") }

func joinSplit(sp Split) string {
	var parts []string
	for _, p := range []string{sp.Text, sp.Signature, sp.Quoted} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, "\n\n")
}

func TestNormalizeFixtureMails(t *testing.T) {
	reqs := fixtureRequests(t)
	units := testUnits(t)
	var unitOK, roleOK, extOK, n int
	for _, mf := range readJSONL[mailManifest](t, "testdata/mail/manifest.jsonl") {
		t.Run(mf.ID, func(t *testing.T) {
			f, err := os.Open(filepath.Join("testdata/mail", mf.File))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			m, err := Normalize(f, nil)
			if err != nil {
				t.Fatal(err)
			}
			want := reqs[mf.ID]
			if m.MessageID != mf.MessageID {
				t.Errorf("message id %q, want %q", m.MessageID, mf.MessageID)
			}
			if m.Subject != want.Subject {
				t.Errorf("subject %q, want %q", m.Subject, want.Subject)
			}
			if m.FromName != want.FromName || m.FromEmail != want.FromAddr {
				t.Errorf("from %q <%s>, want %q <%s>", m.FromName, m.FromEmail, want.FromName, want.FromAddr)
			}
			if m.Auto != "" {
				t.Errorf("classified auto %q", m.Auto)
			}
			sp := SplitBody(m.Body, m.FromName)
			if got := squeeze(joinSplit(sp)); got != squeeze(want.Body) {
				t.Errorf("text differs\n got: %q\nwant: %q", joinSplit(sp), want.Body)
			}
			if sp.Text == "" {
				t.Errorf("empty new text")
			}
			fl := ExtractFieldsFrom(sp, m.FromEmail, units)
			n++
			if want.Unit != nil && fl.Unit == *want.Unit {
				unitOK++
			} else if want.Unit != nil {
				t.Logf("unit %q, want %q (signature %q)", fl.Unit, *want.Unit, sp.Signature)
			}
			if want.Role != nil && fl.Role == *want.Role {
				roleOK++
			} else if want.Role != nil {
				t.Logf("role %q, want %q (signature %q)", fl.Role, *want.Role, sp.Signature)
			}
			if want.Extension != nil && fl.Extension == *want.Extension {
				extOK++
			} else if want.Extension != nil {
				t.Errorf("extension %q, want %q", fl.Extension, *want.Extension)
			} else if fl.Extension != "" {
				t.Errorf("extension %q, want none", fl.Extension)
			}
		})
	}
	if unitOK < 27 || roleOK < 22 || extOK < 26 {
		t.Errorf("signature extraction regressed")
	}
	t.Logf("of %d mails: unit right %d, role right %d, extension right %d", n, unitOK, roleOK, extOK)
}

func testUnits(t testing.TB) *config.Units {
	t.Helper()
	u, err := config.LoadUnits("")
	if err != nil {
		t.Fatal(err)
	}
	return u
}
