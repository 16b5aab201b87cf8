// Package accounts keeps the web console's per-person accounts in a users file: YAML, one entry per
// person with a bcrypt hash, a role (agente or supervisor) and a disabled flag. cauctl edits the file
// offline (users add, passwd, disable); caud reads it and picks up changes without a restart.
//
// The file is written atomically (temporary file, fsync, rename) with mode 0600, so a crash never
// leaves a half-written file and a reader never sees one.
package accounts

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"
	"gopkg.in/yaml.v3"
)

// Roles of the console.
const (
	RoleAgente     = "agente"
	RoleSupervisor = "supervisor"
)

// Cost is the bcrypt cost of new hashes (2^12 rounds: about 0.2 s on one core, a good balance for an
// interactive login that is also rate limited).
const Cost = 12

// MinPassword is the shortest password accepted.
const MinPassword = 10

// Errors.
var (
	ErrUnknownUser  = errors.New("unknown user")
	ErrUserExists   = errors.New("user already exists")
	ErrBadPassword  = errors.New("wrong user or password")
	ErrDisabled     = errors.New("account disabled")
	ErrInvalid      = errors.New("invalid account")
	ErrWeakPassword = fmt.Errorf("%w: password shorter than %d characters", ErrInvalid, MinPassword)
)

var nameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// User is one account of the users file.
type User struct {
	// Name is the login name: lowercase letters, digits, '.', '_' and '-', up to 64.
	Name string `yaml:"name"`
	// Display is the person's full name, shown in the console and in the audit record.
	Display  string    `yaml:"display,omitempty"`
	Role     string    `yaml:"role"`
	Hash     string    `yaml:"hash"`
	Disabled bool      `yaml:"disabled,omitempty"`
	Changed  time.Time `yaml:"changed,omitempty"`
}

// Label is the name to show: Display, or Name when there is none.
func (u User) Label() string {
	if u.Display != "" {
		return u.Display
	}
	return u.Name
}

// IsSupervisor reports whether the user may do supervisor actions.
func (u User) IsSupervisor() bool { return u.Role == RoleSupervisor }

type fileDoc struct {
	Users []User `yaml:"users"`
}

// File is the users file in memory. It is not safe for concurrent use; Directory is.
type File struct {
	Users []User
}

// ValidName reports whether name is an acceptable login name.
func ValidName(name string) bool { return nameRe.MatchString(name) }

// ValidRole reports whether role is agente or supervisor.
func ValidRole(role string) bool { return role == RoleAgente || role == RoleSupervisor }

// Parse reads a users file. Every problem is reported with the entry it is in; errors wrap ErrInvalid.
func Parse(b []byte) (*File, error) {
	var d fileDoc
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&d); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	var problems []string
	seen := map[string]bool{}
	for i, u := range d.Users {
		switch {
		case !ValidName(u.Name):
			problems = append(problems, fmt.Sprintf("users[%d]: name %q: use lowercase letters, digits, '.', '_' or '-'", i, u.Name))
		case seen[u.Name]:
			problems = append(problems, fmt.Sprintf("users[%d]: name %q appears twice", i, u.Name))
		}
		seen[u.Name] = true
		if !ValidRole(u.Role) {
			problems = append(problems, fmt.Sprintf("users[%d] (%s): role %q: use agente or supervisor", i, u.Name, u.Role))
		}
		if _, err := bcrypt.Cost([]byte(u.Hash)); err != nil {
			problems = append(problems, fmt.Sprintf("users[%d] (%s): hash is not a bcrypt hash", i, u.Name))
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, strings.Join(problems, "; "))
	}
	return &File{Users: d.Users}, nil
}

// Load reads the users file at path; a missing file is an empty one.
func Load(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &File{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read users file: %w", err)
	}
	f, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// Save writes the file atomically with mode 0600.
func (f *File) Save(path string) error {
	b, err := yaml.Marshal(fileDoc{Users: f.Users})
	if err != nil {
		return fmt.Errorf("encode users: %w", err)
	}
	b = append([]byte("# caud console accounts: edit with `cauctl users add|passwd|disable`.\n"), b...)
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("users file dir: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".users-*.tmp")
	if err != nil {
		return fmt.Errorf("write users file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write users file: %w", err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("write users file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write users file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write users file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write users file: %w", err)
	}
	return nil
}

func (f *File) index(name string) int {
	return slices.IndexFunc(f.Users, func(u User) bool { return u.Name == name })
}

// Get returns the named user.
func (f *File) Get(name string) (User, bool) {
	i := f.index(name)
	if i < 0 {
		return User{}, false
	}
	return f.Users[i], true
}

// Hash returns the bcrypt hash of password, refusing passwords shorter than MinPassword.
func Hash(password string) (string, error) {
	if utf8.RuneCountInString(password) < MinPassword {
		return "", ErrWeakPassword
	}
	if len(password) > 72 {
		// bcrypt reads 72 bytes; refusing longer ones avoids a false sense of strength.
		return "", fmt.Errorf("%w: password longer than 72 bytes", ErrInvalid)
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), hashCost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}

// Add creates an account.
func (f *File) Add(name, display, role, password string, now time.Time) error {
	if !ValidName(name) {
		return fmt.Errorf("%w: name %q: use lowercase letters, digits, '.', '_' or '-'", ErrInvalid, name)
	}
	if !ValidRole(role) {
		return fmt.Errorf("%w: role %q: use agente or supervisor", ErrInvalid, role)
	}
	if f.index(name) >= 0 {
		return fmt.Errorf("%w: %s", ErrUserExists, name)
	}
	h, err := Hash(password)
	if err != nil {
		return err
	}
	f.Users = append(f.Users, User{Name: name, Display: display, Role: role, Hash: h, Changed: now.UTC().Truncate(time.Second)})
	return nil
}

// SetPassword replaces a user's password (and re-enables nothing: a disabled account stays disabled).
func (f *File) SetPassword(name, password string, now time.Time) error {
	i := f.index(name)
	if i < 0 {
		return fmt.Errorf("%w: %s", ErrUnknownUser, name)
	}
	h, err := Hash(password)
	if err != nil {
		return err
	}
	f.Users[i].Hash, f.Users[i].Changed = h, now.UTC().Truncate(time.Second)
	return nil
}

// SetDisabled disables or re-enables an account. Sessions of a disabled account stop working at
// their next request.
func (f *File) SetDisabled(name string, disabled bool, now time.Time) error {
	i := f.index(name)
	if i < 0 {
		return fmt.Errorf("%w: %s", ErrUnknownUser, name)
	}
	f.Users[i].Disabled, f.Users[i].Changed = disabled, now.UTC().Truncate(time.Second)
	return nil
}

// hashCost is Cost; tests lower it to keep bcrypt from dominating their time.
var hashCost = Cost

// dummyHash is compared against when the user is unknown, so that a login for an unknown name
// takes as long as one for a known name.
var dummyHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("caud-no-such-user"), hashCost)
	return h
})

// Directory serves logins from a users file, re-reading it when it changes on disk (checked at most
// once a second). Safe for concurrent use.
type Directory struct {
	path string
	now  func() time.Time

	mu      sync.Mutex
	f       *File
	mod     time.Time
	size    int64
	checked time.Time
	lastErr error
}

// NewDirectory loads the users file at path. A missing file gives an empty directory (nobody can
// sign in until `cauctl users add` creates it); an invalid one is an error.
func NewDirectory(path string) (*Directory, error) {
	d := &Directory{path: path, now: time.Now}
	if err := d.reload(true); err != nil {
		return nil, err
	}
	return d, nil
}

// Path is the users file.
func (d *Directory) Path() string { return d.path }

// reload re-reads the file when its size or mtime changed. A file that became invalid is refused
// and the accounts read before are kept (the error is returned and remembered for Err).
func (d *Directory) reload(force bool) error {
	st, err := os.Stat(d.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		d.f, d.mod, d.size, d.lastErr = &File{}, time.Time{}, -1, nil
		return nil
	case err != nil:
		d.lastErr = fmt.Errorf("stat users file: %w", err)
		return d.lastErr
	}
	if !force && d.f != nil && st.ModTime().Equal(d.mod) && st.Size() == d.size {
		return nil
	}
	f, err := Load(d.path)
	if err != nil {
		d.lastErr = err
		return err
	}
	d.f, d.mod, d.size, d.lastErr = f, st.ModTime(), st.Size(), nil
	return nil
}

func (d *Directory) current() *File {
	d.mu.Lock()
	defer d.mu.Unlock()
	if now := d.now(); now.Sub(d.checked) >= time.Second {
		d.checked = now
		_ = d.reload(false)
	}
	return d.f
}

// Err is the last error reading the users file (nil when the file in force is current).
func (d *Directory) Err() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lastErr
}

// Count is the number of enabled accounts.
func (d *Directory) Count() int {
	n := 0
	for _, u := range d.current().Users {
		if !u.Disabled {
			n++
		}
	}
	return n
}

// Lookup returns an enabled user by name.
func (d *Directory) Lookup(name string) (User, error) {
	u, ok := d.current().Get(name)
	switch {
	case !ok:
		return User{}, ErrUnknownUser
	case u.Disabled:
		return User{}, ErrDisabled
	}
	return u, nil
}

// Authenticate checks a name and password. It returns ErrBadPassword for an unknown name or a
// wrong password alike, after the same work, and ErrDisabled for a disabled account (only after
// the right password, so the flag is not revealed to a guesser).
func (d *Directory) Authenticate(name, password string) (User, error) {
	name = strings.ToLower(strings.TrimSpace(name))
	u, ok := d.current().Get(name)
	if !ok {
		_ = bcrypt.CompareHashAndPassword(dummyHash(), []byte(password))
		return User{}, ErrBadPassword
	}
	if err := bcrypt.CompareHashAndPassword([]byte(u.Hash), []byte(password)); err != nil {
		return User{}, ErrBadPassword
	}
	if u.Disabled {
		return User{}, ErrDisabled
	}
	return u, nil
}
