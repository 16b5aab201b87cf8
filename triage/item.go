package triage

import (
	"time"

	"github.com/ipn-cgsi/caud/channels"
)

// Item is a triaged request: the JSON body of messages on cau.triaged.<outcome>, and what an agent
// claims from a work queue.
type Item struct {
	Request   channels.Request `json:"request"`
	Triage    Triage           `json:"triage"`
	TriagedAt time.Time        `json:"triaged_at"`
	// Previous is the engine's triage when an agent re-routed the item.
	Previous *Triage `json:"previous,omitempty"`
}
