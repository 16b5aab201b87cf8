package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"

	"github.com/ipn-cgsi/caud/channels/imap"
)

// mailExpect is the part of a corpus manifest line (one JSON object per file) that mail check
// compares with: the expect_* fields written from the source projects' own tests.
type mailExpect struct {
	File         string          `json:"file"`
	Subject      *string         `json:"expect_subject"`
	TextContains []string        `json:"expect_text_contains"`
	TextExact    *string         `json:"expect_text_exact"`
	Kind         json.RawMessage `json:"expect_kind"`
	TNEFFiles    []string        `json:"expect_tnef_files"`
}

// suppressKinds are the expect_kind values of machine-generated mail, which the intake must
// suppress; keepKinds are look-alikes that must become requests.
var (
	suppressKinds = map[string]bool{"bounce": true, "auto-reply": true, "feedback-report": true,
		"delivery-notification": true}
	keepKinds = map[string]bool{"not-bounce": true, "ham": true}
)

func (e *mailExpect) kind() string {
	var s string
	if json.Unmarshal(e.Kind, &s) == nil {
		return s
	}
	return ""
}

// mailResult is one file's line of `cauctl mail check --json`.
type mailResult struct {
	File       string   `json:"file"`
	Outcome    string   `json:"outcome"` // request | suppressed | quarantined | crash
	Reason     string   `json:"reason,omitempty"`
	Detail     string   `json:"detail,omitempty"`
	Subject    string   `json:"subject,omitempty"`
	Excerpt    string   `json:"excerpt,omitempty"`
	Defects    []string `json:"defects,omitempty"`
	Forwarded  bool     `json:"forwarded,omitempty"`
	Bulk       string   `json:"bulk,omitempty"`
	SubjectOK  *bool    `json:"subject_ok,omitempty"`
	TextOK     *bool    `json:"text_ok,omitempty"`
	KindOK     *bool    `json:"kind_ok,omitempty"`
	TNEFFiles  []string `json:"tnef_files,omitempty"`
	Mismatches []string `json:"mismatches,omitempty"`

	body string // the whole readable text, compared with the manifest
}

// mailSummary counts the outcomes of a run and, with a manifest, the agreement with it.
type mailSummary struct {
	Files       int            `json:"files"`
	Requests    int            `json:"requests"`
	Suppressed  int            `json:"suppressed"`
	Quarantined int            `json:"quarantined"`
	Unreadable  int            `json:"quarantined_unreadable"`
	Crashes     int            `json:"crashes"`
	WithDefects int            `json:"with_defects"`
	Reasons     map[string]int `json:"reasons"`
	Defects     map[string]int `json:"defects"`
	Subjects    ratio          `json:"subjects"`
	Texts       ratio          `json:"texts"`
	AutoCaught  ratio          `json:"auto_suppressed"`
	KeptAsReq   ratio          `json:"lookalikes_kept"`
	TNEF        int            `json:"tnef_streams"`
	TNEFFiles   ratio          `json:"tnef_files"`
}

type ratio struct {
	OK    int `json:"ok"`
	Total int `json:"total"`
}

func (r ratio) String() string {
	if r.Total == 0 {
		return "0/0"
	}
	return fmt.Sprintf("%d/%d (%.1f %%)", r.OK, r.Total, 100*float64(r.OK)/float64(r.Total))
}

func (r *ratio) add(ok bool) *bool {
	r.Total++
	if ok {
		r.OK++
	}
	return &ok
}

// cmdMailCheck runs every .eml file under DIR through the same reader and rules as the IMAP intake,
// offline, and prints per file what caud would make of it, then a summary.
func (a *app) cmdMailCheck(args []string) int {
	fl := a.flags("mail check", "DIR [--expect manifest.jsonl] [--misses]")
	manifest := fl.String("expect", "", "manifiesto JSONL con los campos expect_* para comparar")
	misses := fl.Bool("misses", false, "imprimir sólo los archivos que no coinciden con el manifiesto o no son solicitudes")
	maxBytes := fl.Int64("max-bytes", 25<<20, "tamaño máximo de un mensaje, como en el buzón")
	pos, code, ok := a.parse(fl, args, 1, true)
	if !ok {
		return code
	}
	dir := pos[0]
	files, err := emlFiles(dir)
	if err != nil {
		fmt.Fprintf(a.stderr, "error: leer %s: %v\n", dir, err)
		return exitErr
	}
	if len(files) == 0 {
		fmt.Fprintf(a.stderr, "error: no hay archivos .eml en %s\n", dir)
		return exitErr
	}
	var expects map[string]*mailExpect
	base := dir
	if *manifest != "" {
		if expects, err = readMailManifest(*manifest); err != nil {
			fmt.Fprintf(a.stderr, "error: leer el manifiesto %s: %v\n", *manifest, err)
			return exitErr
		}
		base = filepath.Dir(*manifest)
	}
	sum := mailSummary{Reasons: map[string]int{}, Defects: map[string]int{}}
	enc := json.NewEncoder(a.stdout)
	for _, p := range files {
		rel, err := filepath.Rel(base, p)
		if err != nil || strings.HasPrefix(rel, "..") {
			rel, _ = filepath.Rel(dir, p)
		}
		rel = filepath.ToSlash(rel)
		res := checkMailFile(p, rel, *maxBytes)
		if e := expects[rel]; e != nil {
			compareMail(&res, e, &sum)
		}
		sum.count(&res)
		switch {
		case a.json:
			_ = enc.Encode(res)
		case !*misses || len(res.Mismatches) > 0 || res.Outcome == "crash" || res.Outcome == imap.VerdictQuarantined:
			printMailResult(a.stdout, &res)
		}
	}
	if a.json {
		_ = enc.Encode(map[string]any{"summary": sum})
	} else {
		printMailSummary(a.stdout, &sum, expects != nil)
	}
	if sum.Crashes > 0 {
		return exitErr
	}
	return exitOK
}

func emlFiles(dir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if ext := strings.ToLower(filepath.Ext(p)); !d.IsDir() && (ext == ".eml" || ext == ".tnef") {
			out = append(out, p)
		}
		return nil
	})
	sort.Strings(out)
	return out, err
}

func readMailManifest(path string) (map[string]*mailExpect, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]*mailExpect{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for n := 1; sc.Scan(); n++ {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var e mailExpect
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return nil, fmt.Errorf("línea %d: %v", n, err)
		}
		out[e.File] = &e
	}
	return out, sc.Err()
}

// checkMailFile assesses one file; a panic in the reader is reported as a crash, not propagated,
// so that one file cannot hide the others' results.
func checkMailFile(path, rel string, maxBytes int64) (res mailResult) {
	res.File = rel
	defer func() {
		if r := recover(); r != nil {
			res = mailResult{File: rel, Outcome: "crash", Detail: fmt.Sprintf("%v\n%s", r, debug.Stack())}
		}
	}()
	raw, err := os.ReadFile(path)
	if err != nil {
		return mailResult{File: rel, Outcome: "crash", Detail: err.Error()}
	}
	if strings.EqualFold(filepath.Ext(path), ".tnef") {
		return checkTNEF(rel, raw)
	}
	v := imap.Assess(raw, maxBytes)
	res.Outcome, res.Reason, res.Detail = v.Outcome, v.Reason, v.Detail
	if m := v.Message; m != nil {
		res.Subject = m.Subject
		res.body = m.Body
		res.Excerpt = excerpt(imap.SplitRequest(m).Text, 160)
		res.Defects = m.Defects
		res.Forwarded = m.Forwarded
		res.Bulk = m.Bulk
	}
	return res
}

// checkTNEF reads a raw winmail.dat stream as the reader does inside a mail.
func checkTNEF(rel string, raw []byte) mailResult {
	res := mailResult{File: rel, Outcome: "tnef"}
	s, err := imap.InspectTNEF(raw)
	if err != nil {
		res.Outcome, res.Reason, res.Detail = imap.VerdictQuarantined, imap.ReasonUnparseable, err.Error()
		return res
	}
	res.body = s.Text
	res.Excerpt = excerpt(s.Text, 160)
	res.TNEFFiles = s.Files
	if s.Truncated {
		res.Defects = []string{imap.DefectTNEF}
	}
	return res
}

func compareMail(res *mailResult, e *mailExpect, sum *mailSummary) {
	if len(e.TNEFFiles) > 0 && res.Outcome == "tnef" {
		// The source lists the body as a file too (body.rtf, body.html): here it is the text.
		ok := true
		for _, want := range e.TNEFFiles {
			if strings.HasPrefix(want, "body.") {
				if strings.TrimSpace(res.body) == "" {
					ok = false
					res.Mismatches = append(res.Mismatches, "tnef: falta el texto del cuerpo ("+want+")")
				}
				continue
			}
			found := false
			for _, f := range res.TNEFFiles {
				found = found || f == want
			}
			if !found {
				ok = false
				res.Mismatches = append(res.Mismatches, fmt.Sprintf("tnef: falta el archivo %q", want))
			}
		}
		sum.TNEFFiles.add(ok)
	}
	if e.Subject != nil && res.Outcome != "crash" {
		ok := squeeze(res.Subject) == squeeze(*e.Subject)
		res.SubjectOK = sum.Subjects.add(ok)
		if !ok {
			res.Mismatches = append(res.Mismatches, fmt.Sprintf("asunto: se esperaba %q", *e.Subject))
		}
	}
	if (len(e.TextContains) > 0 || e.TextExact != nil) && res.Outcome != "crash" {
		body := squeeze(res.body)
		ok := true
		for _, want := range e.TextContains {
			if w := squeeze(want); w != "" && !strings.Contains(body, w) {
				ok = false
				res.Mismatches = append(res.Mismatches, fmt.Sprintf("texto: falta %q", excerpt(want, 80)))
			}
		}
		if e.TextExact != nil && squeeze(*e.TextExact) != body {
			ok = false
			res.Mismatches = append(res.Mismatches, fmt.Sprintf("texto: se esperaba exactamente %q", excerpt(*e.TextExact, 80)))
		}
		res.TextOK = sum.Texts.add(ok)
	}
	k := e.kind()
	switch {
	case suppressKinds[k]:
		ok := res.Outcome == imap.VerdictSuppressed
		res.KindOK = sum.AutoCaught.add(ok)
		if !ok {
			res.Mismatches = append(res.Mismatches, fmt.Sprintf("tipo %s: no se suprimió", k))
		}
	case k == "auto-generated":
		// Never answered automatically: suppressed, or a request marked as bulk (RT's reading).
		ok := res.Outcome == imap.VerdictSuppressed || res.Bulk != ""
		res.KindOK = sum.AutoCaught.add(ok)
		if !ok {
			res.Mismatches = append(res.Mismatches, "tipo auto-generated: ni suprimido ni marcado como masivo")
		}
	case keepKinds[k]:
		ok := res.Outcome == imap.VerdictRequest
		res.KindOK = sum.KeptAsReq.add(ok)
		if !ok {
			res.Mismatches = append(res.Mismatches, fmt.Sprintf("tipo %s: debía ser una solicitud", k))
		}
	}
}

func (s *mailSummary) count(r *mailResult) {
	if r.Outcome == "tnef" {
		s.TNEF++
		return
	}
	s.Files++
	switch r.Outcome {
	case imap.VerdictRequest:
		s.Requests++
	case imap.VerdictSuppressed:
		s.Suppressed++
		s.Reasons["suprimido: "+r.Reason]++
	case imap.VerdictQuarantined:
		s.Quarantined++
		s.Reasons["cuarentena: "+r.Reason]++
		if r.Reason == imap.ReasonUnparseable || r.Reason == imap.ReasonEmpty {
			s.Unreadable++
		}
	default:
		s.Crashes++
	}
	if len(r.Defects) > 0 {
		s.WithDefects++
	}
	for _, d := range r.Defects {
		s.Defects[d]++
	}
}

func printMailResult(w io.Writer, r *mailResult) {
	fmt.Fprintf(w, "%s\n", r.File)
	if r.Subject != "" {
		fmt.Fprintf(w, "  asunto:     %s\n", excerpt(r.Subject, 120))
	}
	if r.Excerpt != "" {
		fmt.Fprintf(w, "  texto:      %s\n", r.Excerpt)
	}
	if len(r.Defects) > 0 {
		fmt.Fprintf(w, "  defectos:   %s\n", strings.Join(r.Defects, ", "))
	}
	if r.Forwarded {
		fmt.Fprintf(w, "  reenviado:  sí (el texto reenviado forma parte de la solicitud)\n")
	}
	if r.Bulk != "" {
		fmt.Fprintf(w, "  masivo:     %s (sin respuesta automática)\n", r.Bulk)
	}
	switch r.Outcome {
	case imap.VerdictRequest:
		fmt.Fprintf(w, "  resultado:  solicitud\n")
	case imap.VerdictSuppressed:
		fmt.Fprintf(w, "  resultado:  suprimido (%s)\n", r.Reason)
	case imap.VerdictQuarantined:
		fmt.Fprintf(w, "  resultado:  cuarentena (%s): %s\n", r.Reason, r.Detail)
	case "tnef":
		fmt.Fprintf(w, "  resultado:  winmail.dat con %d archivo(s): %s\n", len(r.TNEFFiles), strings.Join(r.TNEFFiles, ", "))
	default:
		fmt.Fprintf(w, "  resultado:  FALLO: %s\n", r.Detail)
	}
	for _, m := range r.Mismatches {
		fmt.Fprintf(w, "  diferencia: %s\n", m)
	}
}

func printMailSummary(w io.Writer, s *mailSummary, withExpect bool) {
	pct := func(n int) string { return fmt.Sprintf("%d (%.1f %%)", n, 100*float64(n)/float64(max(s.Files, 1))) }
	fmt.Fprintf(w, "\nResumen: %d archivos\n", s.Files)
	fmt.Fprintf(w, "  solicitudes:              %s\n", pct(s.Requests))
	fmt.Fprintf(w, "  suprimidos:               %s\n", pct(s.Suppressed))
	fmt.Fprintf(w, "  en cuarentena:            %s, ilegibles %s\n", pct(s.Quarantined), pct(s.Unreadable))
	fmt.Fprintf(w, "  fallos:                   %d\n", s.Crashes)
	fmt.Fprintf(w, "  con defectos:             %s\n", pct(s.WithDefects))
	if s.TNEF > 0 {
		fmt.Fprintf(w, "  winmail.dat sueltos:      %d\n", s.TNEF)
	}
	printCounts(w, "  motivos:", s.Reasons)
	printCounts(w, "  defectos:", s.Defects)
	if withExpect {
		fmt.Fprintf(w, "  asuntos como el manifiesto:          %s\n", s.Subjects)
		fmt.Fprintf(w, "  textos como el manifiesto:           %s\n", s.Texts)
		fmt.Fprintf(w, "  rebotes y respuestas automáticas suprimidos: %s\n", s.AutoCaught)
		fmt.Fprintf(w, "  parecidos a rebotes que son solicitudes:     %s\n", s.KeptAsReq)
		if s.TNEFFiles.Total > 0 {
			fmt.Fprintf(w, "  winmail.dat leídos como el manifiesto:       %s\n", s.TNEFFiles)
		}
	}
}

func printCounts(w io.Writer, title string, m map[string]int) {
	if len(m) == 0 {
		return
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return m[keys[i]] > m[keys[j]] || m[keys[i]] == m[keys[j]] && keys[i] < keys[j] })
	fmt.Fprintln(w, title)
	for _, k := range keys {
		fmt.Fprintf(w, "    %-40s %d\n", k, m[k])
	}
}

// squeeze collapses every run of white space to one space, so line wrapping and CRLF do not count.
func squeeze(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// excerpt is the start of s on one line, cut to n runes with an ellipsis.
func excerpt(s string, n int) string {
	s = squeeze(s)
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}
