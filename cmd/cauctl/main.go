// Command cauctl is the operator and agent CLI of caud, a thin client of its HTTP API: queue status,
// claiming and finishing work items, desk intake, and, offline, catalog checks and triage explanations.
//
// Messages for people are in Spanish (Mexico), the language of the help desk. Exit codes: 0 ok,
// 1 server or API error, 2 usage error, 3 when `claim` finds the queue empty (so scripts can loop).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/ipn-cgsi/caud/cmd/internal/version"
)

// Exit codes.
const (
	exitOK    = 0
	exitErr   = 1
	exitUsage = 2
	exitEmpty = 3
)

// defaultServer is used when neither --server nor CAU_SERVER is set; it is caud's default listener.
const defaultServer = "http://127.0.0.1:8080"

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv))
}

// run executes one cauctl invocation and returns its exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	a := newApp(stdin, stdout, stderr, getenv)
	return a.main(args)
}

// app holds one invocation: its streams, environment, global flags and clock.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	now            func() time.Time
	loc            *time.Location

	// Global flags; every command's flag set binds them too, so they work before or after the command.
	server  string
	json    bool
	timeout time.Duration
	version bool
}

// newApp returns an app with the defaults: the real clock and zone, CAU_SERVER or defaultServer, 10s.
func newApp(stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) *app {
	a := &app{
		stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv,
		now: time.Now, loc: time.Local,
		server: defaultServer, timeout: 10 * time.Second,
	}
	if s := getenv("CAU_SERVER"); s != "" {
		a.server = s
	}
	return a
}

// command is one cauctl command; group commands ("catalog check") are named by both words.
type command struct {
	name    string
	args    string
	summary string
	run     func(a *app, args []string) int
}

// commands lists every command in the order of the help text.
func commands() []command {
	return append([]command{
		{"status", "", "estado del servidor (verificaciones de /readyz) y de las colas", (*app).cmdStatus},
		{"queues", "", "tabla de colas: pendientes, en curso, antigüedad", (*app).cmdQueues},
		{"claim", "COLA [--agent NOMBRE]", "tomar el siguiente elemento de una cola (sale con 3 si está vacía)", (*app).cmdClaim},
		{"done", "ASIGNACIÓN (--folio FOLIO | --sin-folio MOTIVO)", "terminar un elemento tomado (registrado en el SAI)", (*app).cmdDone},
		{"release", "ASIGNACIÓN", "devolver un elemento tomado a su cola", (*app).cmdRelease},
		{"extend", "ASIGNACIÓN [--for 15m]", "conservar un elemento tomado por más tiempo", (*app).cmdExtend},
		{"reroute", "ASIGNACIÓN --outcome RESULTADO [--service ID] [--kind TIPO] [--target DESTINO] [--note NOTA]", "corregir el triaje y mover el elemento a otra cola", (*app).cmdReroute},
		{"show", "ID", "ver una solicitud, su triaje, su estado y su historial", (*app).cmdShow},
		{"find", "[PALABRAS] [--folio F] [--email E] [--name N] [--unit U] [--state S] [...]", "buscar solicitudes (la más reciente primero)", (*app).cmdFind},
		{"submit", "--channel phone|in_person --description TEXTO|- [...]", "registrar una solicitud por teléfono o presencial", (*app).cmdSubmit},
		{"memo", "ARCHIVO [--email CORREO] [--unit UNIDAD]", "registrar un oficio escaneado (PDF o imagen; OCR en el servidor)", (*app).cmdMemo},
		{"triage corrections", "[--out ARCHIVO]", "exportar las correcciones de los agentes como ejemplos etiquetados (JSONL)", (*app).cmdTriageCorrections},
		{"triage model", "[--retrain]", "modelo aprendido en uso y último reentrenamiento automático (comparado; por qué se rechazó)", (*app).cmdTriageModel},
		{"dlq list", "", "mensajes que no se pudieron procesar, con el motivo", (*app).cmdDLQ},
		{"dlq replay", "SEC", "reprocesar un mensaje fallido una vez corregida la causa", (*app).cmdDLQReplay},
	}, append(offlineCommands(), usersCommands()...)...)
}

// isGroup reports whether name is the first word of two-word commands ("catalog check", "dlq list").
func isGroup(name string) bool {
	for _, c := range commands() {
		if strings.HasPrefix(c.name, name+" ") {
			return true
		}
	}
	return false
}

func (a *app) usage(w io.Writer) {
	fmt.Fprintf(w, `Uso: cauctl [opciones globales] COMANDO [argumentos]

Cliente de caud, la mesa de entrada del CAU.

Comandos:
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-15s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, `
Opciones globales (también valen después del comando):
  --server URL      servidor caud (variable CAU_SERVER; predeterminado %s)
  --json            imprimir el JSON del servidor tal cual, para scripts
  --timeout DUR     tiempo máximo por llamada (predeterminado 10s)
  --version         mostrar la versión y salir

El token de acceso se toma de la variable CAU_TOKEN; el nombre del agente, de CAU_AGENT.
ASIGNACIÓN es el identificador que imprime «cauctl claim»; ID, el de la solicitud (lo imprimen
«claim», «submit» y «find»).
Códigos de salida: 0 correcto, 1 error del servidor, 2 uso incorrecto, 3 cola vacía (claim).
Ayuda de un comando: cauctl COMANDO -h
`, defaultServer)
}

func (a *app) main(args []string) int {
	fs := flag.NewFlagSet("cauctl", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	a.globalFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			a.usage(a.stdout)
			return exitOK
		}
		return a.usageErr("%s", flagMessage(err))
	}
	if a.version {
		fmt.Fprintln(a.stdout, version.String("cauctl"))
		return exitOK
	}
	rest := fs.Args()
	if len(rest) == 0 {
		a.usage(a.stderr)
		return exitUsage
	}
	name := rest[0]
	rest = rest[1:]
	switch name {
	case "help":
		a.usage(a.stdout)
		return exitOK
	case "version", "--version", "-version":
		fmt.Fprintln(a.stdout, version.String("cauctl"))
		return exitOK
	}
	if isGroup(name) {
		if len(rest) == 0 || strings.HasPrefix(rest[0], "-") {
			return a.usageErr("falta el subcomando de %q (vea «cauctl help»)", name)
		}
		name += " " + rest[0]
		rest = rest[1:]
	}
	for _, c := range commands() {
		if c.name == name {
			return c.run(a, rest)
		}
	}
	return a.usageErr("comando desconocido %q (vea «cauctl help»)", name)
}

func (a *app) globalFlags(fs *flag.FlagSet) {
	fs.BoolVar(&a.version, "version", a.version, "mostrar la versión y salir")
	fs.StringVar(&a.server, "server", a.server, "servidor caud (variable CAU_SERVER)")
	fs.BoolVar(&a.json, "json", a.json, "imprimir el JSON del servidor tal cual")
	fs.DurationVar(&a.timeout, "timeout", a.timeout, "tiempo máximo por llamada")
}

// flags returns the flag set of a command, with the global flags bound. The flag package's own usage
// output is silenced: help goes to stdout in Spanish, usage errors are one line on stderr.
func (a *app) flags(name, args string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	a.globalFlags(fs)
	return fs
}

// help prints a command's usage, what it does, an example and its flags (the command's own first),
// in Spanish.
func (a *app) help(fs *flag.FlagSet) {
	fmt.Fprintf(a.stdout, "Uso: cauctl %s %s\n\n", fs.Name(), a.argsOf(fs.Name()))
	for _, c := range commands() {
		if c.name == fs.Name() {
			fmt.Fprintf(a.stdout, "%s.\n\n", strings.ToUpper(c.summary[:1])+c.summary[1:])
		}
	}
	if ex := examples[fs.Name()]; ex != "" {
		fmt.Fprintf(a.stdout, "Ejemplo:\n  %s\n\n", strings.ReplaceAll(ex, "\n", "\n  "))
	}
	fmt.Fprintf(a.stdout, "Opciones:\n")
	global := map[string]bool{"server": true, "json": true, "timeout": true, "version": true}
	var own, glob []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) {
		if global[f.Name] {
			glob = append(glob, f)
		} else {
			own = append(own, f)
		}
	})
	for _, f := range append(own, glob...) {
		name, usage := flag.UnquoteUsage(f)
		arg := "--" + f.Name
		switch {
		case name == "value" || name == "string":
			arg += " VALOR"
		case name == "duration":
			arg += " DURACIÓN"
		case name != "":
			arg += " " + strings.ToUpper(name)
		}
		def := ""
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0s" {
			def = " (predeterminado: " + f.DefValue + ")"
		}
		fmt.Fprintf(a.stdout, "  %-22s %s%s\n", arg, usage, def)
	}
}

// parse parses flags and positional arguments in any order ("claim sai --agent ana" as well as
// "claim --agent ana sai"), the way operators type them; "--" ends the flags. It returns the
// positional arguments, or the exit code to return when ok is false (help, usage error).
func (a *app) parse(fs *flag.FlagSet, args []string, npos int, exact bool) (pos []string, code int, ok bool) {
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				a.help(fs)
				return nil, exitOK, false
			}
			return nil, a.usageErr("%s: %s", fs.Name(), flagMessage(err)), false
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	if a.version {
		fmt.Fprintln(a.stdout, version.String("cauctl"))
		return nil, exitOK, false
	}
	switch {
	case len(pos) < npos:
		return nil, a.usageErr("%s: faltan argumentos; uso: cauctl %s %s", fs.Name(), fs.Name(), a.argsOf(fs.Name())), false
	case exact && len(pos) > npos:
		return nil, a.usageErr("%s: sobran argumentos: %s", fs.Name(), strings.Join(pos[npos:], " ")), false
	}
	return pos, 0, true
}

func (a *app) argsOf(name string) string {
	for _, c := range commands() {
		if c.name == name {
			return c.args
		}
	}
	return ""
}

// usageErr prints a usage error and returns exitUsage.
func (a *app) usageErr(format string, args ...any) int {
	fmt.Fprintf(a.stderr, "cauctl: "+format+"\n", args...)
	return exitUsage
}

// flagMessage translates the flag package's errors, which agents would otherwise read in English.
func flagMessage(err error) string {
	msg := err.Error()
	switch {
	case strings.HasPrefix(msg, "flag provided but not defined: "):
		return "opción desconocida " + strings.TrimPrefix(msg, "flag provided but not defined: ")
	case strings.HasPrefix(msg, "flag needs an argument: "):
		return "la opción " + strings.TrimPrefix(msg, "flag needs an argument: ") + " necesita un valor"
	case strings.HasPrefix(msg, "invalid value "):
		return "valor inválido " + strings.TrimPrefix(msg, "invalid value ")
	case strings.HasPrefix(msg, "invalid boolean value "):
		return "valor booleano inválido " + strings.TrimPrefix(msg, "invalid boolean value ")
	}
	return msg
}

// client builds the API client from the global flags and CAU_TOKEN. A malformed --server is a usage
// error; a bare host:port is taken as http://host:port.
func (a *app) client() (*Client, int, bool) {
	s := strings.TrimSpace(a.server)
	if s != "" && !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, a.usageErr("--server inválido %q: use http://host:puerto", a.server), false
	}
	if a.timeout <= 0 {
		return nil, a.usageErr("--timeout debe ser mayor que cero"), false
	}
	return &Client{
		BaseURL: strings.TrimRight(u.String(), "/"),
		Token:   a.getenv("CAU_TOKEN"),
		HTTP:    &http.Client{Timeout: a.timeout},
	}, 0, true
}

func (a *app) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), a.timeout)
}

// withClient parses args (npos positional arguments exactly), builds the API client and runs f with
// a context bounded by --timeout. It returns f's exit code, or the one parse or client chose.
func (a *app) withClient(fs *flag.FlagSet, args []string, npos int, f func(ctx context.Context, c *Client, pos []string) int) int {
	pos, code, ok := a.parse(fs, args, npos, true)
	if !ok {
		return code
	}
	c, code, ok := a.client()
	if !ok {
		return code
	}
	ctx, cancel := a.ctx()
	defer cancel()
	return f(ctx, c, pos)
}

// fail reports err to the agent and returns the exit code: API errors with the server's message and
// the field errors (named by fieldLabels, e.g. the flag the agent typed), transport errors with what
// to check. gone, when not empty, is printed for a 410 instead of a generic line. In --json mode the
// server's error body also goes to stdout for scripts.
func (a *app) fail(err error, c *Client, fieldLabels map[string]string, gone string) int {
	var ae *APIError
	if !errors.As(err, &ae) {
		a.transportError(err, c)
		return exitErr
	}
	if a.json && len(ae.Body) > 0 {
		a.writeJSON(ae.Body)
	}
	w := a.stderr
	switch ae.Status {
	case http.StatusUnauthorized:
		if c.Token == "" {
			fmt.Fprintln(w, "error: el servidor pide un token; defina la variable CAU_TOKEN")
		} else {
			fmt.Fprintln(w, "error: el servidor rechazó el token de CAU_TOKEN")
		}
	case http.StatusForbidden:
		fmt.Fprintln(w, "error: el token no tiene permiso para esta operación")
	case http.StatusGone:
		if gone != "" {
			fmt.Fprint(w, gone)
		} else {
			fmt.Fprintln(w, "error: ya no existe")
		}
	case http.StatusNotFound:
		fmt.Fprintln(w, "error: no encontrado")
	case http.StatusConflict:
		fmt.Fprintln(w, "error: no se puede en el estado actual")
	case http.StatusBadRequest:
		fmt.Fprintln(w, "error: el servidor rechazó los datos")
	default:
		fmt.Fprintf(w, "error: el servidor respondió %d %s\n", ae.Status, http.StatusText(ae.Status))
	}
	if ae.Message != "" {
		fmt.Fprintf(w, "  %s\n", ae.Message)
	}
	keys := make([]string, 0, len(ae.Fields)+len(ae.Suggestions))
	for k := range ae.Fields {
		keys = append(keys, k)
	}
	for k := range ae.Suggestions {
		if _, ok := ae.Fields[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		label := k
		if l, ok := fieldLabels[k]; ok {
			label = l
		}
		msg := ae.Fields[k]
		if msg == "" {
			msg = "valor inválido"
		}
		fmt.Fprintf(w, "  %s: %s\n", label, msg)
		if s := ae.Suggestions[k]; len(s) > 0 {
			fmt.Fprintf(w, "    sugerencias: %s\n", strings.Join(s, ", "))
		}
	}
	return exitErr
}

// transportError explains failures below HTTP: no server, timeout, bad answer.
func (a *app) transportError(err error, c *Client) {
	var ne net.Error
	var oe *net.OpError
	switch {
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		fmt.Fprintf(a.stderr, "error: caud en %s no respondió en %s (use --timeout para esperar más)\n", c.BaseURL, a.timeout)
	case errors.As(err, &oe):
		fmt.Fprintf(a.stderr, "error: no se pudo conectar con caud en %s: %v\n", c.BaseURL, oe.Err)
		fmt.Fprintln(a.stderr, "  ¿Está corriendo caud? Indique otro servidor con --server o CAU_SERVER.")
	case errors.Is(err, ErrBadAnswer):
		fmt.Fprintf(a.stderr, "error: respuesta inesperada de %s: %v\n", c.BaseURL, err)
	default:
		fmt.Fprintf(a.stderr, "error: %v\n", err)
	}
}
