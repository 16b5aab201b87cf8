package config

import (
	_ "embed"
	"errors"
	"fmt"
	"sort"
	"strings"
	"unicode"

	"gopkg.in/yaml.v3"

	"github.com/ipn-cgsi/caud/config/fold"
)

//go:embed units.yaml
var unitsYAML []byte

// Unit kinds accepted in a units file.
const (
	KindEscuela              = "escuela"               // nivel superior: schools and UPIIs
	KindCECyT                = "cecyt"                 // nivel medio superior: CECyT and CET
	KindCentroInvestigacion  = "centro_investigacion"  // research centres
	KindEducacionContinua    = "educacion_continua"    // Centros de Educación Continua and UPEV
	KindUnidadAdministrativa = "unidad_administrativa" // central administration
	KindCultural             = "cultural"              // broadcasting, culture, library, planetarium
)

// Unit is one IPN school, centre or administrative unit.
type Unit struct {
	ID      string   `yaml:"id"`      // short name as people write it: "ESCOM", "CECyT 9"
	Name    string   `yaml:"name"`    // full official name
	Kind    string   `yaml:"kind"`    // one of the Kind* constants
	Aliases []string `yaml:"aliases"` // other ways people write it
}

// Units is a list of IPN units that can be searched by the ways people write their names. It is
// read-only after LoadUnits and safe for concurrent use.
type Units struct {
	units []Unit
	index map[string]int // folded form of every id, name and alias -> unit
	forms []unitForms    // per unit, the folded forms, for Suggest
}

type unitForms []folded

type folded struct {
	key    string   // tokens joined without separators
	tokens []string // folded tokens
}

// maxSuggestRunes is how much of its argument Suggest compares, so that its cost stays bounded.
const maxSuggestRunes = 120

// maxUnitsFileBytes bounds a units file.
const maxUnitsFileBytes = 16 << 20

// LoadUnits reads a units file (YAML: a top-level "units" list of id, name, kind, aliases); path ""
// reads the list embedded in caud (config/units.yaml). Errors wrap ErrInvalid for content problems
// (with the line: unknown field, missing id or name, unknown kind, a form that folds to the same
// text as another unit's) and are plain for a file that cannot be read.
func LoadUnits(path string) (*Units, error) {
	b, name := unitsYAML, "units.yaml (embedded)"
	if path != "" {
		var err error
		if b, err = readSmallFile(path, maxUnitsFileBytes); err != nil {
			return nil, fmt.Errorf("load units: %w", err)
		}
		name = path
	}
	u, err := parseUnits(b)
	if err != nil {
		return nil, fmt.Errorf("units: %s: %w", name, err)
	}
	return u, nil
}

func parseUnits(b []byte) (*Units, error) {
	var doc struct {
		Units []yaml.Node `yaml:"units"`
	}
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return nil, invalid(err)
	}
	if err := root.Decode(&doc); err != nil {
		return nil, invalid(err)
	}
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 && root.Content[0].Kind == yaml.MappingNode {
		m := root.Content[0]
		for i := 0; i+1 < len(m.Content); i += 2 {
			if k := m.Content[i]; k.Value != "units" {
				return nil, invalid(fmt.Errorf("line %d: unknown key %q", k.Line, k.Value))
			}
		}
	}
	if len(doc.Units) == 0 {
		return nil, invalid(errors.New("no units"))
	}
	u := &Units{index: map[string]int{}}
	ids := map[string]int{}
	for _, n := range doc.Units {
		var x Unit
		if n.Kind == yaml.MappingNode { // yaml.Node.Decode has no KnownFields: check by hand
			for i := 0; i+1 < len(n.Content); i += 2 {
				switch k := n.Content[i]; k.Value {
				case "id", "name", "kind", "aliases":
				default:
					return nil, invalid(fmt.Errorf("line %d: unknown field %q", k.Line, k.Value))
				}
			}
		}
		if err := n.Decode(&x); err != nil {
			return nil, invalid(err)
		}
		x.ID, x.Name = strings.TrimSpace(x.ID), strings.TrimSpace(x.Name)
		switch {
		case x.ID == "":
			return nil, invalid(fmt.Errorf("line %d: id is required", n.Line))
		case x.Name == "":
			return nil, invalid(fmt.Errorf("line %d: %s: name is required", n.Line, x.ID))
		}
		switch x.Kind {
		case KindEscuela, KindCECyT, KindCentroInvestigacion, KindEducacionContinua, KindUnidadAdministrativa, KindCultural:
		default:
			return nil, invalid(fmt.Errorf("line %d: %s: unknown kind %q", n.Line, x.ID, x.Kind))
		}
		if j, dup := ids[x.ID]; dup {
			return nil, invalid(fmt.Errorf("line %d: id %q already used at line %d", n.Line, x.ID, j))
		}
		ids[x.ID] = n.Line
		idx := len(u.units)
		var forms unitForms
		for _, s := range append([]string{x.ID, x.Name}, x.Aliases...) {
			f := foldUnit(s)
			if f.key == "" {
				return nil, invalid(fmt.Errorf("line %d: %s: %q has nothing to match", n.Line, x.ID, s))
			}
			if j, ok := u.index[f.key]; ok && j != idx {
				return nil, invalid(fmt.Errorf("line %d: %s: %q also matches %s", n.Line, x.ID, s, u.units[j].ID))
			}
			u.index[f.key] = idx
			forms = append(forms, f)
		}
		u.units = append(u.units, x)
		u.forms = append(u.forms, forms)
	}
	return u, nil
}

func invalid(err error) error { return fmt.Errorf("%w: %w", ErrInvalid, err) }

// All returns every unit in file order. The slice is a copy.
func (u *Units) All() []Unit {
	out := make([]Unit, len(u.units))
	for i, x := range u.units {
		x.Aliases = append([]string(nil), x.Aliases...)
		out[i] = x
	}
	return out
}

// Match returns the unit whose id, name or alias equals s once both are folded: case, accents,
// spaces and punctuation are ignored, as are the filler words "No.", "Núm.", "Unidad", "de", "y"...
// and leading zeros, so "cecyt9", "CECYT 9" and "Cecyt No. 9" all match CECyT 9.
func (u *Units) Match(s string) (Unit, bool) {
	f := foldUnit(s)
	if f.key == "" {
		return Unit{}, false
	}
	i, ok := u.index[f.key]
	if !ok {
		return Unit{}, false
	}
	return u.units[i], true
}

// Found is a unit named somewhere in a text: Key is the folded form of the words that name it (its
// length tells a long, specific name from a short one).
type Found struct {
	Unit Unit
	Key  string
}

// Find returns the units named in s: every run of up to maxTokens consecutive words that Match
// would accept on its own. s is folded once, so Find is cheap on long texts (a signature, a memo)
// where calling Match on every run of words would fold each run again.
func (u *Units) Find(s string, maxTokens int) []Found {
	f := foldUnit(s)
	var out []Found
	var b strings.Builder
	for i := range f.tokens {
		b.Reset()
		for j := i; j < len(f.tokens) && j < i+maxTokens; j++ {
			b.WriteString(f.tokens[j])
			if k, ok := u.index[b.String()]; ok {
				out = append(out, Found{Unit: u.units[k], Key: b.String()})
			}
		}
	}
	return out
}

// Suggest returns up to n units close to s, best first: an exact Match comes first, then units by a
// score mixing the edit distance between folded forms, shared and prefix tokens, and a prefix of the
// whole form. Units scoring below a threshold are left out, so the result may be empty. n <= 0 gives
// nil. Only the first 120 characters of s are compared.
func (u *Units) Suggest(s string, n int) []Unit {
	if n <= 0 {
		return nil
	}
	if r := []rune(s); len(r) > maxSuggestRunes {
		s = string(r[:maxSuggestRunes]) // bounds the cost of the edit distances below
	}
	q := foldUnit(s)
	if q.key == "" {
		return nil
	}
	type scored struct {
		i     int
		score float64
	}
	var res []scored
	qr := []rune(q.key)
	for i, forms := range u.forms {
		best := 0.0
		for _, f := range forms {
			if sc := similarity(q, qr, f); sc > best {
				best = sc
			}
		}
		if best >= 0.6 {
			res = append(res, scored{i, best})
		}
	}
	sort.SliceStable(res, func(a, b int) bool { return res[a].score > res[b].score })
	if len(res) > n {
		res = res[:n]
	}
	out := make([]Unit, len(res))
	for k, r := range res {
		out[k] = u.units[r.i]
	}
	return out
}

// similarity scores how close query q is to form f, from 0 to 1 (1 only when the folded forms are
// equal).
func similarity(q folded, qr []rune, f folded) float64 {
	if q.key == f.key {
		return 1
	}
	fr := []rune(f.key)
	longest := max(len(qr), len(fr))
	best := 1 - float64(levenshtein(qr, fr))/float64(longest)

	// Whole-form prefix: "upiic" for "upiicsa", "escuelasuperiorcom" for the name of ESCOM.
	if len(qr) >= 3 && strings.HasPrefix(f.key, q.key) {
		if sc := 0.6 + 0.35*float64(len(qr))/float64(len(fr)); sc > best {
			best = sc
		}
	}

	// Tokens: each query token credited by its best candidate token (equal, prefix, or a small typo);
	// Dice-like so that extra tokens on either side lower the score.
	if len(q.tokens) > 0 && len(f.tokens) > 0 {
		sum := 0.0
		for _, qt := range q.tokens {
			tb := 0.0
			qtr := []rune(qt)
			for _, ft := range f.tokens {
				var sc float64
				switch {
				case qt == ft:
					sc = 1
				case len(qtr) >= 3 && strings.HasPrefix(ft, qt):
					sc = 0.85
				case len(qtr) >= 4:
					ftr := []rune(ft)
					d := levenshtein(qtr, ftr)
					if d <= max(len(qtr), len(ftr))/4 {
						sc = 0.9 - 0.1*float64(d)
					}
				}
				tb = max(tb, sc)
			}
			sum += tb
		}
		sc := 2 * sum / float64(len(q.tokens)+len(f.tokens))
		sc = min(sc, 0.97) // never ties with an exact match
		if sc > best {
			best = sc
		}
	}
	return best
}

// isStop reports whether folding drops token t: filler words and the "No." in "CECyT No. 9".
func isStop(t string) bool {
	switch t {
	case "no", "n", "num", "nro", "numero", "unidad", "u", "de", "del", "la", "las", "el", "los",
		"y", "e", "en", "ipn", "campus", "plantel":
		return true
	}
	return false
}

// foldUnit folds s loosely (fold.Loose: unit names are matched exactly and are often typed without
// ñ), splits it into tokens of letters or digits (a change between letters
// and digits also splits: "cecyt9"), drops filler words and leading zeros.
func foldUnit(s string) folded {
	var tokens []string
	var cur strings.Builder
	kind := 0 // 0 none, 1 letter, 2 digit
	flush := func() {
		if cur.Len() == 0 {
			return
		}
		t := cur.String()
		cur.Reset()
		if kind == 2 {
			t = strings.TrimLeft(t, "0")
			if t == "" {
				t = "0"
			}
		}
		if !isStop(t) {
			tokens = append(tokens, t)
		}
	}
	for _, c := range fold.Loose(s) {
		k := 0
		switch {
		case unicode.IsDigit(c):
			k = 2
		case unicode.IsLetter(c):
			k = 1
		}
		if k != kind || k == 0 {
			flush()
		}
		kind = k
		if k != 0 {
			cur.WriteRune(c)
		}
	}
	flush()
	return folded{key: strings.Join(tokens, ""), tokens: tokens}
}

// levenshtein is the edit distance between a and b.
func levenshtein(a, b []rune) int {
	if len(a) < len(b) {
		a, b = b, a
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
