package main

import (
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"
)

// cmdClaim takes the next item of a queue and prints it for the agent. An empty queue exits 3.
func (a *app) cmdClaim(args []string) int {
	fs := a.flags("claim", "COLA [--agent NOMBRE]")
	agent := fs.String("agent", a.getenv("CAU_AGENT"), "nombre del agente (variable CAU_AGENT)")
	pos, code, ok := a.parse(fs, args, 1, true)
	if !ok {
		return code
	}
	queue := pos[0]
	if !slices.Contains(outcomes, queue) {
		return a.usageErr("claim: cola desconocida %q; colas: %s", queue, strings.Join(outcomes, ", "))
	}
	c, code, ok := a.client()
	if !ok {
		return code
	}
	ctx, cancel := a.ctx()
	defer cancel()
	cl, err := c.Claim(ctx, queue, *agent)
	if errors.Is(err, ErrQueueEmpty) {
		if !a.json {
			fmt.Fprintf(a.stderr, "La cola %s está vacía.\n", queue)
		}
		return exitEmpty
	}
	if err != nil {
		return a.fail(err, c, nil, "")
	}
	if a.json {
		a.writeJSON(cl.Raw)
		return exitOK
	}
	w := a.stdout
	f := fields{w, labelWidth}
	f.line("Asignación", cl.Lease)
	f.line("Vence", a.when(cl.ExpiresAt))
	fmt.Fprintln(w)
	a.printRequest(w, &cl.Item.Request)
	fmt.Fprintln(w)
	a.printTriage(w, cl.Item.Triage)
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Al registrarla en el SAI: cauctl done %s --folio FOLIO\n", cl.Lease)
	fmt.Fprintf(w, "Para devolverla: cauctl release %s · para corregir el triaje: cauctl reroute %s --outcome …\n", cl.Lease, cl.Lease)
	return exitOK
}

// cmdDone finishes a leased item with the SAI folio it was registered under; an item without
// one (only outside the sai queue, or with --sin-folio and the reason) needs no folio.
func (a *app) cmdDone(args []string) int {
	fs := a.flags("done", "ASIGNACIÓN (--folio FOLIO | --sin-folio MOTIVO)")
	agent := a.agentFlag(fs)
	folio := fs.String("folio", "", "folio del SAI, p. ej. SAI-2025-001234 (obligatorio en la cola sai)")
	noFolio := fs.String("sin-folio", "", "por qué un elemento de la cola sai no tiene folio, p. ej. «duplicado de SAI-2025-001200»")
	lease, c, code, ok := a.leaseArgs(fs, args)
	if !ok {
		return code
	}
	c.Agent = strings.TrimSpace(*agent)
	if strings.TrimSpace(*folio) != "" && strings.TrimSpace(*noFolio) != "" {
		return a.usageErr("done: use --folio o --sin-folio, no ambos")
	}
	ctx, cancel := a.ctx()
	defer cancel()
	r, err := c.Done(ctx, lease, strings.TrimSpace(*folio), strings.TrimSpace(*noFolio))
	if err != nil {
		return a.leaseFail(err, c, map[string]string{"folio": "--folio", "no_folio_reason": "--sin-folio"}, fs.Name(), lease)
	}
	if a.json {
		a.writeJSON(r.Raw)
		return exitOK
	}
	if *folio != "" {
		fmt.Fprintf(a.stdout, "Terminada: asignación %s, folio %s (estado: %s).\n", lease, *folio, label(stateLabels, r.State))
	} else {
		fmt.Fprintf(a.stdout, "Terminada: asignación %s (estado: %s).\n", lease, label(stateLabels, r.State))
	}
	return exitOK
}

// cmdRelease gives a leased item back to its queue.
func (a *app) cmdRelease(args []string) int {
	fs := a.flags("release", "ASIGNACIÓN")
	agent := a.agentFlag(fs)
	lease, c, code, ok := a.leaseArgs(fs, args)
	if !ok {
		return code
	}
	c.Agent = strings.TrimSpace(*agent)
	ctx, cancel := a.ctx()
	defer cancel()
	r, err := c.Release(ctx, lease)
	if err != nil {
		return a.leaseFail(err, c, nil, fs.Name(), lease)
	}
	if a.json {
		a.writeJSON(r.Raw)
		return exitOK
	}
	fmt.Fprintf(a.stdout, "Liberada: asignación %s; el elemento volvió a su cola (estado: %s).\n", lease, label(stateLabels, r.State))
	return exitOK
}

// cmdExtend keeps a leased item longer; without --for the server applies its default.
func (a *app) cmdExtend(args []string) int {
	fs := a.flags("extend", "ASIGNACIÓN [--for 15m]")
	agent := a.agentFlag(fs)
	d := fs.Duration("for", 0, "cuánto tiempo más, p. ej. 15m (predeterminado: el del servidor)")
	lease, c, code, ok := a.leaseArgs(fs, args)
	if !ok {
		return code
	}
	c.Agent = strings.TrimSpace(*agent)
	if *d < 0 {
		return a.usageErr("extend: --for debe ser positivo")
	}
	ctx, cancel := a.ctx()
	defer cancel()
	r, err := c.Extend(ctx, lease, *d)
	if err != nil {
		return a.leaseFail(err, c, nil, fs.Name(), lease)
	}
	if a.json {
		a.writeJSON(r.Raw)
		return exitOK
	}
	fmt.Fprintf(a.stdout, "Extendida: asignación %s, vence %s.\n", lease, a.when(r.ExpiresAt))
	return exitOK
}

// cmdReroute corrects the triage of a leased item; the server moves it to the queue of the outcome.
func (a *app) cmdReroute(args []string) int {
	fs := a.flags("reroute", "ASIGNACIÓN --outcome RESULTADO [--service ID] [--kind TIPO] [--target DESTINO] [--note NOTA]")
	agent := a.agentFlag(fs)
	var r Reroute
	fs.StringVar(&r.Outcome, "outcome", "", "resultado: "+strings.Join(outcomes, ", "))
	fs.StringVar(&r.Service, "service", "", "id del servicio SAI (obligatorio para sai)")
	fs.StringVar(&r.Kind, "kind", "", "falla o servicio")
	fs.StringVar(&r.Target, "target", "", "destino de orientación (obligatorio para no_competente)")
	fs.StringVar(&r.Note, "note", "", "por qué se corrige")
	lease, c, code, ok := a.leaseArgs(fs, args)
	if !ok {
		return code
	}
	c.Agent = strings.TrimSpace(*agent)
	switch {
	case r.Outcome == "":
		return a.usageErr("reroute: falta --outcome (%s)", strings.Join(outcomes, ", "))
	case !slices.Contains(outcomes, r.Outcome):
		return a.usageErr("reroute: --outcome %q desconocido; use %s", r.Outcome, strings.Join(outcomes, ", "))
	case r.Kind != "" && r.Kind != kindFalla && r.Kind != kindServicio:
		return a.usageErr("reroute: --kind %q desconocido; use falla o servicio", r.Kind)
	case r.Outcome == outcomeSAI && r.Service == "":
		return a.usageErr("reroute: --outcome sai necesita --service ID")
	case r.Outcome == outcomeNoCompetente && r.Target == "":
		return a.usageErr("reroute: --outcome no_competente necesita --target DESTINO")
	}
	ctx, cancel := a.ctx()
	defer cancel()
	res, err := c.Reroute(ctx, lease, r)
	if err != nil {
		labels := map[string]string{"outcome": "--outcome", "service": "--service", "kind": "--kind", "target": "--target", "note": "--note"}
		return a.leaseFail(err, c, labels, fs.Name(), lease)
	}
	if a.json {
		a.writeJSON(res.Raw)
		return exitOK
	}
	queue := res.Queue
	if queue == "" {
		queue = r.Outcome
	}
	fmt.Fprintf(a.stdout, "Reencauzada: asignación %s; el elemento pasó a la cola %s.\n", lease, queue)
	return exitOK
}

// leaseArgs parses a lease command's flags and its one LEASE argument and builds the client.
func (a *app) leaseArgs(fs *flag.FlagSet, args []string) (string, *Client, int, bool) {
	pos, code, ok := a.parse(fs, args, 1, true)
	if !ok {
		return "", nil, code, false
	}
	lease := strings.TrimSpace(pos[0])
	if lease == "" {
		return "", nil, a.usageErr("%s: la asignación está vacía", fs.Name()), false
	}
	c, code, ok := a.client()
	if !ok {
		return "", nil, code, false
	}
	return lease, c, 0, true
}

// agentFlag adds --agent to a lease command: who acts, for the audit trail (default CAU_AGENT).
func (a *app) agentFlag(fs *flag.FlagSet) *string {
	return fs.String("agent", a.getenv("CAU_AGENT"), "nombre de quien actúa, para el historial (variable CAU_AGENT)")
}

// leaseFail is fail for the lease commands: a 410 says the lease expired and what to do now.
func (a *app) leaseFail(err error, c *Client, labels map[string]string, action, lease string) int {
	gone := fmt.Sprintf("error: la asignación %s expiró; el elemento ya no está a su nombre.\n", lease) +
		"  Tome otro elemento con «cauctl claim COLA».\n"
	if action == "done" {
		gone += "  Si ya lo registró en el SAI, no lo registre de nuevo cuando vuelva a aparecer en la cola.\n"
	}
	return a.fail(err, c, labels, gone)
}
