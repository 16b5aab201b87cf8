package main

import (
	"bytes"
	"strings"
	"testing"
)

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, strings.NewReader(""), &out, &errb, func(string) string { return "" })
	return code, out.String(), errb.String()
}

// Every command's help says what it does and shows an example, in Spanish.
func TestEveryCommandHelpHasDescriptionAndExample(t *testing.T) {
	for _, c := range commands() {
		args := append(strings.Fields(c.name), "-h")
		code, out, _ := runCLI(t, args...)
		if code != exitOK {
			t.Errorf("%s -h: exit %d", c.name, code)
			continue
		}
		summary := strings.ToUpper(c.summary[:1]) + c.summary[1:]
		if !strings.Contains(out, summary) || !strings.Contains(out, "Ejemplo:\n  cauctl "+c.name) {
			t.Errorf("%s -h lacks its description or example:\n%s", c.name, out)
		}
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"version"}, {"queues", "--version"}} {
		code, out, _ := runCLI(t, args...)
		if code != exitOK || !strings.HasPrefix(out, "cauctl ") {
			t.Errorf("%v: exit %d, %q", args, code, out)
		}
	}
}

// The values reroute accepts can be listed without a server: services and orientation targets.
func TestCatalogServicesAndTargets(t *testing.T) {
	code, out, errs := runCLI(t, "catalog", "services")
	if code != exitOK || !strings.Contains(out, "correo-institucional") {
		t.Fatalf("catalog services: exit %d\n%s%s", code, out, errs)
	}
	code, out, _ = runCLI(t, "catalog", "targets")
	if code != exitOK || !strings.Contains(out, "BECAS") {
		t.Fatalf("catalog targets: exit %d\n%s", code, out)
	}
	code, _, errs = runCLI(t, "catalog", "targets", "--catalog", "/no/such/file.yaml")
	if code != exitErr || !strings.Contains(errs, "no existe el archivo") {
		t.Fatalf("missing catalog file: exit %d, %s", code, errs)
	}
}
