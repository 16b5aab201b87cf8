package memo

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestExtractFixtureTexts(t *testing.T) {
	units := testUnits(t)
	for _, fx := range fixtures(t) {
		t.Run(fx.ID, func(t *testing.T) {
			b, err := os.ReadFile("testdata/text/" + fx.ID + ".txt")
			if err != nil {
				t.Fatal(err)
			}
			f := Extract(string(b), units)
			if !sameNumber(f.Number, fx.Number) {
				t.Errorf("number = %q, want %q", f.Number, fx.Number)
			}
			if f.Unit != fx.Unit || !f.UnitKnown {
				t.Errorf("unit = %q (known %v), want %q", f.Unit, f.UnitKnown, fx.Unit)
			}
			if f.Subject != fx.Subject {
				t.Errorf("subject = %q, want %q", f.Subject, fx.Subject)
			}
			if f.Signer != fx.Signer {
				t.Errorf("signer = %q, want %q", f.Signer, fx.Signer)
			}
			if fx.Extension != nil && (len(f.Extensions) == 0 || f.Extensions[0] != *fx.Extension) {
				t.Errorf("extensions = %q, want %q first", f.Extensions, *fx.Extension)
			}
			if f.Date == "" || !strings.HasPrefix(f.Date, "2025-") {
				t.Errorf("date = %q (%q)", f.Date, f.DateText)
			}
			if f.Position == "" || f.Addressee == "" {
				t.Errorf("position = %q, addressee = %q", f.Position, f.Addressee)
			}
		})
	}
}

func TestExtractSlipsAndVariants(t *testing.T) {
	units := testUnits(t)
	const base = `INSTITUTO POLITÉCNICO NACIONAL
ESCUELA SUPERIOR DE CÓMPUTO
SUBDIRECCIÓN ADMINISTRATIVA

%NUM%

Ciudad de México, a %DATE%

Asunto: Solicitud de correo institucional
para personal de nuevo ingreso

DlRECTOR DE LA COORDlNACIÓN GENERAL DE SERVICIOS INFORMÁTICOS
P R E S E N T E

Texto del oficio. Contacto: Ana.Ruiz@ipn.mx, ext. 52034.

A T E N T A M E N T E
"La Técnica al Servicio de la Patria"

M. EN C. ANDRÉS ORTIZ GALVÁN
SUBDIRECTOR ADMINISTRATIVO
Ext. 52031

C.c.p. Director de la ESCOM. Para su conocimiento.
c.c.p Archivo
AOG/vmls
`
	cases := []struct {
		name, num, date   string
		wantNum, wantDate string
	}{
		{"plain", "Oficio No. ESCOM/SA/0457/2025", "14 de octubre de 2025", "ESCOM/SA/0457/2025", "2025-10-14"},
		{"l4", "Oficio No. ESCOM/SA/0457/2025", "l4 de agosto de 2025", "ESCOM/SA/0457/2025", "2025-08-14"},
		{"0ficio N0.", "0ficio N0. ESCOM/SA/0457/2O25", "1 de septiembre del 2025", "ESCOM/SA/0457/2025", "2025-09-01"},
		{"OFICIO NÚM.", "OFICIO NÚM.: ESCOM / SA / 0457 / 2025", "3 de noviembre de 2025", "ESCOM/SA/0457/2025", "2025-11-03"},
		{"No. de oficio", "No. de oficio: ESCOM-SA-0457-2025", "30 de septiembre de 2025", "ESCOM-SA-0457-2025", "2025-09-30"},
		{"SEP1", "Oficio No. ENCB/SEP1/1187/2025", "1 de septiembre de 2025", "ENCB/SEPI/1187/2025", "2025-09-01"},
		{"CET1 kept", "Oficio No. ESCOM/CET1/1187/2025", "1 de septiembre de 2025", "ESCOM/CET1/1187/2025", "2025-09-01"},
		{"ESE0 prefix", "Oficio No. ESE0/DIR/0977/2025", "13 de octubre de 2025", "ESEO/DIR/0977/2025", "2025-10-13"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			text := strings.NewReplacer("%NUM%", c.num, "%DATE%", c.date).Replace(base)
			f := Extract(text, units)
			if f.Number != c.wantNum {
				t.Errorf("number = %q, want %q", f.Number, c.wantNum)
			}
			if f.Date != c.wantDate {
				t.Errorf("date = %q, want %q", f.Date, c.wantDate)
			}
			if f.Unit != "ESCOM" {
				t.Errorf("unit = %q", f.Unit)
			}
			if f.Subject != "Solicitud de correo institucional para personal de nuevo ingreso" {
				t.Errorf("subject = %q", f.Subject)
			}
			if f.Addressee != "DIRECTOR DE LA COORDINACIÓN GENERAL DE SERVICIOS INFORMÁTICOS" {
				t.Errorf("addressee = %q", f.Addressee)
			}
			if f.Signer != "Andrés Ortiz Galván" || f.Position != "SUBDIRECTOR ADMINISTRATIVO" {
				t.Errorf("signer = %q, position = %q", f.Signer, f.Position)
			}
			if want := []string{"Director de la ESCOM. Para su conocimiento.", "Archivo"}; !reflect.DeepEqual(f.CCP, want) {
				t.Errorf("ccp = %q", f.CCP)
			}
			if want := []string{"ana.ruiz@ipn.mx"}; !reflect.DeepEqual(f.Emails, want) {
				t.Errorf("emails = %q", f.Emails)
			}
			if want := []string{"52031", "52034"}; !reflect.DeepEqual(f.Extensions, want) {
				t.Errorf("extensions = %q", f.Extensions)
			}
		})
	}
}

func TestExtractUnitFromSlippedLetterhead(t *testing.T) {
	units := testUnits(t)
	text := "INSTITUTO POLITÉCNICO NACIONAL\nESCUELA SUPERIOR DE ENFERMERÍA Y 0BSTETRICIA\nDlRECCIÓN\n\nOficio No. ESE0/DIR/0977/2025\n"
	if f := Extract(text, units); f.Unit != "ESEO" || !f.UnitKnown {
		t.Errorf("unit = %q known=%v", f.Unit, f.UnitKnown)
	}
	// Unknown letterhead and no units: the printed line is kept, not marked known.
	f := Extract("INSTITUTO POLITÉCNICO NACIONAL\nCENTRO DE ALGO NUEVO\nOficio No. CAN/01/2025\n", nil)
	if f.Unit != "CENTRO DE ALGO NUEVO" || f.UnitKnown {
		t.Errorf("unit = %q known=%v", f.Unit, f.UnitKnown)
	}
}

func FuzzExtract(f *testing.F) {
	f.Add("Oficio No. ESCOM/SA/0457/2025\nAsunto: x\nATENTAMENTE\nING. A B\nJEFE\nc.c.p. y")
	f.Add("0ficio N0. ESE0/DlR/O977/2O25\nCiudad de México, a l4 de agosto de 2025")
	units := testUnits(f)
	f.Fuzz(func(t *testing.T, s string) {
		a := Extract(s, units)
		b := Extract(s, nil)
		for _, v := range []string{a.Number, a.Subject, a.Signer, a.Position, a.Addressee, a.Unit, b.Unit} {
			if len(v) > 400 {
				t.Fatalf("field too long: %d", len(v))
			}
		}
		if a.Date != "" && len(a.Date) != 10 {
			t.Fatalf("date %q", a.Date)
		}
	})
}
