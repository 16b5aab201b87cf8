package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// ErrInvalid is wrapped by every error about the content of the configuration: YAML syntax, unknown
// keys, values of the wrong type, unreadable *_file secrets and failed validation.
var ErrInvalid = errors.New("invalid configuration")

// Load builds the configuration from args (the command line without the program name), the
// environment, the YAML file named by --config (or CAU_CONFIG) and the defaults, in that order of
// precedence. Without a file, the defaults give a working single-machine setup.
//
// Flags: --config FILE, --data-dir, --http-listen, --nats-url, --log-level, --log-format, --roles.
// Every scalar key can be set by environment as CAU_ + the key path in capitals with "_"
// (nats.embedded.listen is CAU_NATS_EMBEDDED_LISTEN); an empty variable counts as unset.
// imap.mailboxes comes only from the file.
//
// After loading, the *_file secrets are read and their trimmed content stored in the plain field;
// giving both a value and its _file is an error. Relative paths are used as given.
//
// Load returns pflag.ErrHelp after printing the usage on -h/--help, a plain error for bad flags or
// an unreadable config file, and otherwise an error wrapping ErrInvalid that lists every problem,
// one per line, each naming its key ("config: nats.replicas: must be 1, 3 or 5 (got 2)").
func Load(args []string) (*Config, error) {
	v, def, known := newViper()
	cfgFile, err := parseFlags(v, args, def)
	if err != nil {
		return nil, err
	}
	if *cfgFile == "" {
		*cfgFile = os.Getenv("CAU_CONFIG")
	}

	var problems []error
	if *cfgFile != "" {
		b, err := os.ReadFile(*cfgFile)
		if err != nil {
			return nil, fmt.Errorf("config: read file: %w", err)
		}
		problems = checkFile(*cfgFile, b)
		if len(problems) > 0 {
			return nil, &invalidError{problems}
		}
		v.SetConfigType("yaml")
		if err := v.ReadConfig(bytes.NewReader(b)); err != nil {
			return nil, &invalidError{[]error{fmt.Errorf("config: %s: %w", *cfgFile, err)}}
		}
	}

	var c Config
	if err := v.Unmarshal(&c, viper.DecodeHook(decodeHook())); err != nil {
		return nil, &invalidError{decodeProblems(err)}
	}
	c.File = *cfgFile
	c.envWarnings = unknownEnv(os.Environ(), known)
	applyDerived(&c)
	problems = append(problems, readSecrets(&c)...)
	problems = append(problems, c.validate()...)
	if len(problems) > 0 {
		return nil, &invalidError{problems}
	}
	return &c, nil
}

// newViper returns a private viper with every scalar key defaulted and bound to its CAU_ variable,
// the defaults it was given, and the set of those variables.
func newViper() (*viper.Viper, Config, map[string]bool) {
	v := viper.New()
	def := defaults()
	known := map[string]bool{}
	flatten("", reflect.ValueOf(def), func(key string, val any) {
		v.SetDefault(key, val)
		_ = v.BindEnv(key, envName(key)) // fails only without a key
		known[envName(key)] = true
	})
	return v, def, known
}

// otherEnv are CAU_ variables that are not configuration keys: the file, and cauctl's own.
var otherEnv = []string{"CAU_CONFIG", "CAU_SERVER", "CAU_TOKEN", "CAU_AGENT"}

// unknownEnv returns one warning per CAU_* variable of environ that names no key (a typo such as
// CAU_HTTP_LISTN would otherwise be ignored in silence), with the closest known name when one is
// near enough. Unknown variables are warned about, not refused: a shell may export them for other
// tools.
func unknownEnv(environ []string, known map[string]bool) []string {
	var out []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "CAU_") || known[name] || slices.Contains(otherEnv, name) {
			continue
		}
		msg := "environment variable " + name + " names no configuration key and is ignored"
		if strings.HasPrefix(name, "CAU_IMAP_MAILBOXES") {
			msg += " (mailboxes come only from the config file)"
		} else if best := closestEnv(name, known); best != "" {
			msg += "; did you mean " + best + "?"
		}
		out = append(out, msg)
	}
	slices.Sort(out)
	return out
}

// closestEnv is the known name at the smallest edit distance from name, if that distance is at most
// a third of its length (and at most 4).
func closestEnv(name string, known map[string]bool) string {
	best, bestD := "", min(4, len(name)/3)+1
	for k := range known {
		if d := levenshtein([]rune(name), []rune(k)); d < bestD || (d == bestD && k < best) {
			best, bestD = k, d
		}
	}
	if bestD > min(4, len(name)/3) {
		return ""
	}
	return best
}

// parseFlags defines caud's flags on a private FlagSet, parses args and binds the flags to v.
func parseFlags(v *viper.Viper, args []string, def Config) (*string, error) {
	fs := pflag.NewFlagSet("caud", pflag.ContinueOnError)
	fs.SortFlags = false
	cfgFile := fs.String("config", "", "YAML configuration file (env CAU_CONFIG); see caud.example.yaml")
	fs.String("data-dir", def.DataDir, "directory for everything caud keeps on disk (data_dir)")
	fs.String("http-listen", def.HTTP.Listen, "host:port of the HTTP listener (http.listen)")
	fs.String("nats-url", def.NATS.URL, `NATS server URLs, comma-separated; "" runs an embedded server (nats.url)`)
	fs.String("log-level", def.Log.Level, "debug, info, warn or error (log.level)")
	fs.String("log-format", def.Log.Format, "text or json (log.format)")
	fs.StringSlice("roles", def.Roles, "roles this process runs: intake, triage, queues (roles)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: caud [flags]\n\nFlags:\n%s      --version              print the version and exit\n\n", fs.FlagUsages())
		fmt.Fprintf(fs.Output(), "Every configuration key can also be set as CAU_<KEY PATH>, e.g. CAU_NATS_URL.\n")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil, err
		}
		return nil, fmt.Errorf("config: %w", err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("config: unexpected argument %q", fs.Arg(0))
	}
	for key, flag := range map[string]string{
		"data_dir":    "data-dir",
		"http.listen": "http-listen",
		"nats.url":    "nats-url",
		"log.level":   "log-level",
		"log.format":  "log-format",
		"roles":       "roles",
	} {
		if err := v.BindPFlag(key, fs.Lookup(flag)); err != nil {
			return nil, fmt.Errorf("config: bind flag: %w", err)
		}
	}
	return cfgFile, nil
}

// invalidError lists every problem found; it matches ErrInvalid and each problem with errors.Is.
type invalidError struct{ errs []error }

func (e *invalidError) Error() string {
	msgs := make([]string, len(e.errs))
	for i, err := range e.errs {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "\n")
}

func (e *invalidError) Unwrap() []error { return e.errs }

func (e *invalidError) Is(target error) bool { return target == ErrInvalid }

// decodeProblems turns a mapstructure error into one problem per key.
func decodeProblems(err error) []error {
	var out []error
	var walk func(error)
	walk = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		if de, ok := err.(*mapstructure.DecodeError); ok {
			out = append(out, fmt.Errorf("config: %s: %w", de.Name(), de.Unwrap()))
			return
		}
		if inner := errors.Unwrap(err); inner != nil {
			walk(inner) // viper's "decoding failed due to the following error(s)"
			return
		}
		out = append(out, fmt.Errorf("config: %w", err))
	}
	walk(err)
	return out
}
