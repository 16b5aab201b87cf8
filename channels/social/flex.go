package social

import (
	"bytes"
	"encoding/json"
	"strings"
)

// The platforms document one shape per field and send others now and then (a number for a string
// id, one object where the documentation shows an array, a string "true"). The flex types read
// every shape a field has been seen in and read anything else as absent, so that one odd optional
// field never costs the message around it.

// flexList is a JSON array of T that also reads a single T as a one-element list and null, or any
// other non-array, as empty. Elements that do not decode as T are left out; Skipped counts them.
type flexList[T any] struct {
	Items   []T
	Skipped int
}

func (l *flexList[T]) UnmarshalJSON(b []byte) error {
	*l = flexList[T]{}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil
	}
	switch b[0] {
	case '[':
		var raws []json.RawMessage
		if err := json.Unmarshal(b, &raws); err != nil {
			return err
		}
		for _, r := range raws {
			var v T
			if err := json.Unmarshal(r, &v); err != nil {
				l.Skipped++
				continue
			}
			l.Items = append(l.Items, v)
		}
	case '{':
		var v T
		if err := json.Unmarshal(b, &v); err != nil {
			l.Skipped++
			return nil
		}
		l.Items = []T{v}
	default:
		if string(b) != "null" {
			l.Skipped++
		}
	}
	return nil
}

// flexString is a string that also reads a number (as written) or a boolean; objects, arrays and
// null read as "".
type flexString string

func (s *flexString) UnmarshalJSON(b []byte) error {
	*s = ""
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil
	}
	switch {
	case b[0] == '"':
		var v string
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		*s = flexString(v)
	case b[0] == '-' || ('0' <= b[0] && b[0] <= '9') || string(b) == "true" || string(b) == "false":
		*s = flexString(b)
	}
	return nil
}

// flexBool is a boolean that also reads "true"/"1" strings and non-zero numbers as true.
type flexBool bool

func (f *flexBool) UnmarshalJSON(b []byte) error {
	var s flexString
	if err := s.UnmarshalJSON(b); err != nil {
		return err
	}
	switch strings.ToLower(strings.TrimSpace(string(s))) {
	case "true", "1", "yes":
		*f = true
	default:
		*f = false
	}
	return nil
}
