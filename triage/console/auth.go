package console

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/ipn-cgsi/caud/triage/console/accounts"
)

type loginData struct {
	Name     string
	Next     string
	Token    string
	Fields   map[string]string
	NoUsers  bool
	UsersErr bool
}

// safeNext keeps a post-sign-in destination only when it is a path of this site.
func safeNext(s string) string {
	if !strings.HasPrefix(s, "/") || strings.HasPrefix(s, "//") || strings.HasPrefix(s, "/\\") || strings.ContainsAny(s, "\r\n") {
		return "/tablero"
	}
	if strings.HasPrefix(s, "/entrar") || strings.HasPrefix(s, "/salir") {
		return "/tablero"
	}
	return s
}

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	if s, err := c.session(r); err == nil && s != nil {
		http.Redirect(w, r, "/tablero", http.StatusSeeOther)
		return
	}
	c.showLogin(w, r, http.StatusOK, loginData{Next: safeNext(r.URL.Query().Get("siguiente"))}, "")
}

func (c *Console) showLogin(w http.ResponseWriter, r *http.Request, status int, d loginData, errMsg string) {
	d.Token = randomToken()
	d.NoUsers = c.o.Users.Count() == 0
	d.UsersErr = c.o.Users.Err() != nil
	c.setCookie(w, r, loginCookie, d.Token, 30*time.Minute)
	c.render(w, r, nil, status, "entrar", page{Title: "Iniciar sesión", Error: errMsg, Data: d})
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	name := strings.ToLower(strings.TrimSpace(r.PostFormValue("usuario")))
	pass := r.PostFormValue("contrasena")
	d := loginData{Name: name, Next: safeNext(r.PostFormValue("siguiente")), Fields: map[string]string{}}
	ck, err := r.Cookie(loginCookie)
	if err != nil || !sameToken(ck.Value, r.PostFormValue("csrf")) {
		c.showLogin(w, r, http.StatusForbidden, d, "El formulario caducó; vuelva a escribir sus datos.")
		return
	}
	if name == "" {
		d.Fields["usuario"] = "Escriba su nombre de usuario."
	}
	if pass == "" {
		d.Fields["contrasena"] = "Escriba su contraseña."
	}
	if len(d.Fields) > 0 {
		c.showLogin(w, r, http.StatusBadRequest, d, "")
		return
	}
	if ok, wait := c.limit.allow(c.o.Now(), "ip:"+clientIP(r), "user:"+name); !ok {
		secs := int(math.Ceil(wait.Seconds()))
		w.Header().Set("Retry-After", fmt.Sprint(secs))
		c.log.Warn("console sign-in rate limited", "user", name, "remote", clientIP(r))
		d.Fields["contrasena"] = fmt.Sprintf("Demasiados intentos. Espere %d segundos antes de volver a intentar.", secs)
		c.showLogin(w, r, http.StatusTooManyRequests, d, "")
		return
	}
	u, err := c.o.Users.Authenticate(name, pass)
	switch {
	case errors.Is(err, accounts.ErrDisabled):
		c.log.Warn("console sign-in of a disabled account", "user", name, "remote", clientIP(r))
		d.Fields["usuario"] = "Esta cuenta está deshabilitada; pida a un supervisor que la reactive."
		c.showLogin(w, r, http.StatusForbidden, d, "")
		return
	case err != nil:
		c.log.Info("console sign-in refused", "user", name, "remote", clientIP(r))
		d.Fields["contrasena"] = "Usuario o contraseña incorrectos."
		c.showLogin(w, r, http.StatusUnauthorized, d, "")
		return
	}
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	token, _, err := c.o.Sessions.Create(ctx, u.Name)
	if err != nil {
		c.log.Error("console session create", "err", err)
		c.showLogin(w, r, http.StatusServiceUnavailable, d, "No se pudo iniciar la sesión en este momento; intente de nuevo.")
		return
	}
	c.log.Info("console sign-in", "user", u.Name, "role", u.Role, "remote", clientIP(r))
	c.setCookie(w, r, loginCookie, "", -1)
	c.setCookie(w, r, sessionCookie, token, 0)
	http.Redirect(w, r, d.Next, http.StatusSeeOther)
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request, s *req) {
	ctx, cancel := ctxTimeout(r)
	defer cancel()
	if err := c.o.Sessions.Delete(ctx, s.token); err != nil {
		c.log.Warn("console sign-out", "err", err)
	}
	c.setCookie(w, r, sessionCookie, "", -1)
	c.log.Info("console sign-out", "user", s.User.Name)
	http.Redirect(w, r, "/entrar?aviso=salida", http.StatusSeeOther)
}
