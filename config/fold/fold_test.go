package fold

import (
	"testing"
	"unicode"
)

func TestString(t *testing.T) {
	for in, want := range map[string]string{
		"Escuela Superior de Cómputo": "escuela superior de computo",
		"AÑO DE LA INDEPENDENCIA":     "año de la independencia",
		"Pingüino, CAÑÓN":             "pinguino, cañon",
		"N° 9, Nº 10, 1ª":             "no 9, no 10, 1a",
		"Straße, Æsop, Œuvre":         "strasse, aesop, oeuvre",
		"Ångström façade naïve":       "angstrom facade naive",
		"ÀÉÎÕÜ àéîõü":                 "aeiou aeiou",
		"plain ascii 123":             "plain ascii 123",
		"Ελληνικά ЖУК":                "ελληνικα жук",
		"":                            "",
		"año Núñez":                "año nuñez",
	} {
		if got := String(in); got != want {
			t.Errorf("String(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLoose(t *testing.T) {
	for in, want := range map[string]string{
		"": "", "ana": "ana", "José LÓPEZ": "jose lopez", "Núñez": "nunez", "ÑANDÚ": "nandu", "AÑO": "ano",
		"Müller Çelik": "muller celik", "ESIME Zacatenco": "esime zacatenco", "user@IPN.MX": "user@ipn.mx",
		"Ωmega": "ωmega", "a\u0301rbol": "arbol", "\xff": "\ufffd",
	} {
		if got := Loose(in); got != want {
			t.Errorf("Loose(%q) = %q, want %q", in, got, want)
		}
	}
}

// AppendRune and String agree rune by rune, and folding is idempotent.
func TestAppendRuneMatchesString(t *testing.T) {
	for r := rune(0); r < 0x3000; r++ {
		if !isPrint(r) {
			continue
		}
		one := string(AppendRune(nil, r))
		if String(string(r)) != one {
			t.Fatalf("%U: String %q, AppendRune %q", r, String(string(r)), one)
		}
		if String(one) != one {
			t.Fatalf("%U: folding %q again gives %q", r, one, String(one))
		}
	}
}

func isPrint(r rune) bool {
	return r >= 0x20 && (r < 0x7f || r > 0x9f) && (r < 0xd800 || r > 0xdfff) && !unicode.Is(unicode.Mn, r)
}

func FuzzString(f *testing.F) {
	for _, s := range []string{"Cómputo", "AÑO", "ß", "N°"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		once := String(s)
		if String(once) != once {
			t.Fatalf("not idempotent: %q → %q → %q", s, once, String(once))
		}
	})
}

func BenchmarkString(b *testing.B) {
	s := "Buenos días, no puedo entrar al correo institucional desde la biblioteca de la ESCOM; el año pasado sí funcionaba."
	for b.Loop() {
		_ = String(s)
	}
}
