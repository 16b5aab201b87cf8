package triage

// Model is what the agents taught the engine: their corrections, as labelled examples, that passed
// the comparison against the current engine (see Learn). The engine trains on them at load, after
// the catalog's own examples; decisions then name the model in catalog_version.
type Model struct {
	// Version names the model: a digest of its examples, e.g. "3f9a1c2e".
	Version string `json:"version"`
	// Catalog is the catalog version the model was learned against.
	Catalog  string    `json:"catalog_version"`
	Examples []Example `json:"examples"`
}
