package channels

import "cmp"

// OrDefault returns v, or def when v is zero or negative: how the Options of this module read a
// number left unset ("0 means …").
func OrDefault[T cmp.Ordered](v, def T) T {
	var zero T
	if v <= zero {
		return def
	}
	return v
}
