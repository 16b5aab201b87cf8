package channels

import (
	"sync"
	"time"
)

// HealthTracker keeps the readiness checks of one adapter for its Health method: each check's
// state and detail, and since when it fails. The zero value is ready to use; safe for concurrent use.
type HealthTracker struct {
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	mu     sync.Mutex
	checks []Health
}

// Set records check name as ok or failing with detail. Since is set when the check starts failing
// (or is first recorded failing) and cleared when it passes.
func (t *HealthTracker) Set(name string, ok bool, detail string) {
	now := time.Now
	if t.Now != nil {
		now = t.Now
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range t.checks {
		c := &t.checks[i]
		if c.Name != name {
			continue
		}
		if ok {
			c.Since = time.Time{}
		} else if c.OK || c.Since.IsZero() {
			c.Since = now()
		}
		c.OK, c.Detail = ok, detail
		return
	}
	c := Health{Name: name, OK: ok, Detail: detail}
	if !ok {
		c.Since = now()
	}
	t.checks = append(t.checks, c)
}

// SetErr records check name as ok when err is nil, else failing with err's text.
func (t *HealthTracker) SetErr(name string, err error) {
	if err == nil {
		t.Set(name, true, "")
		return
	}
	t.Set(name, false, err.Error())
}

// List returns a copy of the checks in the order they were first set.
func (t *HealthTracker) List() []Health {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]Health(nil), t.checks...)
}
