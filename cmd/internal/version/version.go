// Package version says which build of caud's commands is running, for --version: the module
// version and the VCS revision the Go toolchain stamps into the binary.
package version

import (
	"runtime/debug"
	"strings"
)

// String is "<command> <version> (<revision>[, modified], <go version>)"; parts the build did not
// record are left out ("devel" when built without a module version).
func String(command string) string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return command + " devel"
	}
	v := info.Main.Version
	if v == "" || v == "(devel)" {
		v = "devel"
	}
	var extra []string
	var rev string
	modified := false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if modified {
			rev += ", modified"
		}
		extra = append(extra, rev)
	}
	extra = append(extra, info.GoVersion)
	return command + " " + v + " (" + strings.Join(extra, ", ") + ")"
}
