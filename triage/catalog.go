package triage

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode"

	"gopkg.in/yaml.v3"
)

// ErrInvalidCatalog is wrapped by every error of ParseCatalog and LoadCatalogFile about the
// content of a catalog (syntax, unknown keys, failed validation).
var ErrInvalidCatalog = errors.New("invalid catalog")

// Default thresholds, used for keys the catalog leaves out.
const (
	defaultMinScore           = 1.5
	defaultMinMargin          = 0.1
	defaultNoCompetenteScore  = 2.5
	defaultNoCompetenteRatio  = 1.6
	defaultMinWords           = 3
	defaultSubjectWeight      = 2.0
	defaultPhraseBonus        = 1.5
	defaultNegativeWeight     = 2.0
	defaultPhraseTokenWeight  = 0.3
	maxTermWeight             = 10.0
	maxThresholdScore         = 100.0
	defaultCatalogDisplayName = "default_catalog.yaml"
	// referenceTermWeight is the mean keyword weight the score defaults above are set for (the
	// default catalog's, about 2.3). A catalog written with other weights, or none (all 1), gets
	// its score defaults scaled by its own mean weight, so that a terse catalog is not left
	// undecided for want of evidence.
	referenceTermWeight = 2.33
)

//go:embed default_catalog.yaml
var defaultCatalogYAML []byte

// Term is a weighted keyword: one word or several ("correo institucional"), matched on stems.
// In YAML it is either a plain string (weight 1) or a one-entry mapping `term: weight`. A quoted
// string written the same way ("impresora: 4", as operators write it inside a flow list) is the
// mapping too: no keyword ends in a colon and a number.
type Term struct {
	Text   string
	Weight float64
	line   int
}

// quotedWeight is `term: weight` written as one string.
var quotedWeight = regexp.MustCompile(`^\s*(\S.*?)\s*:\s*([0-9]+(?:[.,][0-9]+)?)\s*$`)

// UnmarshalYAML implements yaml.Unmarshaler for the two spellings of a Term.
func (t *Term) UnmarshalYAML(n *yaml.Node) error {
	t.line = n.Line
	switch n.Kind {
	case yaml.ScalarNode:
		t.Text, t.Weight = n.Value, 1
		if m := quotedWeight.FindStringSubmatch(n.Value); m != nil {
			w, err := strconv.ParseFloat(strings.Replace(m[2], ",", ".", 1), 64)
			if err != nil {
				return fmt.Errorf("line %d: weight of %q is not a number", n.Line, m[1])
			}
			t.Text, t.Weight = m[1], w
		}
		return nil
	case yaml.MappingNode:
		if len(n.Content) != 2 || n.Content[0].Kind != yaml.ScalarNode || n.Content[1].Kind != yaml.ScalarNode {
			return fmt.Errorf("line %d: a keyword is a string or a single `term: weight` entry", n.Line)
		}
		w, err := strconv.ParseFloat(n.Content[1].Value, 64)
		if err != nil {
			return fmt.Errorf("line %d: weight of %q is not a number", n.Content[1].Line, n.Content[0].Value)
		}
		t.Text, t.Weight = n.Content[0].Value, w
		return nil
	}
	return fmt.Errorf("line %d: a keyword is a string or a single `term: weight` entry", n.Line)
}

// Thresholds tune when the engine decides and when it asks (aclaracion). Zero values take defaults.
type Thresholds struct {
	// MinScore is the score the best CGSI candidate needs to be decided (default 1.5); below it the
	// request goes to aclaracion.
	MinScore float64 `yaml:"min_score"`
	// MinMargin is the relative margin (0–1) the best candidate needs over the runner-up of another
	// outcome when its score is below twice MinScore (default 0.1).
	MinMargin float64 `yaml:"min_margin"`
	// NoCompetenteScore is the score an orientation target needs (default 2.5).
	NoCompetenteScore float64 `yaml:"no_competente_score"`
	// NoCompetenteRatio is how many times the target must outscore the best CGSI candidate (default 1.6).
	NoCompetenteRatio float64 `yaml:"no_competente_ratio"`
	// MinWords is the number of content words below which the text says too little (default 3).
	MinWords int `yaml:"min_words"`
	// SubjectWeight multiplies matches in the subject (default 2).
	SubjectWeight float64 `yaml:"subject_weight"`
	// PhraseBonus is added for each example phrase found in the text (default 1.5).
	PhraseBonus float64 `yaml:"phrase_bonus"`
	// NegativeWeight is subtracted for each negative term found, when the term has no weight (default 2).
	NegativeWeight float64 `yaml:"negative_weight"`
}

// KindCues are the words that tell a falla from a servicio.
type KindCues struct {
	// Default is the kind when no cue is found: falla or servicio (default servicio).
	Default  string `yaml:"default"`
	Falla    []Term `yaml:"falla"`
	Servicio []Term `yaml:"servicio"`
}

// Questions are asked to the requester when the outcome is aclaracion.
type Questions struct {
	Generic []string            `yaml:"generic"`
	Areas   map[string][]string `yaml:"areas"`
}

// ServiceDef is one SAI service of the catalog.
type ServiceDef struct {
	ID    string `yaml:"id"`
	Name  string `yaml:"name"`
	Area  string `yaml:"area"`
	Group string `yaml:"group"`
	// Kind, when set, fixes falla or servicio for this service regardless of cues.
	Kind     string   `yaml:"kind"`
	Keywords []Term   `yaml:"keywords"`
	Phrases  []string `yaml:"phrases"`
	Negative []Term   `yaml:"negative"`
	Tests    []string `yaml:"tests"`
	// Examples are requests as people write them for this service; they train the learned model
	// and are never matched literally.
	Examples []string `yaml:"examples"`
}

// ScopeDef describes the informativo scope: CGSI matters with no SAI service.
type ScopeDef struct {
	Name string `yaml:"name"`
	// Concept is the concept under which such matters are registered (default CAU_INFORMATIVO_04A).
	Concept  string   `yaml:"concept"`
	Kind     string   `yaml:"kind"`
	Keywords []Term   `yaml:"keywords"`
	Phrases  []string `yaml:"phrases"`
	Negative []Term   `yaml:"negative"`
	Examples []string `yaml:"examples"`
}

// TargetDef is an orientation target for matters that are not CGSI's.
type TargetDef struct {
	Target   string   `yaml:"target"`
	Office   string   `yaml:"office"`
	Message  string   `yaml:"message"`
	Keywords []Term   `yaml:"keywords"`
	Phrases  []string `yaml:"phrases"`
	Negative []Term   `yaml:"negative"`
	Examples []string `yaml:"examples"`
}

// catalogFile is the YAML document.
type catalogFile struct {
	Version string `yaml:"version"`
	// Areas, when given, lists the service areas the catalog's services may use (a typo in a
	// service's area is then an error); when omitted the areas are those the services name.
	Areas       []string     `yaml:"areas"`
	Thresholds  Thresholds   `yaml:"thresholds"`
	Stopwords   []string     `yaml:"stopwords"`
	Kind        KindCues     `yaml:"kind"`
	Questions   Questions    `yaml:"questions"`
	Services    []ServiceDef `yaml:"services"`
	Informativo ScopeDef     `yaml:"informativo"`
	OutOfScope  []TargetDef  `yaml:"out_of_scope"`
}

// Catalog is a parsed, validated service catalog. It is immutable and safe for concurrent use.
type Catalog struct {
	f       catalogFile
	name    string
	version string
	byID    map[string]int
	targets map[string]int
	areas   []string // declared, or in order of first use by a service
}

// ParseCatalog parses and validates a catalog. name is the file name used in error messages
// ("catalog.yaml:42: services[3].group: is empty"). Unknown keys are rejected. All problems are
// reported in one error that wraps ErrInvalidCatalog.
func ParseCatalog(data []byte, name string) (*Catalog, error) {
	if name == "" {
		name = "catalog"
	}
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrInvalidCatalog, yamlErr(name, err))
	}
	if len(root.Content) == 0 || root.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%w: %s:%d: the catalog must be a mapping", ErrInvalidCatalog, name, max(root.Line, 1))
	}
	doc := root.Content[0]
	v := &validator{name: name, root: doc}
	v.checkKeys(doc, reflect.TypeOf(catalogFile{}), "")
	if len(v.errs) > 0 {
		return nil, v.err()
	}
	var f catalogFile
	if err := doc.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrInvalidCatalog, yamlErr(name, err))
	}
	v.validate(&f)
	if len(v.errs) > 0 {
		return nil, v.err()
	}
	applyDefaults(&f)
	sum := sha256.Sum256(data)
	c := &Catalog{f: f, name: name, byID: map[string]int{}, targets: map[string]int{}}
	c.version = f.Version + "+" + hex.EncodeToString(sum[:4])
	for i, s := range f.Services {
		c.byID[s.ID] = i
	}
	for i, t := range f.OutOfScope {
		c.targets[t.Target] = i
	}
	c.areas = slices.Clone(f.Areas)
	if len(c.areas) == 0 {
		for _, s := range f.Services {
			if !slices.Contains(c.areas, s.Area) {
				c.areas = append(c.areas, s.Area)
			}
		}
	}
	return c, nil
}

// yamlErr rewrites a yaml.v3 error ("yaml: line 3: ...") as "name:3: ...".
func yamlErr(name string, err error) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	msg = strings.TrimPrefix(msg, "unmarshal errors:\n")
	var out []string
	for _, l := range strings.Split(msg, "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		if rest, ok := strings.CutPrefix(l, "line "); ok {
			if n, tail, ok := strings.Cut(rest, ": "); ok {
				out = append(out, fmt.Sprintf("%s:%s: %s", name, n, tail))
				continue
			}
		}
		out = append(out, name+": "+l)
	}
	return strings.Join(out, "\n")
}

// LoadCatalogFile reads and parses a catalog file; errors name the file's base name and line.
func LoadCatalogFile(path string) (*Catalog, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read catalog: %w", err)
	}
	return ParseCatalog(data, filepath.Base(path))
}

// defaultCatalog is parsed once; the embedded bytes never change.
var defaultCatalog = sync.OnceValue(func() *Catalog {
	c, err := ParseCatalog(defaultCatalogYAML, defaultCatalogDisplayName)
	if err != nil {
		panic("triage: embedded default catalog is invalid: " + err.Error())
	}
	return c
})

// DefaultCatalog returns the catalog embedded in the binary (triage/default_catalog.yaml). It is
// parsed once and shared; it panics only if the embedded file is broken, which the tests rule out.
func DefaultCatalog() *Catalog { return defaultCatalog() }

// DefaultCatalogYAML returns a copy of the embedded default catalog, as a starting point for operators.
func DefaultCatalogYAML() []byte { return bytes.Clone(defaultCatalogYAML) }

// Version is the catalog's version field plus the first 8 hex digits of the SHA-256 of its bytes,
// e.g. "2026.11-1+3fa2c1d9", so two edits with the same version field are still told apart.
func (c *Catalog) Version() string { return c.version }

// Name is the file name the catalog was parsed under.
func (c *Catalog) Name() string { return c.name }

// Areas returns the service areas of the catalog: those declared under `areas`, else those its
// services use, in order of first use. Metrics, notices and the console take their labels from here.
func (c *Catalog) Areas() []string { return slices.Clone(c.areas) }

// Targets returns the orientation targets (out_of_scope[].target) in catalog order.
func (c *Catalog) Targets() []string {
	out := make([]string, len(c.f.OutOfScope))
	for i, t := range c.f.OutOfScope {
		out[i] = t.Target
	}
	return out
}

// Concept is the concept under which CGSI matters outside the catalog are registered
// (informativo.concept; ConceptInformativo by default).
func (c *Catalog) Concept() string { return c.f.Informativo.Concept }

// Services returns the SAI services in catalog order.
func (c *Catalog) Services() []Service {
	out := make([]Service, len(c.f.Services))
	for i, s := range c.f.Services {
		out[i] = Service{ID: s.ID, Name: s.Name, Group: s.Group, Area: s.Area}
	}
	return out
}

// Service returns the SAI service with the given id.
func (c *Catalog) Service(id string) (Service, bool) {
	i, ok := c.byID[id]
	if !ok {
		return Service{}, false
	}
	s := c.f.Services[i]
	return Service{ID: s.ID, Name: s.Name, Group: s.Group, Area: s.Area}, true
}

// Orientation returns the office and message for an orientation target (BECAS, ESCOLAR, ...).
func (c *Catalog) Orientation(target string) (Orientation, bool) {
	i, ok := c.targets[target]
	if !ok {
		return Orientation{}, false
	}
	t := c.f.OutOfScope[i]
	return Orientation{Target: t.Target, Office: t.Office, Message: t.Message}, true
}

// Orientations returns the orientation targets for matters that are not CGSI's, in catalog order.
func (c *Catalog) Orientations() []Orientation {
	out := make([]Orientation, len(c.f.OutOfScope))
	for i, t := range c.f.OutOfScope {
		out[i] = Orientation{Target: t.Target, Office: t.Office, Message: t.Message}
	}
	return out
}

// Tests returns the diagnostic tests of a service for a falla (nil for an unknown id).
func (c *Catalog) Tests(serviceID string) []string {
	i, ok := c.byID[serviceID]
	if !ok {
		return nil
	}
	return slices.Clone(c.f.Services[i].Tests)
}

// Questions returns the clarification questions: the generic ones, then those of area if any.
func (c *Catalog) Questions(area string) []string {
	out := slices.Clone(c.f.Questions.Generic)
	return append(out, c.f.Questions.Areas[area]...)
}

// areaQuestions returns the questions of one area, or the generic ones when it has none.
func (c *Catalog) areaQuestions(area string) []string {
	if qs := c.f.Questions.Areas[area]; len(qs) > 0 {
		return slices.Clone(qs)
	}
	return slices.Clone(c.f.Questions.Generic)
}

// Thresholds returns the effective thresholds (defaults applied).
func (c *Catalog) Thresholds() Thresholds { return c.f.Thresholds }

// meanTermWeight is the mean weight of the catalog's positive keywords; referenceTermWeight when it
// has none.
func meanTermWeight(f *catalogFile) float64 {
	var sum float64
	n := 0
	add := func(ts []Term) {
		for _, t := range ts {
			if t.Weight > 0 {
				sum += t.Weight
				n++
			}
		}
	}
	for _, s := range f.Services {
		add(s.Keywords)
	}
	add(f.Informativo.Keywords)
	for _, o := range f.OutOfScope {
		add(o.Keywords)
	}
	if n == 0 {
		return referenceTermWeight
	}
	return sum / float64(n)
}

func applyDefaults(f *catalogFile) {
	t := &f.Thresholds
	setF := func(p *float64, d float64) {
		if *p == 0 {
			*p = d
		}
	}
	scale := min(4, max(0.25, meanTermWeight(f)/referenceTermWeight))
	setF(&t.MinScore, defaultMinScore*scale)
	setF(&t.MinMargin, defaultMinMargin)
	setF(&t.NoCompetenteScore, defaultNoCompetenteScore*scale)
	setF(&t.NoCompetenteRatio, defaultNoCompetenteRatio)
	setF(&t.SubjectWeight, defaultSubjectWeight)
	setF(&t.PhraseBonus, defaultPhraseBonus*scale)
	setF(&t.NegativeWeight, defaultNegativeWeight)
	if t.MinWords == 0 {
		t.MinWords = defaultMinWords
	}
	if f.Kind.Default == "" {
		f.Kind.Default = KindServicio
	}
	if f.Informativo.Name == "" {
		f.Informativo.Name = "Asunto informativo de la CGSI"
	}
	if f.Informativo.Concept == "" {
		f.Informativo.Concept = ConceptInformativo
	}
}

// validator collects problems with their line numbers.
type validator struct {
	name string
	root *yaml.Node
	errs []error
}

func (v *validator) err() error {
	return fmt.Errorf("%w: %w", ErrInvalidCatalog, errors.Join(v.errs...))
}

func (v *validator) addf(line int, path, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if path != "" {
		msg = path + ": " + msg
	}
	v.errs = append(v.errs, fmt.Errorf("%s:%d: %s", v.name, line, msg))
}

var termType = reflect.TypeOf(Term{})

// checkKeys rejects mapping keys that the schema does not know, and wrong node kinds.
func (v *validator) checkKeys(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	switch {
	case t == termType:
		return // Term validates itself
	case t.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
				return
			}
			v.addf(n.Line, path, "must be a mapping")
			return
		}
		fields := map[string]reflect.StructField{}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if tag != "" && tag != "-" {
				fields[tag] = f
			}
		}
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			f, ok := fields[k.Value]
			p := joinPath(path, k.Value)
			if !ok {
				v.addf(k.Line, p, "unknown key")
				continue
			}
			if seen[k.Value] {
				v.addf(k.Line, p, "duplicate key")
			}
			seen[k.Value] = true
			v.checkKeys(val, f.Type, p)
		}
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
				return
			}
			v.addf(n.Line, path, "must be a list")
			return
		}
		for i, c := range n.Content {
			v.checkKeys(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	case t.Kind() == reflect.Map:
		if n.Kind != yaml.MappingNode {
			if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
				return
			}
			v.addf(n.Line, path, "must be a mapping")
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			v.checkKeys(n.Content[i+1], t.Elem(), joinPath(path, n.Content[i].Value))
		}
	default:
		if n.Kind != yaml.ScalarNode {
			v.addf(n.Line, path, "must be a single value")
		}
	}
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// line returns the line of the node at path (keys and indexes), or of the deepest existing ancestor.
func (v *validator) line(path ...any) int {
	n := v.root
	for _, p := range path {
		var next *yaml.Node
		switch p := p.(type) {
		case string:
			if n.Kind == yaml.MappingNode {
				for i := 0; i+1 < len(n.Content); i += 2 {
					if n.Content[i].Value == p {
						next = n.Content[i+1]
						if next.Kind == yaml.ScalarNode && next.Tag == "!!null" {
							next = n.Content[i] // point at the key of an empty value
						}
						break
					}
				}
			}
		case int:
			if n.Kind == yaml.SequenceNode && p < len(n.Content) {
				next = n.Content[p]
			}
		}
		if next == nil {
			break
		}
		n = next
	}
	return n.Line
}

func (v *validator) validate(f *catalogFile) {
	if strings.TrimSpace(f.Version) == "" {
		v.addf(v.line("version"), "version", "is empty")
	}
	v.thresholds(&f.Thresholds)
	if k := f.Kind.Default; k != "" && k != KindFalla && k != KindServicio {
		v.addf(v.line("kind", "default"), "kind.default", "must be falla or servicio, not %q", k)
	}
	v.terms(f.Kind.Falla, "kind.falla", "kind", "falla")
	v.terms(f.Kind.Servicio, "kind.servicio", "kind", "servicio")
	if len(f.Kind.Falla) == 0 {
		v.addf(v.line("kind"), "kind.falla", "is empty")
	}
	if len(f.Kind.Servicio) == 0 {
		v.addf(v.line("kind"), "kind.servicio", "is empty")
	}
	if len(nonEmpty(f.Questions.Generic)) == 0 {
		v.addf(v.line("questions", "generic"), "questions.generic", "is empty")
	}
	known := map[string]bool{}
	for i, a := range f.Areas {
		if !validName(a) {
			v.addf(v.line("areas", i), fmt.Sprintf("areas[%d]", i), "%q is not a name (letters, digits, _ or -)", a)
		} else if known[a] {
			v.addf(v.line("areas", i), fmt.Sprintf("areas[%d]", i), "duplicate area %q", a)
		}
		known[a] = true
	}
	declared := len(f.Areas) > 0
	for _, s := range f.Services {
		if !declared && validName(s.Area) {
			known[s.Area] = true
		}
	}
	for _, t := range f.OutOfScope {
		known[t.Target] = true
	}
	for _, area := range slices.Sorted(maps.Keys(f.Questions.Areas)) {
		qs := f.Questions.Areas[area]
		if !known[area] {
			v.addf(v.line("questions", "areas", area), "questions.areas."+area, "unknown area (want one of %s)", strings.Join(slices.Sorted(maps.Keys(known)), " "))
		}
		for i, q := range qs {
			if strings.TrimSpace(q) == "" {
				v.addf(v.line("questions", "areas", area, i), fmt.Sprintf("questions.areas.%s[%d]", area, i), "is empty")
			}
		}
	}
	if len(f.Services) == 0 {
		v.addf(v.line("services"), "services", "is empty")
	}
	ids := map[string]int{}
	for i, s := range f.Services {
		p := fmt.Sprintf("services[%d]", i)
		at := func(key string) int { return v.line("services", i, key) }
		switch {
		case strings.TrimSpace(s.ID) == "":
			v.addf(at("id"), p+".id", "is empty")
		case strings.ContainsAny(s.ID, " \t\n"):
			v.addf(at("id"), p+".id", "must not contain spaces")
		default:
			if j, dup := ids[s.ID]; dup {
				v.addf(at("id"), p+".id", "duplicate id %q (also services[%d])", s.ID, j)
			} else {
				ids[s.ID] = i
			}
		}
		if strings.TrimSpace(s.Name) == "" {
			v.addf(at("name"), p+".name", "is empty")
		}
		if strings.TrimSpace(s.Group) == "" {
			v.addf(at("group"), p+".group", "is empty")
		}
		switch {
		case strings.TrimSpace(s.Area) == "":
			v.addf(at("area"), p+".area", "is empty")
		case !validName(s.Area):
			v.addf(at("area"), p+".area", "%q is not a name (letters, digits, _ or -)", s.Area)
		case declared && !slices.Contains(f.Areas, s.Area):
			v.addf(at("area"), p+".area", "unknown area %q (want one of %s)", s.Area, strings.Join(f.Areas, " "))
		}
		v.examples(s.Examples, p+".examples", "services", i, "examples")
		if s.Kind != "" && s.Kind != KindFalla && s.Kind != KindServicio {
			v.addf(at("kind"), p+".kind", "must be falla or servicio, not %q", s.Kind)
		}
		if len(s.Keywords) == 0 {
			v.addf(at("keywords"), p+".keywords", "is empty")
		}
		v.terms(s.Keywords, p+".keywords", "services", i, "keywords")
		v.terms(s.Negative, p+".negative", "services", i, "negative")
		v.phrases(s.Phrases, p+".phrases", "services", i, "phrases")
		for j, tst := range s.Tests {
			if strings.TrimSpace(tst) == "" {
				v.addf(v.line("services", i, "tests", j), fmt.Sprintf("%s.tests[%d]", p, j), "is empty")
			}
		}
	}
	in := f.Informativo
	if len(in.Keywords) == 0 {
		v.addf(v.line("informativo", "keywords"), "informativo.keywords", "is empty")
	}
	if in.Kind != "" && in.Kind != KindFalla && in.Kind != KindServicio {
		v.addf(v.line("informativo", "kind"), "informativo.kind", "must be falla or servicio, not %q", in.Kind)
	}
	v.terms(in.Keywords, "informativo.keywords", "informativo", "keywords")
	v.terms(in.Negative, "informativo.negative", "informativo", "negative")
	v.phrases(in.Phrases, "informativo.phrases", "informativo", "phrases")
	v.examples(in.Examples, "informativo.examples", "informativo", "examples")
	if c := in.Concept; c != "" && !validName(c) {
		v.addf(v.line("informativo", "concept"), "informativo.concept", "%q is not a name (letters, digits, _ or -)", c)
	}
	targets := map[string]int{}
	for i, t := range f.OutOfScope {
		p := fmt.Sprintf("out_of_scope[%d]", i)
		at := func(key string) int { return v.line("out_of_scope", i, key) }
		if strings.TrimSpace(t.Target) == "" {
			v.addf(at("target"), p+".target", "is empty")
		} else if !validName(t.Target) {
			v.addf(at("target"), p+".target", "%q is not a name (letters, digits, _ or -)", t.Target)
		} else if declared && slices.Contains(f.Areas, t.Target) {
			v.addf(at("target"), p+".target", "%q is also a service area", t.Target)
		} else if j, dup := targets[t.Target]; dup {
			v.addf(at("target"), p+".target", "duplicate target %q (also out_of_scope[%d])", t.Target, j)
		} else {
			targets[t.Target] = i
		}
		if strings.TrimSpace(t.Office) == "" {
			v.addf(at("office"), p+".office", "is empty")
		}
		if strings.TrimSpace(t.Message) == "" {
			v.addf(at("message"), p+".message", "is empty")
		}
		if len(t.Keywords) == 0 {
			v.addf(at("keywords"), p+".keywords", "is empty")
		}
		v.terms(t.Keywords, p+".keywords", "out_of_scope", i, "keywords")
		v.terms(t.Negative, p+".negative", "out_of_scope", i, "negative")
		v.phrases(t.Phrases, p+".phrases", "out_of_scope", i, "phrases")
		v.examples(t.Examples, p+".examples", "out_of_scope", i, "examples")
	}
	for i, s := range f.Services {
		if _, clash := targets[s.Area]; clash {
			v.addf(v.line("services", i, "area"), fmt.Sprintf("services[%d].area", i), "%q is also an orientation target", s.Area)
		}
	}
}

// validName reports whether s can name an area or target: letters, digits, '_' and '-', no spaces
// (it appears in subjects, metric labels and URLs).
func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '_' && r != '-' {
			return false
		}
	}
	return true
}

func (v *validator) examples(ex []string, p string, path ...any) {
	for j, s := range ex {
		if strings.TrimSpace(s) == "" {
			v.addf(v.line(append(path, j)...), fmt.Sprintf("%s[%d]", p, j), "is empty")
		}
	}
}

func (v *validator) thresholds(t *Thresholds) {
	check := func(key string, val, lo, hi float64) {
		if val != 0 && (val < lo || val > hi) {
			v.addf(v.line("thresholds", key), "thresholds."+key, "%g is out of range [%g, %g]", val, lo, hi)
		}
	}
	check("min_score", t.MinScore, 0.1, maxThresholdScore)
	check("min_margin", t.MinMargin, 0, 1)
	check("no_competente_score", t.NoCompetenteScore, 0.1, maxThresholdScore)
	check("no_competente_ratio", t.NoCompetenteRatio, 1, 20)
	check("min_words", float64(t.MinWords), 1, 50)
	check("subject_weight", t.SubjectWeight, 0.1, 10)
	check("phrase_bonus", t.PhraseBonus, 0, maxTermWeight)
	check("negative_weight", t.NegativeWeight, 0, maxTermWeight)
	if t.MinScore < 0 || t.MinMargin < 0 || t.NoCompetenteScore < 0 || t.NoCompetenteRatio < 0 ||
		t.MinWords < 0 || t.SubjectWeight < 0 || t.PhraseBonus < 0 || t.NegativeWeight < 0 {
		v.addf(v.line("thresholds"), "thresholds", "values must not be negative")
	}
}

func (v *validator) terms(ts []Term, p string, path ...any) {
	for j, t := range ts {
		line := t.line
		if line == 0 {
			line = v.line(append(path, j)...)
		}
		q := fmt.Sprintf("%s[%d]", p, j)
		if len(analyze(t.Text)) == 0 {
			v.addf(line, q, "%q has no content word", t.Text)
		}
		if t.Weight <= 0 || t.Weight > maxTermWeight {
			v.addf(line, q, "weight %g of %q is out of range (0, %g]", t.Weight, t.Text, maxTermWeight)
		}
	}
}

func (v *validator) phrases(ps []string, p string, path ...any) {
	for j, s := range ps {
		if len(analyze(s)) == 0 {
			v.addf(v.line(append(path, j)...), fmt.Sprintf("%s[%d]", p, j), "%q has no content word", s)
		}
	}
}

func nonEmpty(ss []string) []string {
	var out []string
	for _, s := range ss {
		if strings.TrimSpace(s) != "" {
			out = append(out, s)
		}
	}
	return out
}
