package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzLoadYAML writes arbitrary bytes as the config file: Load must return a config or an error,
// never panic, and a config it returns must satisfy the documented invariants. Seeds are in
// testdata/fuzz/FuzzLoadYAML.
func FuzzLoadYAML(f *testing.F) {
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "CAU_") {
			f.Setenv(k, "")
		}
	}
	if b, err := os.ReadFile("caud.example.yaml"); err == nil {
		f.Add(string(b))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, content string) {
		p := filepath.Join(dir, "caud.yaml")
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load([]string{"--config", p})
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		_ = c.Warnings()
		if r := c.NATS.Replicas; r != 1 && r != 3 && r != 5 {
			t.Errorf("replicas %d accepted", r)
		}
		if c.HTTP.MaxBodyBytes <= 0 || c.Memo.SpoolDir == "" || c.NATS.Embedded.StoreDir == "" || len(c.Roles) == 0 {
			t.Errorf("invalid config accepted: %+v", c)
		}
		for _, m := range c.IMAP.Mailboxes {
			if m.Name == "" || m.Channel == "" || m.PollInterval <= 0 || (m.Password == "" && m.PasswordFile == "") {
				t.Errorf("invalid mailbox accepted: %+v", m)
			}
		}
	})
}

// FuzzUnitsSuggest checks Suggest and Match on arbitrary text: no panic, at most n results, no
// duplicates, and an exact Match always comes first. Seeds are in testdata/fuzz/FuzzUnitsSuggest.
func FuzzUnitsSuggest(f *testing.F) {
	u := embeddedUnits(f)
	f.Fuzz(func(t *testing.T, s string, n int) {
		n = n % 20
		got := u.Suggest(s, n)
		if len(got) > max(n, 0) {
			t.Fatalf("Suggest(%q, %d) returned %d units", s, n, len(got))
		}
		seen := map[string]bool{}
		for _, x := range got {
			if seen[x.ID] {
				t.Fatalf("Suggest(%q) repeats %s", s, x.ID)
			}
			seen[x.ID] = true
		}
		m, ok := u.Match(s)
		if ok && n > 0 && (len(got) == 0 || got[0].ID != m.ID) {
			t.Fatalf("Suggest(%q) = %q, but Match gives %s", s, ids(got), m.ID)
		}
		if ok && !utf8.ValidString(m.ID) {
			t.Fatalf("bad id %q", m.ID)
		}
	})
}
