// Package console is the help desk's web console, in Spanish (Mexico), served by caud on its one
// listener at / and below: sign-in with per-person accounts, the queue board (live over SSE), the
// item view with the original and the lease actions, phone and in-person intake following the
// Script de atención (FO-CAU-01-01) with a live triage preview, request search and history, and the
// supervisor page.
//
// It is server-rendered html/template with embedded templates and one small script (no build
// step). It calls the same Go services as the HTTP API (queues, desk intake, triage engine, dead
// letters), never the API over HTTP. Every page is sent with a strict Content-Security-Policy (no
// inline script or style), every form carries a per-session CSRF token, and cross-origin unsafe
// requests are refused.
package console

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/deadletter"
	"github.com/ipn-cgsi/caud/channels/desk"
	"github.com/ipn-cgsi/caud/config"
	"github.com/ipn-cgsi/caud/triage"
	"github.com/ipn-cgsi/caud/triage/archive"
	"github.com/ipn-cgsi/caud/triage/audit"
	"github.com/ipn-cgsi/caud/triage/console/accounts"
	"github.com/ipn-cgsi/caud/triage/queue"
	"github.com/ipn-cgsi/caud/triage/search"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Check is one readiness check as the supervisor page shows it.
type Check struct {
	Name   string
	OK     bool
	Detail string
	Since  string
}

// SpoolFailure is a memo file that could not be processed, with the reason the memo channel wrote.
type SpoolFailure struct {
	File   string
	Reason string
	At     time.Time
}

// CatalogStatus is the catalog in force and the last refused reload.
type CatalogStatus struct {
	Version   string
	File      string
	LastError string
	LastAt    time.Time
}

// Options wires the console to caud's services. Users, Sessions, Engine and Queues are required;
// the others enable their part of the console when set.
type Options struct {
	Users    *accounts.Directory
	Sessions *Sessions
	// Engine returns the triage engine in force (its catalog lists services and targets).
	Engine func() *triage.Engine
	Queues *queue.Queues
	// Desk is the phone / in-person intake; nil hides the intake page.
	Desk *desk.Desk
	// Units feeds the unit autocomplete of the intake form.
	Units *config.Units
	// Archive reads originals and attachments.
	Archive *archive.Archive
	// Search finds requests (search page); nil hides it.
	Search *search.Index
	// Trail is the requests' audit history; nil hides the history.
	Trail *audit.Trail
	// DeadLetters lists and replays CAU_DLQ (supervisor page).
	DeadLetters *deadletter.Letters
	// Ready runs the readiness checks (supervisor page).
	Ready func(context.Context) []Check
	// SpoolFailures lists the memo spool's failed files (supervisor page).
	SpoolFailures func() ([]SpoolFailure, error)
	// Catalog reports the catalog in force and the last reload error (supervisor page).
	Catalog func() CatalogStatus
	// SecureCookies marks cookies Secure even on plain HTTP, for TLS ended at a proxy; over TLS
	// they are always Secure.
	SecureCookies bool
	// PollInterval is how often the board's queue depths are read for SSE subscribers (default 1 s;
	// one read serves every connected agent).
	PollInterval time.Duration
	// LoginEvery and LoginBurst rate-limit sign-in attempts per address and per name (defaults 12 s
	// and 5).
	LoginEvery time.Duration
	LoginBurst int
	Logger     *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Console serves the web console. Create it with New, start its background work with Run, and add
// its routes with Register.
type Console struct {
	o     Options
	log   *slog.Logger
	pages map[string]*template.Template
	limit *loginLimiter
	hub   *hub
	loc   *time.Location
	// scanSlots bounds concurrent PDF page renders (each a pdftoppm process) to 2.
	scanSlots chan struct{}
}

// New checks the options and parses the templates.
func New(o Options) (*Console, error) {
	switch {
	case o.Users == nil:
		return nil, errors.New("console: no users directory")
	case o.Sessions == nil:
		return nil, errors.New("console: no session store")
	case o.Engine == nil:
		return nil, errors.New("console: no triage engine")
	case o.Queues == nil:
		return nil, errors.New("console: no queues")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.PollInterval <= 0 {
		o.PollInterval = time.Second
	}
	log := channels.OrDiscard(o.Logger)
	loc, err := time.LoadLocation("America/Mexico_City")
	if err != nil {
		loc = time.FixedZone("CST", -6*3600)
	}
	c := &Console{o: o, log: log, limit: newLoginLimiter(o.LoginEvery, o.LoginBurst), loc: loc, scanSlots: make(chan struct{}, 2)}
	c.hub = newHub(c.statsJSON, o.PollInterval, log)
	if err := c.parseTemplates(); err != nil {
		return nil, err
	}
	return c, nil
}

// Run polls the queue depths for the board's live updates until ctx ends.
func (c *Console) Run(ctx context.Context) error { return c.hub.run(ctx) }

func (c *Console) parseTemplates() error {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return err
	}
	c.pages = map[string]*template.Template{}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if base == "layout" || strings.HasPrefix(base, "_") {
			continue
		}
		t, err := template.New(base).Funcs(c.funcs()).ParseFS(templateFS, "templates/layout.html", "templates/_*.html", n)
		if err != nil {
			return fmt.Errorf("console template %s: %w", base, err)
		}
		c.pages[base] = t
	}
	return nil
}

// csp is the Content-Security-Policy of every console page: scripts, styles and images only from
// caud itself, nothing inline, no plugins, no framing by others, forms only to caud.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"frame-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'self'; object-src 'none'"

func securityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "SAMEORIGIN")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
	h.Set("Cache-Control", "no-store")
}

// Register adds the console's routes to mux.
func (c *Console) Register(mux *http.ServeMux) {
	cop := http.NewCrossOriginProtection()
	static, _ := fs.Sub(staticFS, "static")
	fileServer := http.StripPrefix("/static/", http.FileServerFS(static))
	mux.Handle("GET /static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "public, max-age=300")
		fileServer.ServeHTTP(w, r)
	}))
	pub := func(pattern string, f http.HandlerFunc) { mux.Handle(pattern, cop.Handler(c.public(f))) }
	agent := func(pattern string, f handler) { mux.Handle(pattern, cop.Handler(c.signedIn(false, f))) }
	super := func(pattern string, f handler) { mux.Handle(pattern, cop.Handler(c.signedIn(true, f))) }

	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/tablero", http.StatusSeeOther)
	})
	pub("GET /entrar", c.loginPage)
	pub("POST /entrar", c.login)
	agent("POST /salir", c.logout)
	agent("GET /tablero", c.board)
	agent("GET /tablero/eventos", c.boardEvents)
	agent("POST /tomar/{queue}", c.claim)
	agent("GET /atencion/{lease}", c.item)
	agent("POST /atencion/{lease}/terminar", c.done)
	agent("POST /atencion/{lease}/liberar", c.release)
	agent("POST /atencion/{lease}/extender", c.extend)
	agent("POST /atencion/{lease}/reencauzar", c.reroute)
	agent("GET /solicitudes/{id}", c.request)
	agent("GET /solicitudes/{id}/original", c.originalHTML)
	agent("GET /solicitudes/{id}/original/archivo", c.originalFile)
	agent("GET /solicitudes/{id}/original/pagina", c.scanPage)
	agent("GET /solicitudes/{id}/adjuntos/{n}", c.attachment)
	if c.o.Desk != nil {
		agent("GET /telefono", c.intakePage)
		agent("POST /telefono", c.intake)
		agent("POST /telefono/vista-previa", c.preview)
	}
	if c.o.Search != nil {
		agent("GET /buscar", c.find)
	}
	super("GET /supervision", c.supervisor)
	super("POST /supervision/cartas/{seq}/reenviar", c.replay)
}

// handler is a console handler for a signed-in user.
type handler func(w http.ResponseWriter, r *http.Request, s *req)

// req is what a handler knows of the signed-in user.
type req struct {
	User    accounts.User
	Session Session
	token   string
}

func (c *Console) public(f http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		securityHeaders(w.Header())
		f(w, r)
	})
}

// signedIn requires a session (and the supervisor role when super), and a matching CSRF token on
// every unsafe method. A browser without a session is sent to the sign-in page; a script call gets
// 401.
func (c *Console) signedIn(super bool, f handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		securityHeaders(w.Header())
		s, err := c.session(r)
		if err != nil {
			if errors.Is(err, ErrNoSession) || errors.Is(err, accounts.ErrUnknownUser) || errors.Is(err, accounts.ErrDisabled) {
				c.setCookie(w, r, sessionCookie, "", -1)
				if r.Method == http.MethodGet && r.Header.Get("Accept") != "text/event-stream" {
					http.Redirect(w, r, "/entrar?siguiente="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
					return
				}
				http.Error(w, "Su sesión terminó; vuelva a iniciar sesión.", http.StatusUnauthorized)
				return
			}
			c.log.Error("console session", "err", err)
			c.fail(w, r, nil, http.StatusServiceUnavailable, "No se pudo verificar la sesión; intente de nuevo en unos segundos.")
			return
		}
		if super && !s.User.IsSupervisor() {
			c.fail(w, r, s, http.StatusForbidden, "Esta página es solo para supervisores.")
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			tok := r.Header.Get("X-CSRF-Token")
			if tok == "" {
				tok = r.PostFormValue("csrf")
			}
			if !sameToken(tok, s.Session.CSRF) {
				c.fail(w, r, s, http.StatusForbidden, "El formulario caducó o no es válido; recargue la página e intente de nuevo.")
				return
			}
		}
		// The audit trail names the signed-in person as who acted.
		f(w, r.WithContext(audit.WithActor(r.Context(), s.User.Name)), s)
	})
}

func (c *Console) session(r *http.Request) (*req, error) {
	ck, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil, ErrNoSession
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	sess, err := c.o.Sessions.Get(ctx, ck.Value)
	if err != nil {
		return nil, err
	}
	u, err := c.o.Users.Lookup(sess.User)
	if err != nil {
		_ = c.o.Sessions.Delete(ctx, ck.Value)
		return nil, err
	}
	return &req{User: u, Session: sess, token: ck.Value}, nil
}

// page is what every template receives.
type page struct {
	Title  string
	Nav    string
	User   *accounts.User
	CSRF   string
	Notice string
	Error  string
	Data   any
}

func (c *Console) render(w http.ResponseWriter, r *http.Request, s *req, status int, name string, p page) {
	t, ok := c.pages[name]
	if !ok {
		panic("console: no template " + name)
	}
	if s != nil {
		p.User, p.CSRF = &s.User, s.Session.CSRF
	}
	if p.Notice == "" {
		p.Notice = notices[r.URL.Query().Get("aviso")]
	}
	var b strings.Builder
	if err := t.ExecuteTemplate(&b, "layout", p); err != nil {
		c.log.Error("console render", "page", name, "err", err)
		http.Error(w, "Error al mostrar la página.", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(b.String()))
}

// fail shows an error page with a Spanish message.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, s *req, status int, msg string) {
	c.render(w, r, s, status, "error", page{Title: "Aviso", Error: msg})
}

// notices are the fixed messages a redirect can ask for with ?aviso=; nothing from the URL is shown
// as text.
var notices = map[string]string{
	"terminado":   "Elemento terminado. Puede tomar el siguiente.",
	"liberado":    "Elemento liberado: volvió a su cola.",
	"reencauzado": "Elemento reencauzado a la cola indicada.",
	"vacia":       "La cola está vacía: no hay elementos pendientes.",
	"registrada":  "Solicitud registrada.",
	"salida":      "Sesión cerrada.",
	"reenviada":   "Carta reenviada a su etapa.",
	"extendida":   "Asignación extendida.",
	"vencida":     "La asignación venció o ya fue cerrada; el elemento volvió a su cola. Tome el siguiente desde el tablero.",
}

func ctxTimeout(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), 10*time.Second)
}
