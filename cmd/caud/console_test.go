package main

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ipn-cgsi/caud/triage/console/accounts"
)

// agentClient is a cookie-keeping HTTP client that does not follow redirects.
type agentClient struct {
	t    testing.TB
	base string
	c    *http.Client
}

func newAgentClient(t testing.TB, base string) *agentClient {
	jar, _ := cookiejar.New(nil)
	return &agentClient{t: t, base: base, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

func (a *agentClient) do(method, path string, form url.Values, hdr map[string]string) (*http.Response, string) {
	a.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, a.base+path, body)
	if err != nil {
		a.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := a.c.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

var csrfRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t testing.TB, page string) string {
	t.Helper()
	m := csrfRe.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no csrf token in page:\n%s", page)
	}
	return m[1]
}

func (a *agentClient) signIn(user, password string) (*http.Response, string) {
	_, page := a.do("GET", "/entrar", nil, nil)
	return a.do("POST", "/entrar", url.Values{"csrf": {csrfOf(a.t, page)}, "usuario": {user}, "contrasena": {password}}, nil)
}

func TestConsoleSignInSessionAndForms(t *testing.T) {
	_, base := consoleApp(t)
	a := newAgentClient(t, base)

	resp, _ := a.do("GET", "/", nil, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/tablero" {
		t.Fatalf("GET /: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, _ = a.do("GET", "/tablero", nil, nil)
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/entrar?siguiente=") {
		t.Fatalf("board without session: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, page := a.do("GET", "/entrar", nil, nil)
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") || !strings.Contains(csp, "frame-ancestors") {
		t.Errorf("CSP %q", csp)
	}
	if strings.Contains(page, "<script>") || strings.Contains(page, " style=") || strings.Contains(page, " onclick=") {
		t.Error("the sign-in page has inline script or style")
	}

	// The sign-in form without its token is refused.
	resp, _ = newAgentClient(t, base).do("POST", "/entrar", url.Values{"usuario": {"ana"}, "contrasena": {"contrasena-ana"}}, nil)
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("sign-in without token: %d", resp.StatusCode)
	}

	resp, _ = a.signIn("ana", "contrasena-ana")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/tablero" {
		t.Fatalf("sign-in: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	var sess *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "caud_sesion" {
			sess = c
		}
	}
	if sess == nil || !sess.HttpOnly || sess.SameSite != http.SameSiteStrictMode || sess.Secure || sess.Path != "/" {
		t.Fatalf("session cookie %+v", sess)
	}
	resp, page = a.do("GET", "/tablero", nil, nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, "Tomar siguiente") {
		t.Fatalf("board: %d", resp.StatusCode)
	}
	token := csrfOf(t, page)

	// Every form needs the session's token; a cross-site post is refused whatever it carries.
	if resp, _ := a.do("POST", "/tomar/sai", url.Values{}, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("claim without token: %d", resp.StatusCode)
	}
	if resp, _ := a.do("POST", "/tomar/sai", url.Values{"csrf": {"x" + token[1:]}}, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("claim with a wrong token: %d", resp.StatusCode)
	}
	if resp, _ := a.do("POST", "/tomar/sai", url.Values{"csrf": {token}}, map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://malo.example"}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site claim: %d", resp.StatusCode)
	}
	if resp, _ := a.do("POST", "/tomar/sai", url.Values{"csrf": {token}}, nil); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/tablero?aviso=vacia" {
		t.Errorf("claim on an empty queue: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	// An agent is not a supervisor, even by posting directly.
	if resp, _ := a.do("POST", "/supervision/cartas/1/reenviar", url.Values{"csrf": {token}}, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("agent replay: %d", resp.StatusCode)
	}

	// Intake: errors in Spanish by their fields; the same form sent twice makes one request.
	_, page = a.do("GET", "/telefono", nil, nil)
	key := regexp.MustCompile(`name="clave" value="([^"]+)"`).FindStringSubmatch(page)[1]
	form := url.Values{"csrf": {token}, "clave": {key}, "medio": {"phone"}, "unidad": {"ESCON"}, "extension": {"12"}, "correo": {"no es correo"}, "descripcion": {""}}
	resp, page = a.do("POST", "/telefono", form, nil)
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad intake: %d", resp.StatusCode)
	}
	for _, want := range []string{"La descripción del problema es obligatoria.", "¿Quiso decir ESCOM", "La extensión debe tener de 4 a 6 dígitos", "Correo electrónico no válido"} {
		if !strings.Contains(page, want) {
			t.Errorf("intake errors lack %q", want)
		}
	}
	form.Set("unidad", "escom")
	form.Set("extension", "52034")
	form.Set("correo", "jperez@ipn.mx")
	form.Set("descripcion", "No puedo entrar a mi correo institucional")
	r1, _ := a.do("POST", "/telefono", form, nil)
	r2, _ := a.do("POST", "/telefono", form, nil)
	if r1.StatusCode != http.StatusSeeOther || r1.Header.Get("Location") != r2.Header.Get("Location") || !strings.HasPrefix(r1.Header.Get("Location"), "/solicitudes/") {
		t.Fatalf("double submit: %d %s / %d %s", r1.StatusCode, r1.Header.Get("Location"), r2.StatusCode, r2.Header.Get("Location"))
	}
	id := strings.TrimSuffix(strings.TrimPrefix(r1.Header.Get("Location"), "/solicitudes/"), "?aviso=registrada")
	if v := waitState(t, base, id, "queued", ""); v.Request.Requester.Unit != "ESCOM" {
		t.Errorf("unit %q", v.Request.Requester.Unit)
	}

	// Signing out ends the session on the server: the old cookie no longer works.
	resp, _ = a.do("POST", "/salir", url.Values{"csrf": {token}}, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-out: %d", resp.StatusCode)
	}
	replay := newAgentClient(t, base)
	u, _ := url.Parse(base)
	replay.c.Jar.SetCookies(u, []*http.Cookie{{Name: sess.Name, Value: sess.Value}})
	if resp, _ := replay.do("GET", "/tablero", nil, nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("old session cookie after sign-out: %d", resp.StatusCode)
	}
}

func TestConsoleSignInRateLimitedAndDisabledAccounts(t *testing.T) {
	_, base := consoleApp(t)
	a := newAgentClient(t, base)
	var last *http.Response
	var page string
	for i := 0; i < 6; i++ {
		last, page = a.signIn("ana", "equivocada")
	}
	if last.StatusCode != http.StatusTooManyRequests || last.Header.Get("Retry-After") == "" || !strings.Contains(page, "Demasiados intentos") {
		t.Fatalf("sixth bad attempt: %d %q", last.StatusCode, last.Header.Get("Retry-After"))
	}
	// The right password is refused too while limited (a guesser learns nothing).
	if resp, _ := a.signIn("ana", "contrasena-ana"); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("limited sign-in with the right password: %d", resp.StatusCode)
	}

	// Other names from the same address are held back as well.
	if resp, _ := a.signIn("sofia", "contrasena-sofia"); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("same address, other name: %d", resp.StatusCode)
	}
}

func TestConsoleDisabledAccountLosesItsSession(t *testing.T) {
	_, base := consoleApp(t)
	a := newAgentClient(t, base)
	if resp, _ := a.signIn("ana", "contrasena-ana"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: %d", resp.StatusCode)
	}
	path := os.Getenv("CAU_CONSOLE_USERS_FILE")
	f, err := accounts.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.SetDisabled("ana", true, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := f.Save(path); err != nil {
		t.Fatal(err)
	}
	// The directory re-reads the file at most once a second: wait for the redirect, bounded.
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, _ := a.do("GET", "/tablero", nil, nil)
		if resp.StatusCode == http.StatusSeeOther {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a disabled account kept its session")
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, page := a.signIn("ana", "contrasena-ana")
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(page, "deshabilitada") {
		t.Fatalf("disabled sign-in: %d", resp.StatusCode)
	}
}
