package accounts

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func TestMain(m *testing.M) {
	hashCost = bcrypt.MinCost
	os.Exit(m.Run())
}

func TestFileRoundTripAndAuthenticate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "users.yaml")
	f, err := Load(path)
	if err != nil || len(f.Users) != 0 {
		t.Fatalf("missing file: %v %v", f, err)
	}
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	if err := f.Add("ana", "Ana López", RoleAgente, "una-contrasena-larga", now); err != nil {
		t.Fatal(err)
	}
	if err := f.Add("ana", "", RoleAgente, "otra-contrasena-larga", now); !errors.Is(err, ErrUserExists) {
		t.Fatalf("duplicate: %v", err)
	}
	for _, bad := range []struct{ name, role, pass string }{
		{"Ana Mayús", RoleAgente, "una-contrasena-larga"}, {"bob", "jefe", "una-contrasena-larga"}, {"bob", RoleAgente, "corta"},
		{"bob", RoleAgente, strings.Repeat("x", 73)},
	} {
		if err := f.Add(bad.name, "", bad.role, bad.pass, now); !errors.Is(err, ErrInvalid) {
			t.Errorf("Add(%q, %q, %q) = %v, want ErrInvalid", bad.name, bad.role, bad.pass, err)
		}
	}
	if err := f.Save(path); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("users file mode: %v %v", st.Mode(), err)
	}
	d, err := NewDirectory(path)
	if err != nil {
		t.Fatal(err)
	}
	if u, err := d.Authenticate(" ANA ", "una-contrasena-larga"); err != nil || u.Label() != "Ana López" || u.IsSupervisor() {
		t.Fatalf("authenticate: %+v %v", u, err)
	}
	if _, err := d.Authenticate("ana", "una-contrasena-larg"); !errors.Is(err, ErrBadPassword) {
		t.Fatalf("wrong password: %v", err)
	}
	if _, err := d.Authenticate("nadie", "una-contrasena-larga"); !errors.Is(err, ErrBadPassword) {
		t.Fatalf("unknown user: %v", err)
	}

	// Disable and change the password on disk: the directory picks both up.
	f2, _ := Load(path)
	if err := f2.SetDisabled("ana", true, now); err != nil {
		t.Fatal(err)
	}
	if err := f2.SetPassword("ana", "contrasena-nueva-1", now); err != nil {
		t.Fatal(err)
	}
	if err := f2.SetPassword("nadie", "contrasena-nueva-1", now); !errors.Is(err, ErrUnknownUser) {
		t.Fatalf("passwd unknown: %v", err)
	}
	if err := f2.Save(path); err != nil {
		t.Fatal(err)
	}
	d.checked = time.Time{} // the next lookup re-reads the file
	if _, err := d.Authenticate("ana", "contrasena-nueva-1"); !errors.Is(err, ErrDisabled) {
		t.Fatalf("disabled account: %v", err)
	}
	if _, err := d.Lookup("ana"); !errors.Is(err, ErrDisabled) {
		t.Fatalf("lookup disabled: %v", err)
	}
	if d.Count() != 0 {
		t.Fatalf("count %d", d.Count())
	}
}

func TestInvalidFileKeepsAccountsInForce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.yaml")
	f := &File{}
	if err := f.Add("sofia", "", RoleSupervisor, "contrasena-sofia", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := f.Save(path); err != nil {
		t.Fatal(err)
	}
	d, err := NewDirectory(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		"users:\n  - name: x\n    role: agente\n    hash: nope\n",
		"users:\n  - name: sofia\n    role: rey\n    hash: $2a$12$abcdefghijklmnopqrstuu0123456789012345678901234567890\n",
		"usuarios: []\n",
	} {
		if _, err := Parse([]byte(bad)); !errors.Is(err, ErrInvalid) {
			t.Errorf("Parse(%q) = %v, want ErrInvalid", bad, err)
		}
	}
	if err := os.WriteFile(path, []byte("users: [oops"), 0o600); err != nil {
		t.Fatal(err)
	}
	d.checked = time.Time{}
	if _, err := d.Lookup("sofia"); err != nil {
		t.Fatalf("a broken file dropped the accounts in force: %v", err)
	}
	if d.Err() == nil {
		t.Fatal("the broken file is not reported")
	}
	if _, err := NewDirectory(path); err == nil {
		t.Fatal("a broken file at start is accepted")
	}
}
