package config

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func embeddedUnits(t testing.TB) *Units {
	t.Helper()
	u, err := LoadUnits("")
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func ids(us []Unit) []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = u.ID
	}
	return out
}

func TestEmbeddedUnits(t *testing.T) {
	u := embeddedUnits(t)
	all := u.All()
	if len(all) < 100 {
		t.Fatalf("only %d units", len(all))
	}
	kinds := map[string]int{}
	for _, x := range all {
		kinds[x.Kind]++
		if m, ok := u.Match(x.ID); !ok || m.ID != x.ID {
			t.Errorf("Match(%q) = %q, %v", x.ID, m.ID, ok)
		}
		if m, ok := u.Match(x.Name); !ok || m.ID != x.ID {
			t.Errorf("Match(name %q) = %q, %v", x.Name, m.ID, ok)
		}
		for _, a := range x.Aliases {
			if m, ok := u.Match(a); !ok || m.ID != x.ID {
				t.Errorf("Match(alias %q) = %q, %v", a, m.ID, ok)
			}
		}
	}
	for _, k := range []string{KindEscuela, KindCECyT, KindCentroInvestigacion, KindEducacionContinua, KindUnidadAdministrativa, KindCultural} {
		if kinds[k] == 0 {
			t.Errorf("no unit of kind %s", k)
		}
	}
	for n := 1; n <= 19; n++ {
		if m, ok := u.Match(fmt.Sprintf("CECyT %02d", n)); !ok || m.Kind != KindCECyT {
			t.Errorf("CECyT %d missing", n)
		}
	}
	all[0].Aliases = append(all[0].Aliases, "mutated")
	all[0].ID = "mutated"
	if u.All()[0].ID == "mutated" {
		t.Error("All returns the internal slice")
	}
}

// TestFixtureUnits: every unit of the shared fixtures (and the forms their signatures and memo
// headers use) must match exactly; the list is a copy in testdata/unit_forms.tsv.
func TestFixtureUnits(t *testing.T) {
	u := embeddedUnits(t)
	f, err := os.Open(filepath.Join("testdata", "unit_forms.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		written, want, ok := strings.Cut(line, "\t")
		if !ok {
			t.Fatalf("bad line %q", line)
		}
		n++
		if m, ok := u.Match(written); !ok || m.ID != want {
			t.Errorf("Match(%q) = %q, %v; want %q", written, m.ID, ok, want)
		}
		if s := u.Suggest(written, 3); len(s) == 0 || s[0].ID != want {
			t.Errorf("Suggest(%q) = %q; want %q first", written, ids(s), want)
		}
	}
	if n < 80 {
		t.Errorf("only %d forms", n)
	}
}

func TestMatch(t *testing.T) {
	u := embeddedUnits(t)
	cases := map[string]string{
		"cecyt9":                          "CECyT 9",
		"CECYT 9":                         "CECyT 9",
		"Cecyt No. 9":                     "CECyT 9",
		"CECyT Núm. 09":                   "CECyT 9",
		"CECyT Nº 9":                      "CECyT 9",
		"CECyT N° 9":                      "CECyT 9",
		"Voca 9":                          "CECyT 9",
		"vocacional 7":                    "CECyT 7",
		"  Escom.  ":                      "ESCOM",
		"Escuela Superior de Computo":     "ESCOM",
		"ESIME Zac":                       "ESIME Zacatenco",
		"esime-ticoman":                   "ESIME Ticomán",
		"ENMyH":                           "ENMyH",
		"Canal 11":                        "Canal Once",
		"CIEMAD":                          "CIIEMAD",
		"Presidente del Decanato":         "Decanato",
		"dirección de educación superior": "Dirección de Educación Superior",
		"DES":                             "Dirección de Educación Superior",
		"cgsi":                            "CGSI",
	}
	for s, want := range cases {
		if m, ok := u.Match(s); !ok || m.ID != want {
			t.Errorf("Match(%q) = %q, %v; want %q", s, m.ID, ok, want)
		}
	}
	for _, s := range []string{"", "  ", "ESIME", "ESCA", "ESIA", "zacatenco", "CECyT 20", "de la", "No.", "ESCON", "IPN"} {
		if m, ok := u.Match(s); ok {
			t.Errorf("Match(%q) = %q, want no match", s, m.ID)
		}
	}
}

func TestSuggest(t *testing.T) {
	u := embeddedUnits(t)
	first := map[string]string{
		"ESCON":                       "ESCOM",
		"esime zacatenko":             "ESIME Zacatenco",
		"esime azcapozalco":           "ESIME Azcapotzalco",
		"cecyt 9":                     "CECyT 9",
		"esiqe":                       "ESIQIE",
		"upicsa":                      "UPIICSA",
		"upiita":                      "UPIITA",
		"ENCB Unidad Santo Tomas":     "ENCB",
		"escuela superior de computo": "ESCOM",
		"Escuela Nacional de Medicina y Homeopatía (ENMyH)": "ENMyH",
		"Centro Cultural Jaime Torres":                      "Centro Cultural Jaime Torres Bodet",
		"cicata altamria":                                   "CICATA Altamira",
		"juan de dios batis":                                "CECyT 9",
	}
	for s, want := range first {
		got := u.Suggest(s, 5)
		if len(got) == 0 || got[0].ID != want {
			t.Errorf("Suggest(%q) = %q, want %q first", s, ids(got), want)
		}
	}
	contains := map[string][]string{
		"ESIME":     {"ESIME Zacatenco", "ESIME Culhuacan", "ESIME Azcapotzalco", "ESIME Ticomán"},
		"zacatenco": {"ESIME Zacatenco", "ESIA Zacatenco"},
		"ticoman":   {"ESIME Ticomán", "ESIA Ticomán"},
		"esca":      {"ESCA Santo Tomás", "ESCA Tepepan"},
	}
	for s, want := range contains {
		got := strings.Join(ids(u.Suggest(s, 6)), "|")
		for _, w := range want {
			if !strings.Contains(got, w) {
				t.Errorf("Suggest(%q) = %s, lacks %s", s, got, w)
			}
		}
	}
	if got := u.Suggest("qwxzv", 5); len(got) != 0 {
		t.Errorf("Suggest(nonsense) = %q", ids(got))
	}
	if got := u.Suggest("ESCOM", 0); got != nil {
		t.Errorf("n=0: %q", ids(got))
	}
	if got := u.Suggest("CECyT", 3); len(got) != 3 {
		t.Errorf("n=3: %q", ids(got))
	}
	if got := u.Suggest("ESCOM", 3); len(got) == 0 || got[0].ID != "ESCOM" {
		t.Errorf("exact first: %q", ids(got))
	}
}

func TestLoadUnitsFile(t *testing.T) {
	dir := t.TempDir()
	write := func(content string) string {
		p := filepath.Join(dir, "units.yaml")
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	u, err := LoadUnits(write("units:\n  - {id: ABC, name: Unidad de Prueba, kind: escuela, aliases: [Prueba]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := u.Match("prueba"); !ok || m.ID != "ABC" || len(u.All()) != 1 {
		t.Errorf("custom file: %v %v", m, ok)
	}
	bad := map[string]string{
		"units: [\n":     "line",
		"units: []\n":    "no units",
		"unidades: []\n": `line 1: unknown key "unidades"`,
		"units:\n  - {id: A, name: B, kind: x}\n":                                                `line 2: A: unknown kind "x"`,
		"units:\n  - {name: B, kind: escuela}\n":                                                 "line 2: id is required",
		"units:\n  - {id: A, kind: escuela}\n":                                                   "line 2: A: name is required",
		"units:\n  - {id: A, name: B, kind: escuela, color: red}\n":                              `line 2: unknown field "color"`,
		"units:\n  - {id: A, name: B, kind: escuela}\n  - {id: A, name: C, kind: escuela}\n":     `line 3: id "A" already used at line 2`,
		"units:\n  - {id: A-1, name: B, kind: escuela}\n  - {id: a 1, name: C, kind: escuela}\n": `line 3: a 1: "a 1" also matches A-1`,
		"units:\n  - {id: A, name: B, kind: escuela, aliases: [\"No. de la\"]}\n":                `"No. de la" has nothing to match`,
	}
	for content, want := range bad {
		_, err := LoadUnits(write(content))
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", content, err, want)
		}
	}
	if _, err := LoadUnits(filepath.Join(dir, "missing.yaml")); err == nil || errors.Is(err, ErrInvalid) {
		t.Errorf("missing: %v", err)
	}
}

func TestFold(t *testing.T) {
	cases := map[string]string{
		"CECyT No. 9":                 "cecyt9",
		"Cecyt Núm. 009":              "cecyt9",
		"cecyt9":                      "cecyt9",
		"ESIME Unidad Zacatenco":      "esimezacatenco",
		"Escuela Superior de Cómputo": "escuelasuperiorcomputo",
		"ÑANDÚ":                       "nandu",
		"":                            "",
		"#$%":                         "",
		"CECyT 0":                     "cecyt0",
	}
	for in, want := range cases {
		if got := foldUnit(in).key; got != want {
			t.Errorf("foldUnit(%q) = %q, want %q", in, got, want)
		}
	}
}
