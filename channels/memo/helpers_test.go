package memo

import (
	"bufio"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/ipn-cgsi/caud/config"
	"github.com/ipn-cgsi/caud/config/fold"
)

// configUnits adapts config.Units the way the lead wires it in cmd/caud.
type configUnits struct{ u *config.Units }

func (c configUnits) Canonical(s string) (string, bool) {
	u, ok := c.u.Match(s)
	return u.ID, ok
}

func testUnits(t testing.TB) Units {
	t.Helper()
	u, err := config.LoadUnits("")
	if err != nil {
		t.Fatalf("units: %v", err)
	}
	return configUnits{u}
}

type fixture struct {
	ID        string  `json:"id"`
	File      string  `json:"file"`
	Unit      string  `json:"unit"`
	Subject   string  `json:"subject"`
	Number    string  `json:"number"`
	Signer    string  `json:"signer"`
	Extension *string `json:"extension"`
}

func fixtures(t testing.TB) []fixture {
	t.Helper()
	f, err := os.Open("testdata/manifest.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []fixture
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var x fixture
		if err := json.Unmarshal(sc.Bytes(), &x); err != nil {
			t.Fatal(err)
		}
		out = append(out, x)
	}
	return out
}

// sameNumber compares oficio numbers the way the extractor normalizes them (ESE0 = ESEO).
func sameNumber(got, want string) bool {
	return got == cleanNumber(want)
}

// sameText compares subjects ignoring case, accents and spacing, which OCR may lose.
func sameText(a, b string) bool {
	n := func(s string) string {
		return strings.Join(strings.Fields(fold.Loose(s)), " ")
	}
	return n(a) == n(b)
}
