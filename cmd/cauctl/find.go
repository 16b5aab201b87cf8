package main

import (
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/ipn-cgsi/caud/triage/search"
)

// findFlags are the search criteria, flag name = the API's parameter name.
var findFlags = []struct{ name, help string }{
	{"id", "id de la solicitud"},
	{"folio", "folio SAI con que se terminó"},
	{"email", "correo del solicitante"},
	{"handle", "usuario de Facebook o X (con o sin @)"},
	{"name", "nombre del solicitante (palabras o su inicio: \"ana lop\")"},
	{"unit", "escuela, centro o unidad, p. ej. ESCOM"},
	{"queue", "cola: sai, informativo, aclaracion o no_competente"},
	{"state", "estado: received, queued, claimed, done o dead"},
	{"channel", "medio: email, memo, facebook, x, phone o in_person"},
	{"from", "recibidas desde (AAAA-MM-DD, hora de la Ciudad de México, o fecha y hora RFC 3339)"},
	{"to", "recibidas hasta (AAAA-MM-DD incluye ese día)"},
	{"limit", "cuántas mostrar (1 a 500; predeterminado 50)"},
	{"cursor", "continuar después de la página anterior (lo indica la búsqueda)"},
}

// cmdFind searches requests: words given as arguments must all appear in the id, folio, name,
// e-mail, handle, unit or subject; flags narrow by each criterion. Newest first, one page at a time.
func (a *app) cmdFind(args []string) int {
	fs := a.flags("find", "[PALABRAS] [--folio F] [--email E] [--name N] [--unit U] [--queue C] [--state S] [--from F] [--to F] [...]")
	vals := make(map[string]*string, len(findFlags))
	for _, f := range findFlags {
		vals[f.name] = fs.String(f.name, "", f.help)
	}
	pos, code, ok := a.parse(fs, args, 0, false)
	if !ok {
		return code
	}
	v := url.Values{}
	if len(pos) > 0 {
		v.Set("q", strings.Join(pos, " "))
	}
	for k, p := range vals {
		if *p != "" {
			v.Set(k, *p)
		}
	}
	q, err := search.ParseQuery(v)
	if err != nil {
		var qe *search.QueryError
		if !errors.As(err, &qe) {
			return a.usageErr("find: %v", err)
		}
		keys := make([]string, 0, len(qe.Fields))
		for k := range qe.Fields {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		fmt.Fprintln(a.stderr, "cauctl: find: búsqueda inválida")
		for _, k := range keys {
			name := "--" + k
			if k == "q" {
				name = "palabras"
			}
			fmt.Fprintf(a.stderr, "  %s: %s\n", name, qe.Fields[k])
		}
		return exitUsage
	}
	c, code, ok := a.client()
	if !ok {
		return code
	}
	ctx, cancel := a.ctx()
	defer cancel()
	r, raw, err := c.Search(ctx, q)
	if err != nil {
		return a.fail(err, c, nil, "")
	}
	if a.json {
		a.writeJSON(raw)
		return exitOK
	}
	if len(r.Requests) == 0 {
		fmt.Fprintln(a.stdout, "Ninguna solicitud coincide con la búsqueda.")
		return exitOK
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SOLICITUD\tRECIBIDA\tCANAL\tSOLICITANTE\tUNIDAD\tESTADO\tCOLA\tFOLIO")
	for _, s := range r.Requests {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, a.shortWhen(s.ReceivedAt), label(channelLabels, s.Channel),
			cell(requesterOf(s), 40), cell(s.Unit, 20), shortState(s.State), dash(s.Queue), dash(s.Folio))
	}
	tw.Flush()
	if r.Next != "" {
		limit := ""
		if q.Limit != 0 {
			limit = " --limit " + strconv.Itoa(q.Limit)
		}
		fmt.Fprintf(a.stdout, "\nHay más resultados: repita la búsqueda con%s --cursor %s\n", limit, r.Next)
	}
	return exitOK
}

func requesterOf(s Found) string {
	who := s.Name
	if s.Email != "" {
		who = strings.TrimSpace(who + " <" + s.Email + ">")
	}
	if s.Handle != "" {
		who = strings.TrimSpace(who + " @" + s.Handle)
	}
	return dash(who)
}

var shortStates = map[string]string{"received": "recibida", "queued": "en cola", "claimed": "tomada", "done": "terminada", "dead": "fallida"}

func shortState(s string) string { return dash(label(shortStates, s)) }

func dash(s string) string {
	if strings.TrimSpace(s) == "" {
		return "—"
	}
	return s
}

// cell keeps a table cell on one line and at most n runes.
func cell(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
