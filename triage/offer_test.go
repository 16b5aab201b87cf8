package triage

import (
	"strings"
	"testing"
)

// An unsolicited offer of something an IT service covers (toner for the printers) goes to the
// office that takes offers, in words no catalog lists: a price list, savings, free delivery.
func TestUnsolicitedOfferGoesToTheOfficeOfOffers(t *testing.T) {
	y := strings.NewReplacer("id: correo", "id: impresion", "name: Correo electrónico institucional", "name: Impresoras",
		"area: CORREO", "area: IMPRESION", "[correo: 3, buzón]", "[impresora: 4, toner: 3, cartucho]",
		"target: BECAS", "target: COMPRAS", "office: Becas", "office: Departamento de Compras",
		"message: Disculpe, vaya a Becas.", "message: Las propuestas comerciales y el padrón de proveedores los atiende Compras. Una disculpa.",
		"[beca: 4]", "[proveedor: 3, propuesta comercial: 4]").Replace(smallCatalog)
	c, err := ParseCatalog([]byte(y), "offers.yaml")
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(c)
	offer := Input{Subject: "Consumibles con descuento", Text: "Le hacemos llegar nuestra lista de precios de toner y cartuchos compatibles para impresoras, con ahorro de hasta 40% y envío sin costo. Facturamos al momento."}
	if d := e.Decide(offer); d.Outcome != OutcomeNoCompetente || d.Area != "COMPRAS" {
		t.Errorf("offer: %s %s (%s)", d.Outcome, d.Area, d.Explanation)
	}
	// The same words in a request from inside are a request for the printing service.
	ask := Input{Text: "Se acabó el toner de la impresora de la dirección, ¿nos pueden cambiar el cartucho?"}
	if d := e.Decide(ask); d.Outcome != OutcomeSAI || d.Area != "IMPRESION" {
		t.Errorf("request: %s %s (%s)", d.Outcome, d.Area, d.Explanation)
	}
}
