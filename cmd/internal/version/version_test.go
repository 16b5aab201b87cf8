package version

import (
	"runtime"
	"strings"
	"testing"
)

func TestStringNamesTheCommandAndTheToolchain(t *testing.T) {
	s := String("caud")
	if !strings.HasPrefix(s, "caud ") || !strings.Contains(s, runtime.Version()) {
		t.Fatalf("%q", s)
	}
}
