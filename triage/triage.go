// Package triage decides, from the service catalog, what the help desk must do with a request
// (PR-CAU-01, Pasos 3 to 6): the outcome, falla or servicio, the SAI service and its responsible group,
// the orientation for a matter that is not CGSI's, the questions to ask when the text says too little,
// and the diagnostic tests for a falla. Every decision carries a confidence and an explanation.
package triage

// Outcomes: one work queue each, subject cau.triaged.<outcome>.
const (
	OutcomeSAI          = "sai"
	OutcomeInformativo  = "informativo"
	OutcomeAclaracion   = "aclaracion"
	OutcomeNoCompetente = "no_competente"
)

// Outcomes lists every outcome in queue order.
var Outcomes = []string{OutcomeSAI, OutcomeInformativo, OutcomeAclaracion, OutcomeNoCompetente}

// Kinds (Paso 6).
const (
	KindFalla    = "falla"
	KindServicio = "servicio"
)

// ConceptInformativo is the SAI concept under which CGSI matters outside the catalog are registered.
const ConceptInformativo = "CAU_INFORMATIVO_04A"

// Triage is the decision attached to a triaged item (the "triage" member on cau.triaged.*).
type Triage struct {
	Outcome        string       `json:"outcome"`
	Kind           string       `json:"kind,omitempty"`
	Service        *Service     `json:"service,omitempty"`
	Concept        string       `json:"concept,omitempty"`
	Orientation    *Orientation `json:"orientation,omitempty"`
	Tests          []string     `json:"tests,omitempty"`
	Questions      []string     `json:"questions,omitempty"`
	Others         []Service    `json:"others,omitempty"`
	Confidence     float64      `json:"confidence"`
	Explanation    string       `json:"explanation"`
	CatalogVersion string       `json:"catalog_version"`
	// Area is the catalog area of the service or orientation target (CORREO, RED, BECAS, ...).
	Area string `json:"area,omitempty"`
	// By says who decided: "engine", or "agent:<name>" after a reroute.
	By string `json:"by,omitempty"`
}

// Service is an SAI service with its responsible group.
type Service struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Group string `json:"group"`
	Area  string `json:"area,omitempty"`
}

// Orientation tells a requester whose matter is not CGSI's where to go, with an apology (Paso 4 no).
type Orientation struct {
	Target  string `json:"target"`
	Office  string `json:"office"`
	Message string `json:"message"`
}

// Input is what the engine reads of a request.
type Input struct {
	Subject string
	Text    string
	// Channel is the Request.Channel (email, phone, ...); a hint only.
	Channel string
	// Attachments is the text read from the request's attachments (Request.AttachmentText): a
	// scanned oficio, a PDF. It counts below the requester's own text (AttachmentWeight), and in
	// full when the body says next to nothing ("adjunto oficio").
	Attachments string
}
