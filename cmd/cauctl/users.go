package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/ipn-cgsi/caud/triage/console/accounts"
)

// usersCommands edit the web console's users file directly (no server needed: caud notices the
// change within a second).
func usersCommands() []command {
	return []command{
		{"users add", "NOMBRE --role agente|supervisor [--display \"Nombre Apellido\"] [--file ARCHIVO] [--password-stdin]", "crear una cuenta de la consola web (sin servidor)", (*app).cmdUsersAdd},
		{"users passwd", "NOMBRE [--file ARCHIVO] [--password-stdin]", "cambiar la contraseña de una cuenta (sin servidor)", (*app).cmdUsersPasswd},
		{"users disable", "NOMBRE [--file ARCHIVO] [--enable]", "deshabilitar (o con --enable, rehabilitar) una cuenta; sus sesiones terminan (sin servidor)", (*app).cmdUsersDisable},
		{"users list", "[--file ARCHIVO]", "listar las cuentas de la consola web (sin servidor)", (*app).cmdUsersList},
	}
}

// defaultUsersFile is the users file when neither --file nor CAU_CONSOLE_USERS_FILE is set: caud's
// default (<data_dir>/users.yaml with data_dir ./data).
func (a *app) defaultUsersFile() string {
	if f := a.getenv("CAU_CONSOLE_USERS_FILE"); f != "" {
		return f
	}
	if d := a.getenv("CAU_DATA_DIR"); d != "" {
		return strings.TrimRight(d, "/") + "/users.yaml"
	}
	return "./data/users.yaml"
}

type usersFlags struct {
	file, role, display string
	stdin, enable       bool
}

func (a *app) usersParse(name string, args []string, withPassword bool) (string, *usersFlags, int, bool) {
	fs := a.flags(name, a.argsOf(name))
	f := &usersFlags{}
	fs.StringVar(&f.file, "file", a.defaultUsersFile(), "archivo de cuentas (variable CAU_CONSOLE_USERS_FILE)")
	if name == "users add" {
		fs.StringVar(&f.role, "role", "", "rol: agente o supervisor")
		fs.StringVar(&f.display, "display", "", "nombre completo de la persona")
	}
	if withPassword {
		fs.BoolVar(&f.stdin, "password-stdin", false, "leer la contraseña de la entrada estándar (primera línea)")
	}
	if name == "users disable" {
		fs.BoolVar(&f.enable, "enable", false, "rehabilitar la cuenta en lugar de deshabilitarla")
	}
	npos := 1
	if name == "users list" {
		npos = 0
	}
	pos, code, ok := a.parse(fs, args, npos, true)
	if !ok {
		return "", nil, code, false
	}
	user := ""
	if npos == 1 {
		user = strings.ToLower(strings.TrimSpace(pos[0]))
	}
	return user, f, 0, true
}

// readPassword asks twice on a terminal (without echo), or reads the first line of stdin.
func (a *app) readPassword(fromStdin bool) (string, error) {
	if f, ok := a.stdin.(*os.File); ok && !fromStdin && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(a.stderr, "Contraseña: ")
		p1, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(a.stderr)
		if err != nil {
			return "", err
		}
		fmt.Fprint(a.stderr, "Repita la contraseña: ")
		p2, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(a.stderr)
		if err != nil {
			return "", err
		}
		if string(p1) != string(p2) {
			return "", errors.New("las contraseñas no coinciden")
		}
		return string(p1), nil
	}
	line, err := bufio.NewReader(a.stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// accountError prints an accounts error in Spanish.
func (a *app) accountError(err error, user string) int {
	switch {
	case errors.Is(err, accounts.ErrUserExists):
		fmt.Fprintf(a.stderr, "error: ya existe la cuenta %s\n", user)
	case errors.Is(err, accounts.ErrUnknownUser):
		fmt.Fprintf(a.stderr, "error: no existe la cuenta %s\n", user)
	case errors.Is(err, accounts.ErrWeakPassword):
		fmt.Fprintf(a.stderr, "error: la contraseña debe tener al menos %d caracteres\n", accounts.MinPassword)
	case errors.Is(err, accounts.ErrInvalid):
		fmt.Fprintf(a.stderr, "error: %s\n", strings.TrimPrefix(err.Error(), accounts.ErrInvalid.Error()+": "))
		return exitUsage
	default:
		fmt.Fprintf(a.stderr, "error: %v\n", err)
	}
	return exitErr
}

func (a *app) cmdUsersAdd(args []string) int {
	user, f, code, ok := a.usersParse("users add", args, true)
	if !ok {
		return code
	}
	if !accounts.ValidName(user) {
		return a.usageErr("users add: nombre %q no válido: use minúsculas, dígitos, '.', '_' o '-'", user)
	}
	if !accounts.ValidRole(f.role) {
		return a.usageErr("users add: indique --role agente o --role supervisor")
	}
	file, err := accounts.Load(f.file)
	if err != nil {
		return a.accountError(err, user)
	}
	if _, exists := file.Get(user); exists {
		return a.accountError(accounts.ErrUserExists, user)
	}
	pass, err := a.readPassword(f.stdin)
	if err != nil {
		return a.accountError(err, user)
	}
	if err := file.Add(user, f.display, f.role, pass, a.now()); err != nil {
		return a.accountError(err, user)
	}
	if err := file.Save(f.file); err != nil {
		return a.accountError(err, user)
	}
	fmt.Fprintf(a.stdout, "cuenta %s creada (%s) en %s\n", user, f.role, f.file)
	return exitOK
}

func (a *app) cmdUsersPasswd(args []string) int {
	user, f, code, ok := a.usersParse("users passwd", args, true)
	if !ok {
		return code
	}
	file, err := accounts.Load(f.file)
	if err != nil {
		return a.accountError(err, user)
	}
	if _, exists := file.Get(user); !exists {
		return a.accountError(accounts.ErrUnknownUser, user)
	}
	pass, err := a.readPassword(f.stdin)
	if err != nil {
		return a.accountError(err, user)
	}
	if err := file.SetPassword(user, pass, a.now()); err != nil {
		return a.accountError(err, user)
	}
	if err := file.Save(f.file); err != nil {
		return a.accountError(err, user)
	}
	fmt.Fprintf(a.stdout, "contraseña de %s cambiada\n", user)
	return exitOK
}

func (a *app) cmdUsersDisable(args []string) int {
	user, f, code, ok := a.usersParse("users disable", args, false)
	if !ok {
		return code
	}
	file, err := accounts.Load(f.file)
	if err != nil {
		return a.accountError(err, user)
	}
	if err := file.SetDisabled(user, !f.enable, a.now()); err != nil {
		return a.accountError(err, user)
	}
	if err := file.Save(f.file); err != nil {
		return a.accountError(err, user)
	}
	if f.enable {
		fmt.Fprintf(a.stdout, "cuenta %s rehabilitada\n", user)
	} else {
		fmt.Fprintf(a.stdout, "cuenta %s deshabilitada; sus sesiones abiertas terminan en su siguiente acción\n", user)
	}
	return exitOK
}

func (a *app) cmdUsersList(args []string) int {
	_, f, code, ok := a.usersParse("users list", args, false)
	if !ok {
		return code
	}
	file, err := accounts.Load(f.file)
	if err != nil {
		return a.accountError(err, "")
	}
	if len(file.Users) == 0 {
		fmt.Fprintf(a.stdout, "no hay cuentas en %s\n", f.file)
		return exitOK
	}
	fmt.Fprintf(a.stdout, "%-20s %-11s %-12s %s\n", "USUARIO", "ROL", "ESTADO", "NOMBRE")
	for _, u := range file.Users {
		st := "activa"
		if u.Disabled {
			st = "deshabilitada"
		}
		fmt.Fprintf(a.stdout, "%-20s %-11s %-12s %s\n", u.Name, u.Role, st, u.Display)
	}
	return exitOK
}
