package triage

import "testing"

func TestDropMentionsKeepsAddressDomains(t *testing.T) {
	for in, want := range map[string]string{
		"@CGSI_IPN no abre mi correo":            "  no abre mi correo",
		"gracias @CGSI_IPN.":                     "gracias  .",
		"mi cuenta @alumno.ipn.mx no abre":       "mi cuenta @alumno.ipn.mx no abre",
		"escribí a @ipn.mx y a ana@ipn.mx":       "escribí a @ipn.mx y a ana@ipn.mx",
		"@cau_ipn @CGSI_IPN ¿mi correo @ipn.mx?": "    ¿mi correo @ipn.mx?",
	} {
		if got := dropMentions(in); got != want {
			t.Errorf("dropMentions(%q) = %q, want %q", in, got, want)
		}
	}
}
