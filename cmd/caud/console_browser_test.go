package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"golang.org/x/crypto/bcrypt"

	"github.com/ipn-cgsi/caud/channels"
	"github.com/ipn-cgsi/caud/channels/deadletter"
	"github.com/ipn-cgsi/caud/channels/imap"
	"github.com/ipn-cgsi/caud/channels/natsjs"
	"github.com/ipn-cgsi/caud/cmd/internal/headless"
	"github.com/ipn-cgsi/caud/triage"
	"github.com/ipn-cgsi/caud/triage/console/accounts"
)

// browser is one headless Chromium with a fresh profile, recording every JavaScript dialog (an
// alert() from hostile content would show up there) and saving a screenshot after each step.
type browser struct {
	t       testing.TB
	ctx     context.Context
	base    string
	shots   string
	n       int
	mu      sync.Mutex
	dialogs []string
}

func newBrowser(t testing.TB, base string) *browser {
	t.Helper()
	// A missing browser fails the test with what to install: the console's behaviour is only shown
	// in a real browser, so it is never skipped.
	path, err := headless.ExecPath()
	if err != nil {
		t.Fatalf("web console browser tests: %v", err)
	}
	ctx, stop := headless.NewContext(path, t.TempDir())
	b := &browser{t: t, ctx: ctx, base: base, shots: filepath.Join(t.TempDir(), "capturas")}
	if err := os.MkdirAll(b.shots, 0o755); err != nil {
		t.Fatal(err)
	}
	// The first Run starts the browser; its context must outlive the test's steps.
	if err := chromedp.Listen(ctx, func(ev any) {
		if d, ok := ev.(*page.EventJavascriptDialogOpening); ok {
			b.mu.Lock()
			b.dialogs = append(b.dialogs, d.Message)
			b.mu.Unlock()
			go func() {
				_ = chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
					_, err := cdp.Call(ctx, tg, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
					return err
				}))
			}()
		}
	}); err != nil {
		stop()
		t.Fatalf("start Chromium %s: %v", path, err)
	}
	t.Cleanup(func() {
		stop()
		t.Logf("screenshots in %s", b.shots)
	})
	return b
}

// step runs actions with a generous bound (a loaded machine is slow, never wrong) and saves a
// screenshot named after the step.
func (b *browser) step(name string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.shot(name + "-fallo")
		loc, _ := chromedp.Run(b.ctx, chromedp.Location())
		body, _ := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS("main")))
		b.t.Fatalf("step %q: %v\nat %s\npage text:\n%s", name, err, loc, body)
	}
	b.shot(name)
}

func (b *browser) shot(name string) {
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	buf, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	b.n++
	p := filepath.Join(b.shots, fmt.Sprintf("%02d-%s.png", b.n, name))
	if err := os.WriteFile(p, buf, 0o644); err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
	}
	if dir := os.Getenv("CAU_CONSOLE_SCREENSHOTS"); dir != "" {
		_ = os.WriteFile(filepath.Join(dir, name+".png"), buf, 0o644)
	}
}

func (b *browser) dialogsSeen() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.dialogs...)
}

// into runs an action that returns a value and stores it in out.
func into[T any](a chromedp.Action[T], out *T) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		v, err := a(ctx, t)
		if err == nil {
			*out = v
		}
		return chromedp.Void{}, err
	}
}

// text reads the trimmed text of the first visible element matching the CSS selector sel.
func text(sel string, out *string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		s, err := chromedp.Text(chromedp.CSS(sel), chromedp.NodeVisible)(ctx, t)
		*out = strings.TrimSpace(s)
		return chromedp.Void{}, err
	}
}

// waitJS waits until a JavaScript expression is true (bounded by the step's context). A page that
// navigates while it is polled (a form was just submitted) is polled again on the new page.
func waitJS(expr string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		for {
			_, err := chromedp.Poll[bool](expr, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(0))(ctx, t)
			if err == nil || ctx.Err() != nil || !navigating(err) {
				return chromedp.Void{}, err
			}
			select {
			case <-ctx.Done():
				return chromedp.Void{}, ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

// navigating reports the errors of a script evaluated while its page is replaced.
func navigating(err error) bool {
	msg := err.Error()
	for _, s := range []string{"navigated or closed", "context was destroyed", "Cannot find context", "No frame", "not attached"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// eval runs JavaScript and stores its result in out (nil: ignore it).
func eval[T any](js string, out *T) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		v, err := chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise)(ctx, t)
		if err == nil && out != nil {
			*out = v
		}
		return chromedp.Void{}, err
	}
}

func jsString(s string) string { b, _ := json.Marshal(s); return string(b) }

// textIs waits until the element's text (trimmed) equals want.
func textIs(sel, want string) chromedp.Action[chromedp.Void] {
	return waitJS(fmt.Sprintf(`(function(){var e=document.querySelector(%s);return !!e && e.textContent.trim()===%s})()`, jsString(sel), jsString(want)))
}

// textHas waits until the element's text contains want.
func textHas(sel, want string) chromedp.Action[chromedp.Void] {
	return waitJS(fmt.Sprintf(`(function(){var e=document.querySelector(%s);return !!e && e.textContent.indexOf(%s)>=0})()`, jsString(sel), jsString(want)))
}

// pathIs waits until the page's path is p.
func pathIs(p string) chromedp.Action[chromedp.Void] {
	return waitJS(fmt.Sprintf(`location.pathname===%s && document.readyState==="complete"`, jsString(p)))
}

func pathHas(prefix string) chromedp.Action[chromedp.Void] {
	return waitJS(fmt.Sprintf(`location.pathname.indexOf(%s)===0 && document.readyState==="complete"`, jsString(prefix)))
}

// consoleApp starts caud with a users file holding a supervisor and an agent.
func consoleApp(t testing.TB) (*App, string) {
	t.Helper()
	dir := t.TempDir()
	users := filepath.Join(dir, "users.yaml")
	f := &accounts.File{}
	for _, u := range []struct{ name, display, role string }{
		{"sofia", "Sofía Ramírez", accounts.RoleSupervisor}, {"ana", "Ana López", accounts.RoleAgente},
	} {
		// The lowest bcrypt cost keeps sign-ins fast in tests; caud's own hashes use accounts.Cost.
		h, err := bcrypt.GenerateFromPassword([]byte("contrasena-"+u.name), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		f.Users = append(f.Users, accounts.User{Name: u.name, Display: u.display, Role: u.role, Hash: string(h)})
	}
	if err := f.Save(users); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CAU_CONSOLE_USERS_FILE", users)
	return startApp(t)
}

// deskRequest files a phone request through the API and returns its id.
func deskRequest(t testing.TB, base, description string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"channel": "phone", "unit": "ESCOM", "role": "docente", "extension": "52034",
		"name": "Marta Gómez", "email": "mgomez@ipn.mx", "description": description})
	code, b := call(t, "POST", base+"/api/v1/requests", string(body))
	if code != http.StatusCreated {
		t.Fatalf("desk request: %d %s", code, b)
	}
	var r struct{ ID string }
	_ = json.Unmarshal(b, &r)
	return r.ID
}

// waitState polls the API until request id is in state (and queue, when given).
func waitState(t testing.TB, base, id, state, queue string) view {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var v view
	for {
		code, b := call(t, "GET", base+"/api/v1/requests/"+id, "")
		if code == http.StatusOK {
			v = view{}
			_ = json.Unmarshal(b, &v)
			if v.State == state && (queue == "" || v.Queue == queue) {
				return v
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("request %s: want state %s queue %q, have %+v", id, state, queue, v)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// mailRequest ingests a raw mail the way the IMAP channel does (normalize, archive the original and
// the attachments, publish) and returns the request id.
func mailRequest(t *testing.T, app *App, raw []byte) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	m, err := imap.Normalize(bytes.NewReader(raw), func(name, ct string, r io.Reader) (string, error) {
		b, _ := io.ReadAll(r)
		sum := sha256.Sum256(b)
		key := "att/" + hex.EncodeToString(sum[:])
		if _, err := app.h.Originals.PutBytes(ctx, key, b); err != nil {
			return "", err
		}
		return key, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	req := &channels.Request{
		ID: channels.NewIDs().New(now), Channel: channels.MediumEmail, ReceivedAt: now,
		Source:    channels.Source{Mailbox: "cau@ipn.mx", Folder: "INBOX", MessageID: m.MessageID},
		Requester: channels.Requester{Name: m.FromName, Email: m.FromEmail},
		Subject:   m.Subject, Text: m.Body,
	}
	for _, a := range m.Attachments {
		req.Attachments = append(req.Attachments, channels.Attachment{Name: a.Name, ContentType: a.ContentType, Size: a.Size, SHA256: a.SHA256, Object: a.Object})
	}
	if req.Text == "" && req.Subject == "" && len(req.Attachments) == 0 {
		req.Text = "(vacío)"
	}
	if _, err := app.sink.Publish(ctx, channels.Submission{
		Request: req, Subject: channels.SubjectEmailCAU, MsgID: "test:" + req.ID, Source: "imap://cau@ipn.mx/INBOX",
		Original: raw, OriginalType: "message/rfc822",
	}); err != nil {
		t.Fatal(err)
	}
	return req.ID
}

// memoRequest publishes a scanned memo the way the memo channel does (its OCR text stands in a
// fixed sentence) and returns the request id.
func memoRequest(t testing.TB, app *App, raw []byte) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	now := time.Now().UTC()
	sum := sha256.Sum256(raw)
	req := &channels.Request{
		ID: channels.NewIDs().New(now), Channel: channels.MediumMemo, ReceivedAt: now,
		Source: channels.Source{File: "oficio.pdf"}, Subject: "Solicitud de cuenta de correo",
		Text: "Solicito la creación de una cuenta de correo institucional para personal de nuevo ingreso.",
		Memo: &channels.Memo{Pages: 1, Method: "ocr"},
	}
	if _, err := app.sink.Publish(ctx, channels.Submission{
		Request: req, Subject: channels.SubjectMemo, MsgID: "memo:" + hex.EncodeToString(sum[:]), Source: "file://spool/oficio",
		Original: raw, OriginalType: http.DetectContentType(raw),
	}); err != nil {
		t.Fatal(err)
	}
	return req.ID
}

func signIn(b *browser, user, password, label string) {
	b.t.Helper()
	b.step("entrar-"+user,
		chromedp.Navigate(b.base+"/tablero"),
		pathIs("/entrar"),
		chromedp.WaitVisible(chromedp.ID("usuario")),
		chromedp.SendKeys(chromedp.ID("usuario"), user),
		chromedp.SendKeys(chromedp.ID("contrasena"), password),
		chromedp.Click(chromedp.ID("entrar")),
		pathIs("/tablero"),
		textHas("#usuario-actual", label),
	)
}

func signOut(b *browser) {
	b.t.Helper()
	b.step("salir",
		chromedp.Click(chromedp.ID("salir")),
		pathIs("/entrar"),
		textHas("#aviso", "Sesión cerrada"),
		// The session is gone on the server, not only in this browser's cookie jar.
		chromedp.Navigate(b.base+"/tablero"),
		pathIs("/entrar"),
	)
}

// navigateUntil loads url again until the JavaScript condition holds on it: for pages built from
// indexes that follow the streams (search, history), bounded by the step's context.
func navigateUntil(url, cond string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		for {
			if _, err := chromedp.Navigate(url)(ctx, t); err != nil {
				return chromedp.Void{}, err
			}
			ok, err := chromedp.Evaluate[bool](cond)(ctx, t)
			if err == nil && ok {
				return chromedp.Void{}, nil
			}
			select {
			case <-ctx.Done():
				return chromedp.Void{}, fmt.Errorf("%s never showed %s: %w", url, cond, ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// setSelect chooses an option of a <select> the way a person does (the change event fires).
func setSelect(sel, value string) chromedp.Action[chromedp.Void] {
	return eval[string](fmt.Sprintf(`(function(){var e=document.querySelector(%s);e.value=%s;e.dispatchEvent(new Event("change",{bubbles:true}));e.dispatchEvent(new Event("input",{bubbles:true}));return e.value})()`,
		jsString(sel), jsString(value)), nil)
}

// fetchInPage fetches a console URL with the page's session and returns status, headers and body.
type fetched struct {
	Status  int               `json:"status"`
	Headers map[string]string `json:"headers"`
	Body    string            `json:"body"`
}

func fetchInPage(path string, out *fetched) chromedp.Action[chromedp.Void] {
	return eval(fmt.Sprintf(`fetch(%s,{credentials:"same-origin"}).then(function(r){var h={};r.headers.forEach(function(v,k){h[k]=v});return r.text().then(function(t){return {status:r.status,headers:h,body:t}})})`, jsString(path)), out)
}

func TestConsoleInBrowser(t *testing.T) {
	app, base := consoleApp(t)
	eng := app.catalog.Engine()
	correo := "No puedo entrar a mi correo institucional, me marca contraseña incorrecta desde ayer"
	wifi := "La red inalámbrica no funciona en el edificio, no conecta a la wifi desde la mañana"
	dc, dw := eng.Decide(triage.Input{Text: correo}), eng.Decide(triage.Input{Text: wifi})
	if dc.Outcome != triage.OutcomeSAI || dw.Outcome != triage.OutcomeSAI || dc.Service.ID == dw.Service.ID || len(dc.Tests) == 0 {
		t.Fatalf("the catalog no longer tells these two apart as sai fallas with tests: %+v / %+v", dc, dw)
	}
	first := deskRequest(t, base, correo)
	waitState(t, base, first, "queued", triage.OutcomeSAI)

	b := newBrowser(t, base)
	b.step("entrar-rechazado",
		chromedp.Navigate(base+"/"),
		pathIs("/entrar"),
		chromedp.WaitVisible(chromedp.ID("usuario")),
		chromedp.SendKeys(chromedp.ID("usuario"), "ana"),
		chromedp.SendKeys(chromedp.ID("contrasena"), "no-es-la-contrasena"),
		chromedp.Click(chromedp.ID("entrar")),
		textHas(".error-campo", "Usuario o contraseña incorrectos"),
	)
	signIn(b, "ana", "contrasena-ana", "Ana López")

	saiPending := `tr[data-cola="sai"] [data-campo="pending"]`
	b.step("tablero", textIs("#en-vivo", "En vivo."), textIs(saiPending, "1"))
	second := deskRequest(t, base, wifi)
	b.step("tablero-en-vivo", textIs(saiPending, "2")) // pushed over SSE, no reload

	// Take the oldest sai item, tick its tests, try to finish without a folio, then with one.
	var unit, service string
	var boxes int
	b.step("atencion",
		chromedp.Click(chromedp.ID("tomar-sai")),
		pathHas("/atencion/"),
		text("#sol-unidad", &unit),
		text("#servicio", &service),
		eval(`document.querySelectorAll('input[name="prueba"]').length`, &boxes),
		chromedp.WaitVisible(chromedp.ID("restante")),
	)
	if unit != "ESCOM" || !strings.HasPrefix(service, dc.Service.Name) || boxes != len(dc.Tests) {
		t.Fatalf("item view: unit %q service %q tests %d; want ESCOM, %q, %d", unit, service, boxes, dc.Service.Name, len(dc.Tests))
	}
	ticks := []chromedp.Action[chromedp.Void]{}
	for i := range dc.Tests {
		ticks = append(ticks, chromedp.Click(chromedp.ID(fmt.Sprintf("prueba-%d", i))))
	}
	ticks = append(ticks, textIs("#pruebas-cuenta", fmt.Sprintf("%d de %d pruebas realizadas", len(dc.Tests), len(dc.Tests))))
	b.step("pruebas", ticks...)
	var stillTicked bool
	b.step("terminar-sin-folio",
		chromedp.Click(chromedp.ID("terminar")),
		textHas(".error-campo", "folio"),
		eval(`document.getElementById("prueba-0").checked`, &stillTicked),
	)
	if !stillTicked {
		t.Error("a refused form lost the ticked tests")
	}
	b.step("terminar",
		chromedp.SendKeys(chromedp.ID("folio"), "SAI-2026-000123"),
		chromedp.Click(chromedp.ID("terminar")),
		pathIs("/tablero"),
		textHas("#aviso", "Elemento terminado"),
	)
	if v := waitState(t, base, first, "done", ""); v.Folio != "SAI-2026-000123" {
		t.Errorf("done with folio %q", v.Folio)
	}

	// Phone intake: the live preview follows the description as it changes.
	b.step("telefono",
		chromedp.Navigate(base+"/telefono"),
		textHas(".guion", "¿De qué escuela, centro o unidad se comunica?"),
		chromedp.WaitVisible(chromedp.ID("vista-vacia")),
		chromedp.SendKeys(chromedp.ID("nombre"), "Jorge Pérez"),
		chromedp.SendKeys(chromedp.ID("unidad"), "ESCOM"),
		setSelect("#tipo_usuario", "docente"),
		chromedp.SendKeys(chromedp.ID("extension"), "52034"),
		chromedp.SendKeys(chromedp.ID("descripcion"), correo),
		textIs("#vista-servicio", dc.Service.Name),
		textIs("#vista-tipo", "Falla"),
		textHas("#vista-pruebas", dc.Tests[0]),
	)
	b.step("telefono-vista-cambia",
		eval[bool](`document.getElementById("descripcion").value=""; true`, nil),
		chromedp.SendKeys(chromedp.ID("descripcion"), wifi),
		textIs("#vista-servicio", dw.Service.Name),
		textHas("#vista-pruebas", dw.Tests[0]),
	)
	var phoneID string
	b.step("telefono-registrada",
		// A double click sends the form once (and the idempotency key would absorb a second).
		eval[bool](`document.getElementById("registrar").click(); document.getElementById("registrar").click(); true`, nil),
		pathHas("/solicitudes/"),
		textHas("#aviso", "Solicitud registrada"),
		text("#solicitud-id", &phoneID),
	)
	pv := waitState(t, base, phoneID, "queued", triage.OutcomeSAI)
	if pv.Request.Requester.Unit != "ESCOM" || pv.Request.Requester.Role != "docente" || pv.Request.Requester.Extension != "52034" {
		t.Errorf("phone request requester %+v", pv.Request.Requester)
	}
	_ = second

	// Reroute the next sai item (the wifi request) to no_competente, target from the catalog.
	target := eng.Catalog().Orientations()[0]
	b.step("reencauzar-form",
		chromedp.Navigate(base+"/tablero"),
		chromedp.Click(chromedp.ID("tomar-sai")),
		pathHas("/atencion/"),
		setSelect("#destino", triage.OutcomeNoCompetente),
		chromedp.WaitVisible(chromedp.ID("orientacion-re")),
		chromedp.WaitNotVisible(chromedp.ID("servicio-re")),
		setSelect("#orientacion-re", target.Target),
		chromedp.Click(chromedp.ID("reencauzar")),
		textHas(".error-campo", "Explique brevemente"),
	)
	b.step("reencauzado",
		chromedp.SendKeys(chromedp.ID("nota"), "No es de la CGSI: lo atiende otra instancia"),
		chromedp.Click(chromedp.ID("reencauzar")),
		pathIs("/tablero"),
		textHas("#aviso", "reencauzado"),
	)
	if v := waitState(t, base, second, "queued", triage.OutcomeNoCompetente); v.Triage == nil || v.Triage.Orientation == nil || v.Triage.Orientation.Target != target.Target {
		t.Errorf("rerouted triage %+v", v.Triage)
	}

	// Find the finished request by its SAI folio with the search form, and open its history.
	b.step("buscar",
		navigateUntil(base+"/buscar?folio=SAI-2026-000123", `!!document.querySelector("a.resultado")`),
		chromedp.Navigate(base+"/buscar"),
		chromedp.SendKeys(chromedp.ID("b-folio"), "SAI-2026-000123"),
		setSelect("#b-state", "done"),
		chromedp.Click(chromedp.ID("buscar")),
		textHas("#resultados", "Terminada"),
		waitJS(`document.querySelectorAll("#resultados a.resultado").length===1`),
		chromedp.Click(chromedp.CSS("#resultados a.resultado")),
		pathIs("/solicitudes/"+first),
	)
	b.step("historial",
		navigateUntil(base+"/solicitudes/"+first, `(document.getElementById("historial")||{textContent:""}).textContent.indexOf("SAI-2026-000123")>=0`),
		textHas("#historial", "Recibida"),
		textHas("#historial", "Tomada"),
		textHas("#historial", "ana"),
	)
	b.step("historial-reencauzada",
		navigateUntil(base+"/solicitudes/"+second, `(document.getElementById("historial")||{textContent:""}).textContent.indexOf("Reencauzada")>=0`),
		textHas("#historial", "No es de la CGSI"),
	)

	// A stale lease gets a clear message, not an error dump.
	code, body := call(t, "POST", base+"/api/v1/queues/sai/claim", `{"agent":"ana"}`)
	if code != http.StatusOK {
		t.Fatalf("claim: %d %s", code, body)
	}
	var cl struct{ Lease string }
	_ = json.Unmarshal(body, &cl)
	// The board lists it among the agent's open leases, so closing the tab never loses it.
	b.step("mis-asignaciones",
		navigateUntil(base+"/tablero", `!!document.querySelector('#mis-asignaciones a[href="/atencion/`+cl.Lease+`"]')`),
		chromedp.Click(chromedp.CSS(`#mis-asignaciones a[href="/atencion/`+cl.Lease+`"]`)),
		pathIs("/atencion/"+cl.Lease),
		chromedp.WaitVisible(chromedp.ID("terminar")),
	)
	if code, body := call(t, "POST", base+"/api/v1/leases/"+cl.Lease+"/release", `{}`); code != http.StatusOK {
		t.Fatalf("release: %d %s", code, body)
	}
	// (released meanwhile, as from another window or by cauctl)
	b.step("asignacion-cerrada",
		chromedp.SendKeys(chromedp.ID("folio"), "SAI-1"),
		chromedp.Click(chromedp.ID("terminar")),
		textHas("#error", "Esta asignación ya se cerró"),
	)

	// An agent cannot open the supervisor page.
	b.step("agente-sin-supervision", chromedp.Navigate(base+"/supervision"), textHas("#error", "solo para supervisores"))
	signOut(b)

	// A dead letter for the supervisor to replay once its cause is fixed.
	now := time.Now().UTC()
	lost := channels.Request{ID: channels.NewIDs().New(now), Channel: channels.MediumPhone, ReceivedAt: now,
		Text: "No puedo entrar a mi correo institucional, me marca contraseña incorrecta"}
	body, _ = json.Marshal(lost)
	letter := deadletter.NewMsg("triage", "dlq:test:"+lost.ID, "catálogo en mantenimiento (prueba)", body)
	letter.Header.Set(deadletter.HeaderOrigSubject, natsjs.SubjectInboundPrefix+channels.SubjectDesk)
	letter.Header.Set("ce-id", lost.ID)
	dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
	if err := deadletter.Publish(dctx, app.h.JS, letter); err != nil {
		t.Fatal(err)
	}
	dcancel()

	signIn(b, "sofia", "contrasena-sofia", "Sofía Ramírez")
	b.step("supervision",
		chromedp.Navigate(base+"/supervision"),
		textIs("#catalogo-version", eng.Catalog().Version()),
		textHas("#correcciones", "ana"),
		textHas("#verificaciones", "nats"),
		textHas("#cartas", "catálogo en mantenimiento (prueba)"),
	)
	b.step("carta-reenviada",
		chromedp.Click(chromedp.CSS("#cartas button")),
		pathIs("/supervision"),
		textHas("#aviso", "Carta reenviada"),
		chromedp.WaitVisible(chromedp.ID("sin-cartas")),
	)
	waitState(t, base, lost.ID, "queued", triage.OutcomeSAI)
	signOut(b)
	if d := b.dialogsSeen(); len(d) > 0 {
		t.Errorf("JavaScript dialogs opened: %q", d)
	}
}

// mailDir holds the hostile mails: the HTML cases of the mail-edge corpus and our own; the console's
// sanitizer fuzz test seeds from the same files.
const mailDir = "../../triage/console/testdata/mail/"

// TestHostileMailInBrowser opens hostile HTML mails (the mail-edge corpus cases that are HTML, and
// our own collection of script, event-handler, remote-content and encoding tricks) in the item view
// and checks in the browser that nothing ran and nothing was fetched from outside.
func TestHostileMailInBrowser(t *testing.T) {
	var canaryHits atomic.Int64
	canary := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		canaryHits.Add(1)
		t.Logf("remote content fetched: %s", r.URL)
	}))
	defer canary.Close()
	host := strings.TrimPrefix(canary.URL, "http://")

	app, base := consoleApp(t)
	type mailCase struct{ file, mustContain string }
	cases := []mailCase{
		{mailDir + "02-html-only-outlook.eml", "impresora"},
		{mailDir + "07-missing-final-boundary.eml", "videoconferencia"},
		{mailDir + "01-script-everywhere.eml", "correo institucional"},
		{mailDir + "02-encoded-tricks.eml", "inalámbrica"},
	}
	ids := make([]string, len(cases))
	for i, c := range cases {
		raw, err := os.ReadFile(c.file)
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = mailRequest(t, app, bytes.ReplaceAll(raw, []byte("CANARY"), []byte(host)))
	}
	b := newBrowser(t, base)
	signIn(b, "ana", "contrasena-ana", "Ana López")
	for i, c := range cases {
		waitState(t, base, ids[i], "queued", "")
		var title string
		var doc, att fetched
		name := strings.TrimSuffix(filepath.Base(c.file), ".eml")
		b.step("correo-"+name,
			chromedp.Navigate(base+"/solicitudes/"+ids[i]),
			chromedp.WaitVisible(chromedp.ID("correo-html")),
			waitJS(`document.readyState==="complete"`),
			into(chromedp.Title(), &title),
			fetchInPage("/solicitudes/"+ids[i]+"/original", &doc),
		)
		if strings.Contains(title, "PWNED") {
			t.Errorf("%s: a script changed the page title", c.file)
		}
		_, body, _ := strings.Cut(doc.Body, "<body>")
		low := strings.ToLower(body)
		// Links may point outside (they open in a new tab with no referrer); nothing may load from there.
		for _, bad := range []string{"<script", "onerror", "onload", "ontoggle", "javascript:", "<iframe", "<object", "<embed", "<form", "<base", "<meta", "<link", "<style", "<svg",
			"src=\"http", "srcset", "url(", "<video", "<audio"} {
			if strings.Contains(low, strings.ToLower(bad)) {
				t.Errorf("%s: sanitized HTML still has %q", c.file, bad)
			}
		}
		if !strings.Contains(doc.Body, c.mustContain) {
			t.Errorf("%s: sanitized HTML lost the text %q:\n%s", c.file, c.mustContain, doc.Body)
		}
		if csp := doc.Headers["content-security-policy"]; !strings.Contains(csp, "sandbox") || !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("%s: original served with CSP %q", c.file, csp)
		}
		if strings.HasPrefix(name, "01-") {
			var subject string
			b.step("adjunto-hostil",
				text("#asunto", &subject),
				fetchInPage("/solicitudes/"+ids[i]+"/adjuntos/0", &att),
			)
			if !strings.Contains(subject, "<img src=x onerror") {
				t.Errorf("hostile subject not shown as text: %q", subject)
			}
			if cd := att.Headers["content-disposition"]; !strings.HasPrefix(cd, "attachment;") || att.Headers["content-type"] != "application/octet-stream" {
				t.Errorf("attachment served as %q / %q", cd, att.Headers["content-type"])
			}
		}
	}
	// Scanned memos: the page is shown as an image (a PDF page rendered by poppler, a PNG as is).
	for _, f := range []string{"testdata/memo/D012.pdf", "testdata/memo/D003.png"} {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		id := memoRequest(t, app, raw)
		waitState(t, base, id, "queued", "")
		b.step("oficio-"+strings.TrimSuffix(filepath.Base(f), filepath.Ext(f)),
			chromedp.Navigate(base+"/solicitudes/"+id),
			waitJS(`(function(){var i=document.querySelector("img.escaneo");return !!i && i.complete && i.naturalWidth>300})()`),
		)
	}
	if d := b.dialogsSeen(); len(d) > 0 {
		t.Errorf("hostile mail ran script: dialogs %q", d)
	}
	if n := canaryHits.Load(); n > 0 {
		t.Errorf("opening hostile mail fetched %d remote resources", n)
	}
}
