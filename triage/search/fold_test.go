package search

import "testing"

func TestFold(t *testing.T) {
	for in, want := range map[string]string{
		"": "", "ana": "ana", "José LÓPEZ": "jose lopez", "Núñez": "nunez", "ÑANDÚ": "nandu",
		"Müller Çelik": "muller celik", "ESIME Zacatenco": "esime zacatenco", "user@IPN.MX": "user@ipn.mx",
		"Ωmega": "ωmega", "a\u0301rbol": "arbol", "\xff": "\ufffd",
	} {
		if got := fold(in); got != want {
			t.Errorf("fold(%q) = %q, want %q", in, got, want)
		}
	}
}
