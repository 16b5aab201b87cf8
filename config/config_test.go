package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"gopkg.in/yaml.v3"
)

// cleanEnv hides any CAU_* variable of the environment running the tests (empty counts as unset).
func cleanEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "CAU_") {
			t.Setenv(k, "")
		}
	}
}

// writeFile writes content to name in a fresh temporary directory and returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func loadFile(t *testing.T, content string, args ...string) (*Config, error) {
	t.Helper()
	p := writeFile(t, "caud.yaml", content)
	return Load(append([]string{"--config", p}, args...))
}

func mustLoad(t *testing.T, content string, args ...string) *Config {
	t.Helper()
	c, err := loadFile(t, content, args...)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return c
}

func TestDefaultsWithoutFile(t *testing.T) {
	cleanEnv(t)
	c, err := Load(nil)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"file", c.File, ""},
		{"data_dir", c.DataDir, "./data"},
		{"roles", c.Roles, []string{"intake", "triage", "queues"}},
		{"log", c.Log, LogConfig{Level: "info", Format: "text"}},
		{"http.listen", c.HTTP.Listen, "127.0.0.1:8080"},
		{"http.max_body_bytes", c.HTTP.MaxBodyBytes, int64(1 << 20)},
		{"nats.url", c.NATS.URL, ""},
		{"nats.urls", len(c.NATS.URLs), 0},
		{"embedded", c.NATS.IsEmbedded(), true},
		{"nats.embedded.listen", c.NATS.Embedded.Listen, "127.0.0.1:4222"},
		{"nats.embedded.store_dir", c.NATS.Embedded.StoreDir, "./data/jetstream"},
		{"nats.embedded.max_memory", c.NATS.Embedded.MaxMemory, int64(256 << 20)},
		{"nats.embedded.max_store", c.NATS.Embedded.MaxStore, int64(10 << 30)},
		{"nats.embedded.auth", c.NATS.Embedded.Auth, true},
		{"nats.embedded.token_file", c.NATS.Embedded.TokenFile, "./data/nats.token"},
		{"imap.lease_ttl", c.IMAP.LeaseTTL, 8 * time.Second},
		{"nats.replicas", c.NATS.Replicas, 1},
		{"nats.dedup_window", c.NATS.DedupWindow, 10 * time.Minute},
		{"nats.retention", c.NATS.Retention, 2160 * time.Hour},
		{"nats.connect_timeout", c.NATS.ConnectTimeout, 5 * time.Second},
		{"imap.mailboxes", len(c.IMAP.Mailboxes), 0},
		{"memo", c.Memo, MemoConfig{Enabled: true, SpoolDir: "./data/spool", MaxBytes: 50 << 20, Workers: 2, PageWorkers: 2, PageTimeout: time.Minute, MaxPages: 20}},
		{"facebook.api_base", c.Social.Facebook.APIBase, "https://graph.facebook.com/v21.0"},
		{"x.api_base", c.Social.X.APIBase, "https://api.x.com/2"},
		{"triage", c.Triage, TriageConfig{MaxDeliver: 5, AckWait: 30 * time.Second, Workers: 4, Batch: 256,
			Learn: LearnConfig{Enabled: true, Interval: 10 * time.Minute, MinNew: 10}}},
		{"queues", c.Queues, QueuesConfig{Lease: 15 * time.Minute, MaxLease: 8 * time.Hour}},
		{"notify", c.Notify, NotifyConfig{MaxAge: 72 * time.Hour, MaxPerSenderPerDay: 5,
			Channels: []string{"email", "memo", "facebook", "x", "phone", "in_person"}, Outcomes: []string{"sai", "informativo", "aclaracion", "no_competente"},
			SMTP: SMTPConfig{Port: 587, TLS: "starttls"}}},
		{"units.file", c.Units.File, ""},
	}
	for _, ck := range checks {
		if !reflect.DeepEqual(ck.got, ck.want) {
			t.Errorf("%s = %#v, want %#v", ck.name, ck.got, ck.want)
		}
	}
	w := strings.Join(c.Warnings(), "\n")
	for _, want := range []string{"http.token", "imap.mailboxes"} {
		if !strings.Contains(w, want) {
			t.Errorf("warnings %q do not mention %s", w, want)
		}
	}
}

func TestEmptyFileKeepsDefaults(t *testing.T) {
	cleanEnv(t)
	for _, content := range []string{"", "# only a comment\n", "---\n", "http:\n"} {
		c := mustLoad(t, content)
		if c.HTTP.Listen != "127.0.0.1:8080" || c.DataDir != "./data" {
			t.Errorf("%q: got %+v", content, c)
		}
	}
}

func TestPrecedence(t *testing.T) {
	cleanEnv(t)
	file := "http:\n  listen: \"127.0.0.1:1111\"\nnats:\n  url: nats://file:4222\n  dedup_window: 20m\nlog:\n  level: warn\n"
	p := writeFile(t, "caud.yaml", file)

	// file > default
	c, err := Load([]string{"--config", p})
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTP.Listen != "127.0.0.1:1111" || c.NATS.URL != "nats://file:4222" || c.Log.Level != "warn" {
		t.Fatalf("file: %+v %+v %+v", c.HTTP, c.NATS.URL, c.Log)
	}
	if c.File != p {
		t.Errorf("File = %q, want %q", c.File, p)
	}

	// env > file
	t.Setenv("CAU_HTTP_LISTEN", "127.0.0.1:2222")
	t.Setenv("CAU_NATS_URL", "nats://env1:4222, nats://env2:4222")
	t.Setenv("CAU_NATS_REPLICAS", "3")
	c, err = Load([]string{"--config", p})
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTP.Listen != "127.0.0.1:2222" {
		t.Errorf("env: http.listen = %q", c.HTTP.Listen)
	}
	if want := []string{"nats://env1:4222", "nats://env2:4222"}; !reflect.DeepEqual(c.NATS.URLs, want) {
		t.Errorf("env: nats.urls = %q, want %q", c.NATS.URLs, want)
	}
	if c.NATS.Replicas != 3 || c.NATS.DedupWindow != 20*time.Minute || c.Log.Level != "warn" {
		t.Errorf("env: replicas %d dedup %s level %s", c.NATS.Replicas, c.NATS.DedupWindow, c.Log.Level)
	}

	// flag > env
	c, err = Load([]string{"--config", p, "--http-listen", "127.0.0.1:3333", "--log-level=debug", "--nats-url", "nats://flag:4222"})
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTP.Listen != "127.0.0.1:3333" || c.Log.Level != "debug" || c.NATS.URL != "nats://flag:4222" {
		t.Errorf("flag: %q %q %q", c.HTTP.Listen, c.Log.Level, c.NATS.URL)
	}
}

func TestEnvForKeysNotInFile(t *testing.T) {
	cleanEnv(t)
	t.Setenv("CAU_SOCIAL_FACEBOOK_APP_SECRET", "fixture-app-secret")
	t.Setenv("CAU_NATS_EMBEDDED_LISTEN", "127.0.0.1:14222")
	t.Setenv("CAU_HTTP_MAX_BODY_BYTES", "2MB")
	t.Setenv("CAU_TRIAGE_ACK_WAIT", "45s")
	t.Setenv("CAU_TRIAGE_MODEL", "/var/lib/caud/modelo.json")
	t.Setenv("CAU_MEMO_ENABLED", "false")
	t.Setenv("CAU_ROLES", "triage, queues")
	t.Setenv("CAU_DATA_DIR", "/var/lib/caud")
	c, err := Load(nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Social.Facebook.AppSecret != "fixture-app-secret" {
		t.Errorf("app_secret = %q", c.Social.Facebook.AppSecret)
	}
	if c.NATS.Embedded.Listen != "127.0.0.1:14222" {
		t.Errorf("embedded.listen = %q", c.NATS.Embedded.Listen)
	}
	if c.HTTP.MaxBodyBytes != 2<<20 {
		t.Errorf("max_body_bytes = %d", c.HTTP.MaxBodyBytes)
	}
	if c.Triage.AckWait != 45*time.Second || c.Memo.Enabled || c.Triage.Model != "/var/lib/caud/modelo.json" {
		t.Errorf("ack_wait %s memo.enabled %v model %q", c.Triage.AckWait, c.Memo.Enabled, c.Triage.Model)
	}
	if !reflect.DeepEqual(c.Roles, []string{"triage", "queues"}) {
		t.Errorf("roles = %q", c.Roles)
	}
	if c.Memo.SpoolDir != "/var/lib/caud/spool" || c.NATS.Embedded.StoreDir != "/var/lib/caud/jetstream" {
		t.Errorf("derived dirs %q %q", c.Memo.SpoolDir, c.NATS.Embedded.StoreDir)
	}
}

func TestEveryKeyHasAnEnvVar(t *testing.T) {
	cleanEnv(t)
	v, _, _ := newViper()
	keys := v.AllKeys()
	for _, k := range keys {
		t.Setenv(envName(k), "from-env-"+k)
	}
	for _, k := range keys {
		if got := v.Get(k); got != "from-env-"+k {
			t.Errorf("%s: %s not bound (got %v)", k, envName(k), got)
		}
	}
	if v.IsSet("imap.mailboxes") {
		t.Error("imap.mailboxes must not come from the environment")
	}
}

func TestRolesFlagAndEmbeddedNone(t *testing.T) {
	cleanEnv(t)
	t.Setenv("CAU_NATS_EMBEDDED_LISTEN", "none")
	c, err := Load([]string{"--roles", "intake", "--data-dir", "/srv/caud/"})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.Roles, []string{"intake"}) || !c.HasRole(RoleIntake) || c.HasRole(RoleTriage) {
		t.Errorf("roles = %q", c.Roles)
	}
	if c.NATS.Embedded.Listen != "" {
		t.Errorf("embedded.listen = %q, want in-process only", c.NATS.Embedded.Listen)
	}
	if c.Memo.SpoolDir != "/srv/caud/spool" {
		t.Errorf("spool_dir = %q", c.Memo.SpoolDir)
	}
	c = mustLoad(t, "nats:\n  embedded:\n    listen: \"\"\n")
	if c.NATS.Embedded.Listen != "" {
		t.Errorf("file embedded.listen \"\" = %q", c.NATS.Embedded.Listen)
	}
}

func TestHelp(t *testing.T) {
	cleanEnv(t)
	for _, arg := range []string{"-h", "--help"} {
		if _, err := Load([]string{arg}); !errors.Is(err, pflag.ErrHelp) {
			t.Errorf("%s: err = %v, want pflag.ErrHelp", arg, err)
		}
	}
}

func TestBadFlags(t *testing.T) {
	cleanEnv(t)
	for _, args := range [][]string{{"--nope"}, {"stray"}, {"--config"}} {
		_, err := Load(args)
		if err == nil || errors.Is(err, ErrInvalid) || errors.Is(err, pflag.ErrHelp) {
			t.Errorf("%q: err = %v", args, err)
		}
	}
}

func TestMissingConfigFile(t *testing.T) {
	cleanEnv(t)
	_, err := Load([]string{"--config", filepath.Join(t.TempDir(), "nope.yaml")})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want fs.ErrNotExist", err)
	}
	t.Setenv("CAU_CONFIG", filepath.Join(t.TempDir(), "nope.yaml"))
	if _, err := Load(nil); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("CAU_CONFIG: err = %v, want fs.ErrNotExist", err)
	}
}

func TestSecretFiles(t *testing.T) {
	cleanEnv(t)
	dir := t.TempDir()
	secret := func(name, value string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(value), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	content := `
http:
  token_file: ` + secret("token", "  api-token\n") + `
nats:
  url: nats://n1:4222
  user: caud
  password_file: ` + secret("nats", "nats-pass\n") + `
social:
  facebook:
    app_secret_file: ` + secret("fb1", "fixture-app-secret\n") + `
    verify_token_file: ` + secret("fb2", "verify\n") + `
    page_access_token_file: ` + secret("fb3", "page\n") + `
  x:
    consumer_secret_file: ` + secret("x1", "fixture-consumer-secret\r\n") + `
    bearer_token_file: ` + secret("x2", "bearer") + `
notify:
  smtp:
    username: cau
    password_file: ` + secret("smtp", "smtp-pass\n") + `
imap:
  mailboxes:
    - name: cau
      address: cau@ipn.mx
      host: "imap.example.mx:993"
      password_file: ` + secret("imap", "imap-pass\n\n") + `
`
	c := mustLoad(t, content)
	got := map[string]string{
		"http.token":                        c.HTTP.Token,
		"nats.password":                     c.NATS.Password,
		"social.facebook.app_secret":        c.Social.Facebook.AppSecret,
		"social.facebook.verify_token":      c.Social.Facebook.VerifyToken,
		"social.facebook.page_access_token": c.Social.Facebook.PageAccessToken,
		"social.x.consumer_secret":          c.Social.X.ConsumerSecret,
		"social.x.bearer_token":             c.Social.X.BearerToken,
		"notify.smtp.password":              c.Notify.SMTP.Password,
		"imap.mailboxes[0].password":        c.IMAP.Mailboxes[0].Password,
	}
	want := map[string]string{
		"http.token":                        "api-token",
		"nats.password":                     "nats-pass",
		"social.facebook.app_secret":        "fixture-app-secret",
		"social.facebook.verify_token":      "verify",
		"social.facebook.page_access_token": "page",
		"social.x.consumer_secret":          "fixture-consumer-secret",
		"social.x.bearer_token":             "bearer",
		"notify.smtp.password":              "smtp-pass",
		"imap.mailboxes[0].password":        "imap-pass",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("secrets:\n got %q\nwant %q", got, want)
	}
	if len(c.secrets()) != len(want) {
		t.Errorf("the test covers %d secrets, the config has %d", len(want), len(c.secrets()))
	}

	// From the environment too.
	t.Setenv("CAU_HTTP_TOKEN_FILE", secret("token2", "env-token\n"))
	c, err := Load(nil)
	if err != nil || c.HTTP.Token != "env-token" {
		t.Errorf("env token_file: %v %+v", err, c)
	}
}

func TestSecretValueAndFile(t *testing.T) {
	cleanEnv(t)
	tok := writeFile(t, "token", "x")
	cases := map[string]string{
		"http.token":                   "http:\n  token: a\n  token_file: " + tok + "\n",
		"social.x.bearer_token":        "social:\n  x:\n    bearer_token: a\n    bearer_token_file: " + tok + "\n",
		"imap.mailboxes[0].password":   "imap:\n  mailboxes:\n    - {name: cau, address: cau@ipn.mx, host: \"h:993\", password: a, password_file: " + tok + "}\n",
		"social.facebook.verify_token": "social:\n  facebook:\n    verify_token: a\n    verify_token_file: " + tok + "\n",
	}
	for key, content := range cases {
		_, err := loadFile(t, content)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "config: "+key+": ") {
			t.Errorf("%s: err = %v", key, err)
		}
	}
	// Env value plus file value: still both.
	t.Setenv("CAU_HTTP_TOKEN", "b")
	if _, err := loadFile(t, "http:\n  token_file: "+tok+"\n"); !errors.Is(err, ErrInvalid) {
		t.Errorf("env token + file token_file: err = %v", err)
	}
}

func TestSecretFileProblems(t *testing.T) {
	cleanEnv(t)
	missing := filepath.Join(t.TempDir(), "missing")
	_, err := loadFile(t, "http:\n  token_file: "+missing+"\n")
	if !errors.Is(err, ErrInvalid) || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "http.token_file") {
		t.Errorf("missing: err = %v", err)
	}
	empty := writeFile(t, "empty", " \n")
	_, err = loadFile(t, "http:\n  token_file: "+empty+"\n")
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "is empty") {
		t.Errorf("empty: err = %v", err)
	}
	big := writeFile(t, "big", strings.Repeat("x", maxSecretBytes+1))
	_, err = loadFile(t, "http:\n  token_file: "+big+"\n")
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("big: err = %v", err)
	}
}

func TestUnknownKeys(t *testing.T) {
	cleanEnv(t)
	cases := map[string]string{
		"nats:\n  replica: 3\n":                                  `caud.yaml:2: unknown key "nats.replica" (did you mean "nats.replicas"?)`,
		"colour: red\n":                                          `unknown key "colour"`,
		"http:\n  listen: \":1\"\n  tokn: x\n":                   `caud.yaml:3: unknown key "http.tokn" (did you mean "http.token"?)`,
		"nats:\n  urls: [a]\n":                                   `unknown key "nats.urls"`,
		"imap:\n  mailboxes:\n    - name: a\n      pasword: x\n": `unknown key "imap.mailboxes[0].pasword" (did you mean "imap.mailboxes[0].password"?)`,
		"file: x\n":     `unknown key "file"`,
		"Data_Dir: x\n": `unknown key "Data_Dir"`,
	}
	for content, want := range cases {
		_, err := loadFile(t, content)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want it to contain %s", content, err, want)
		}
	}
}

func TestShapeErrors(t *testing.T) {
	cleanEnv(t)
	cases := map[string]string{
		"http: 5\n":                             "http: must be a mapping",
		"- a\n- b\n":                            "top level: must be a mapping",
		"imap:\n  mailboxes: x\n":               "imap.mailboxes: must be a list",
		"data_dir: {a: 1}\n":                    "data_dir: must be a value",
		"log:\n  level: [a]\n":                  "log.level: must be a value, not a list",
		"nats:\n  replicas: 1\n  replicas: 3\n": "nats.replicas: duplicate key",
	}
	for content, want := range cases {
		_, err := loadFile(t, content)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", content, err, want)
		}
	}
}

func TestYAMLSyntaxErrorHasLine(t *testing.T) {
	cleanEnv(t)
	_, err := loadFile(t, "data_dir: ./data\nhttp:\n  listen: \"127.0.0.1:8080\n  token: x\nnats: [\n")
	if !errors.Is(err, ErrInvalid) || !regexp.MustCompile(`caud\.yaml: yaml: line \d+`).MatchString(err.Error()) {
		t.Fatalf("err = %v, want the file and line", err)
	}
	_, err = loadFile(t, "http:\n  listen: a\n    token: b\n")
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "line 3") {
		t.Fatalf("err = %v, want line 3", err)
	}
}

func TestTypeErrors(t *testing.T) {
	cleanEnv(t)
	cases := map[string]string{
		"nats:\n  replicas: three\n":                                  "config: nats.replicas: ",
		"nats:\n  dedup_window: 72\n":                                 `config: nats.dedup_window: 72 has no unit`,
		"notify:\n  max_age: 3 days\n":                                `config: notify.max_age: "3 days" is not a duration`,
		"http:\n  max_body_bytes: 12QB\n":                             `config: http.max_body_bytes: "12QB": unknown unit`,
		"memo:\n  max_bytes: -5\n":                                    "config: memo.max_bytes: must be greater than 0 (got -5)",
		"memo:\n  enabled: maybe\n":                                   "config: memo.enabled: ",
		"imap:\n  mailboxes:\n    - {name: a, poll_interval: soon}\n": "config: imap.mailboxes[0].poll_interval: ",
	}
	for content, want := range cases {
		_, err := loadFile(t, content)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", content, err, want)
		}
	}
	t.Setenv("CAU_NATS_RETENTION", "forever")
	if _, err := Load(nil); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "nats.retention") {
		t.Errorf("env: err = %v", err)
	}
}

func TestSizes(t *testing.T) {
	cleanEnv(t)
	c := mustLoad(t, "http:\n  max_body_bytes: 2048\nmemo:\n  max_bytes: \"1.5 GiB\"\nnats:\n  embedded:\n    max_memory: 64mb\n    max_store: 1T\n")
	if c.HTTP.MaxBodyBytes != 2048 || c.Memo.MaxBytes != 3<<29 || c.NATS.Embedded.MaxMemory != 64<<20 || c.NATS.Embedded.MaxStore != 1<<40 {
		t.Errorf("sizes: %d %d %d %d", c.HTTP.MaxBodyBytes, c.Memo.MaxBytes, c.NATS.Embedded.MaxMemory, c.NATS.Embedded.MaxStore)
	}
	good := map[string]int64{"0": 0, "1": 1, "25MB": 25 << 20, "25 MiB": 25 << 20, "512kb": 512 << 10, "1K": 1024, "10B": 10, "0.5k": 512}
	for s, want := range good {
		if got, err := ParseSize(s); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "MB", "-1", "+1", "1QB", "1.2.3MB", "9223372036854775808", "9000000TB", "NaNMB", "1e3"} {
		if got, err := ParseSize(s); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", s, got)
		}
	}
}

// TestValidationNamesTheKey checks each validation error: it wraps ErrInvalid and names the key.
func TestValidationNamesTheKey(t *testing.T) {
	cleanEnv(t)
	// mb returns two valid mailboxes, the second changed by extra (", key: value" pairs).
	mb := func(extra string) string {
		second := map[string]string{"name": "crm", "address": "crm@ipn.mx", "host": `"imap.example.mx:993"`, "password": "x"}
		for _, kv := range strings.Split(strings.TrimPrefix(extra, ", "), ", ") {
			k, v, _ := strings.Cut(kv, ": ")
			second[k] = v
		}
		var fields []string
		for k, v := range second {
			fields = append(fields, k+": "+v)
		}
		return "imap:\n  mailboxes:\n    - {name: cau, address: cau@ipn.mx, host: \"imap.example.mx:993\", password: x}\n    - {" + strings.Join(fields, ", ") + "}\n"
	}
	cases := []struct{ content, want string }{
		{"nats:\n  url: nats://a:4222\n  replicas: 2\n", `config: nats.replicas: must be 1, 3 or 5 (got 2)`},
		{"nats:\n  replicas: 3\n", `config: nats.replicas: must be 1 with the embedded server (got 3)`},
		{"http:\n  listen: abc\n", `config: http.listen: "abc" is not host:port`},
		{"http:\n  listen: \"127.0.0.1:99999\"\n", `config: http.listen: "127.0.0.1:99999" is not host:port`},
		{"http:\n  max_body_bytes: 0\n", `config: http.max_body_bytes: must be greater than 0`},
		{mb(", tls: ssl"), `config: imap.mailboxes[1].tls: must be implicit, starttls or insecure (got "ssl")`},
		{mb(", name: cau"), `config: imap.mailboxes[1].name: "cau" is already used by imap.mailboxes[0]`},
		{mb(", channel: email.cau"), `config: imap.mailboxes[1].channel: "email.cau" is already used`},
		{mb(", channel: \"email.*\""), `config: imap.mailboxes[1].channel: "email.*" is not a subject suffix`},
		{mb(", name: CRM"), `config: imap.mailboxes[1].name: "CRM": use lowercase`},
		{mb(", address: nobody"), `config: imap.mailboxes[1].address: "nobody" is not an e-mail address`},
		{mb(", host: imap.example.mx"), `config: imap.mailboxes[1].host: "imap.example.mx" is not host:port`},
		{mb(", flag_only: true, processed_folder: Hechos"), `config: imap.mailboxes[1].processed_folder: must be empty with flag_only`},
		{mb(", processed_folder: INBOX"), `config: imap.mailboxes[1].processed_folder: must differ from folder`},
		{mb(", poll_interval: 10ms"), `config: imap.mailboxes[1].poll_interval: must be at least 1s`},
		{mb(", max_message_bytes: -1"), `config: imap.mailboxes[1].max_message_bytes: must be greater than 0`},
		{"imap:\n  mailboxes:\n    - {host: \"h:1\"}\n", `config: imap.mailboxes[0].name: required`},
		{"imap:\n  mailboxes:\n    - {name: a, address: a@b.mx, host: \"h:1\"}\n", `config: imap.mailboxes[0].password: required`},
		{"roles: [intake, billing]\n", `config: roles: must be intake, triage or queues (got "billing")`},
		{"roles: [intake, intake]\n", `config: roles: "intake" is listed twice`},
		{"roles: []\n", `config: roles: must list at least one`},
		{"log:\n  level: loud\n", `config: log.level: must be debug, info, warn or error (got "loud")`},
		{"log:\n  format: xml\n", `config: log.format: must be text or json (got "xml")`},
		{"data_dir: \"\"\n", `config: data_dir: must not be empty`},
		{"nats:\n  url: http://a:4222\n", `config: nats.url: "http://a:4222": scheme must be nats, tls, ws or wss`},
		{"nats:\n  url: \"nats://a:4222, nats://\"\n", `config: nats.url[1]: "nats://" has no host`},
		{"nats:\n  embedded:\n    listen: localhost\n", `config: nats.embedded.listen: "localhost" is not host:port`},
		{"nats:\n  embedded:\n    max_store: 0\n", `config: nats.embedded.max_store: must be greater than 0`},
		{"nats:\n  dedup_window: 30s\n", `config: nats.dedup_window: must be at least 1m0s (got 30s)`},
		{"nats:\n  retention: 5m\n", `config: nats.retention: must be at least nats.dedup_window`},
		{"nats:\n  connect_timeout: 0s\n", `config: nats.connect_timeout: must be at least`},
		{"nats:\n  url: nats://a:1\n  user: u\n", `config: nats.password: required with nats.user`},
		{"nats:\n  url: nats://a:1\n  password: p\n", `config: nats.user: required with nats.password`},
		{"nats:\n  url: nats://a:1\n  token: t\n  creds_file: c\n", `config: nats.token: cannot be combined with nats.creds_file`},
		{"nats:\n  tls:\n    cert_file: c\n", `config: nats.tls: cert_file and key_file go together`},
		{"memo:\n  workers: 0\n", `config: memo.workers: must be greater than 0 (got 0)`},
		{"social:\n  facebook:\n    api_base: graph\n", `config: social.facebook.api_base: "graph" is not an http(s) URL`},
		{"social:\n  x:\n    api_base: \"ftp://x\"\n", `config: social.x.api_base: "ftp://x" is not an http(s) URL`},
		{"triage:\n  max_deliver: 0\n", `config: triage.max_deliver: must be greater than 0`},
		{"triage:\n  ack_wait: 0s\n", `config: triage.ack_wait: must be at least 1s`},
		{"triage:\n  workers: -1\n", `config: triage.workers: must be greater than 0`},
		{"triage:\n  batch: 0\n", `config: triage.batch: must be greater than 0`},
		{"queues:\n  lease: 0s\n", `config: queues.lease: must be at least 1s`},
		{"queues:\n  lease: 1h\n  max_lease: 30m\n", `config: queues.max_lease: must be at least queues.lease (1h0m0s) (got 30m0s)`},
		{"notify:\n  max_age: 1s\n", `config: notify.max_age: must be at least 1m0s`},
		{"notify:\n  smtp:\n    tls: ssl\n", `config: notify.smtp.tls: must be starttls, implicit or none (got "ssl")`},
		{"notify:\n  smtp:\n    port: 0\n", `config: notify.smtp.port: must be between 1 and 65535 (got 0)`},
		{"notify:\n  smtp:\n    host: \"smtp.ipn.mx:587\"\n", `config: notify.smtp.host: "smtp.ipn.mx:587": give the port in notify.smtp.port`},
		{"notify:\n  enabled: true\n", `config: notify.smtp.host: required when notify.enabled is true`},
		{"notify:\n  enabled: true\n  smtp: {host: smtp.ipn.mx}\n", `config: notify.smtp.from: required when notify.enabled is true`},
		{"notify:\n  smtp: {from: \"not an address\"}\n", `config: notify.smtp.from: "not an address" is not an e-mail address`},
		{"notify:\n  smtp: {password: p}\n", `config: notify.smtp.username: required with notify.smtp.password`},
		{"units:\n  file: /nonexistent/units.yaml\n", `config: units.file: load units: open /nonexistent/units.yaml`},
	}
	for _, tc := range cases {
		_, err := loadFile(t, tc.content)
		if err == nil {
			t.Errorf("%q: no error, want %s", tc.content, tc.want)
			continue
		}
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%q: %v does not wrap ErrInvalid", tc.content, err)
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q:\n got %v\nwant %s", tc.content, err, tc.want)
		}
	}
}

func TestValidationCollectsAllProblems(t *testing.T) {
	cleanEnv(t)
	_, err := loadFile(t, "nats:\n  url: nats://a:1\n  replicas: 2\nhttp:\n  listen: abc\nlog:\n  format: xml\n")
	if err == nil {
		t.Fatal("no error")
	}
	for _, key := range []string{"nats.replicas", "http.listen", "log.format"} {
		if !strings.Contains(err.Error(), "config: "+key+":") {
			t.Errorf("%v does not name %s", err, key)
		}
	}
	if n := strings.Count(err.Error(), "\n") + 1; n != 3 {
		t.Errorf("%d lines, want 3:\n%v", n, err)
	}
}

func TestMailboxDefaults(t *testing.T) {
	cleanEnv(t)
	c := mustLoad(t, `
imap:
  mailboxes:
    - name: cau
      address: cau@ipn.mx
      host: "imap.example.mx:993"
      password: x
    - name: crm
      address: crm@ipn.mx
      host: "imap.example.mx:143"
      tls: starttls
      username: crm-user
      password: y
      flag_only: true
      max_message_bytes: 10MB
      poll_interval: 30s
      channel: email.crm2
`)
	want := []Mailbox{
		{Name: "cau", Address: "cau@ipn.mx", Host: "imap.example.mx:993", TLS: "implicit", Username: "cau@ipn.mx",
			Password: "x", Folder: "INBOX", ProcessedFolder: "Procesados", QuarantineFolder: "Cuarentena",
			MaxMessageBytes: 25 << 20, PollInterval: time.Minute, Channel: "email.cau"},
		{Name: "crm", Address: "crm@ipn.mx", Host: "imap.example.mx:143", TLS: "starttls", Username: "crm-user",
			Password: "y", Folder: "INBOX", FlagOnly: true, QuarantineFolder: "Cuarentena",
			MaxMessageBytes: 10 << 20, PollInterval: 30 * time.Second, Channel: "email.crm2"},
	}
	if !reflect.DeepEqual(c.IMAP.Mailboxes, want) {
		t.Errorf("mailboxes:\n got %+v\nwant %+v", c.IMAP.Mailboxes, want)
	}
	if strings.Contains(strings.Join(c.Warnings(), "\n"), "imap.mailboxes") {
		t.Errorf("warnings mention mailboxes although two are configured: %q", c.Warnings())
	}
	// Mailboxes never come from the environment.
	t.Setenv("CAU_IMAP_MAILBOXES", "garbage")
	c, err := Load(nil)
	if err != nil || len(c.IMAP.Mailboxes) != 0 {
		t.Errorf("CAU_IMAP_MAILBOXES: %v %+v", err, c)
	}
}

func TestWarnings(t *testing.T) {
	cleanEnv(t)
	c := mustLoad(t, `
http:
  token: t
nats:
  dedup_window: 2m
  embedded:
    listen: "0.0.0.0:4222"
    auth: false
imap:
  mailboxes:
    - {name: cau, address: cau@ipn.mx, host: "imap.example.mx:143", tls: insecure, password: x}
notify:
  enabled: true
  smtp: {host: smtp.ipn.mx, tls: none, from: cau@ipn.mx}
social:
  facebook: {app_secret: s}
`)
	w := strings.Join(c.Warnings(), "\n")
	for _, want := range []string{"imap.mailboxes[0] (cau): tls is insecure", "nats.dedup_window is 2m0s", "notify.smtp.tls is none",
		"nats.embedded.listen 0.0.0.0:4222 is not loopback", "nats.embedded.auth is off", "social.facebook.verify_token"} {
		if !strings.Contains(w, want) {
			t.Errorf("warnings lack %q:\n%s", want, w)
		}
	}
	if strings.Contains(w, "http.token") {
		t.Errorf("token set but warned: %s", w)
	}
}

// TestExampleIsValid loads caud.example.yaml: it must be valid and give exactly the defaults, so the
// defaults it documents are the real ones.
func TestExampleIsValid(t *testing.T) {
	cleanEnv(t)
	c, err := Load([]string{"--config", "caud.example.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	d, err := Load(nil)
	if err != nil {
		t.Fatal(err)
	}
	c.File = ""
	if !reflect.DeepEqual(c, d) {
		t.Errorf("example differs from the defaults:\nexample  %+v\ndefaults %+v", c, d)
	}
}

// TestExampleDocumentsEveryKey checks that every key viper knows appears in caud.example.yaml, and
// every mailbox field in its commented mailbox example.
func TestExampleDocumentsEveryKey(t *testing.T) {
	b, err := os.ReadFile("caud.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			key := joinKey(prefix, k)
			have[key] = true
			if sub, ok := v.(map[string]any); ok {
				walk(key, sub)
			}
		}
	}
	walk("", doc)

	v := viper.New()
	flatten("", reflect.ValueOf(defaults()), func(key string, val any) { v.SetDefault(key, val) })
	keys := v.AllKeys()
	if len(keys) < 50 {
		t.Fatalf("only %d keys known to viper", len(keys))
	}
	keys = append(keys, "imap.mailboxes")
	sort.Strings(keys)
	for _, k := range keys {
		if !have[k] {
			t.Errorf("caud.example.yaml does not document %s", k)
		}
		if envName(k) != "CAU_"+strings.ToUpper(strings.ReplaceAll(k, ".", "_")) {
			t.Errorf("env name of %s", k)
		}
	}
	for name := range schema().children["imap"].children["mailboxes"].elem.children {
		if !regexp.MustCompile(`(?m)^\s*#\s+(- )?` + name + `:`).Match(b) {
			t.Errorf("caud.example.yaml does not document imap.mailboxes[].%s", name)
		}
	}
	// And nothing in the file is unknown (Load would refuse it, but say which).
	if errs := checkFile("caud.example.yaml", b); len(errs) > 0 {
		t.Errorf("example: %v", errs)
	}
}

func TestRealisticFile(t *testing.T) {
	cleanEnv(t)
	c := mustLoad(t, `
data_dir: /var/lib/caud
roles: [intake]
log: {level: debug, format: json}
http:
  listen: ":8080"
  token: secret
nats:
  url: "nats://n1:4222,nats://n2:4222,nats://n3:4222"
  replicas: 3
  user: caud
  password: p
  tls: {ca_file: /etc/caud/ca.pem}
imap:
  mailboxes:
    - name: cau
      address: cau@ipn.mx
      host: "imap.example.mx:993"
      password: x
triage:
  catalog: ./catalog.yaml
`)
	if c.NATS.IsEmbedded() || len(c.NATS.URLs) != 3 || c.NATS.Replicas != 3 || c.NATS.Embedded.StoreDir != "/var/lib/caud/jetstream" {
		t.Errorf("nats: %+v", c.NATS)
	}
	if c.Triage.Catalog != "./catalog.yaml" {
		t.Errorf("catalog = %q (relative paths are used as given)", c.Triage.Catalog)
	}
	if w := c.Warnings(); len(w) != 0 {
		t.Errorf("warnings: %q", w)
	}
}

func TestListKeysFromEnvironment(t *testing.T) {
	t.Setenv("CAU_NOTIFY_CHANNELS", "email, X")
	t.Setenv("CAU_ROLES", "intake,triage")
	c, err := Load(nil)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.Notify.Channels, "|") != "email|x" || strings.Join(c.Roles, "|") != "intake|triage" {
		t.Fatalf("channels %q roles %q", c.Notify.Channels, c.Roles)
	}
	t.Setenv("CAU_NOTIFY_OUTCOMES", "sai,nada")
	if _, err := Load(nil); err == nil || !strings.Contains(err.Error(), "notify.outcomes") {
		t.Fatalf("bad outcome accepted: %v", err)
	}
}

// A CAU_* variable that names no key is not silently ignored: the start-up warnings name it and
// the key it was probably meant for; cauctl's own variables are not warned about.
func TestUnknownEnvironmentVariableIsWarned(t *testing.T) {
	t.Setenv("CAU_HTTP_LISTN", "127.0.0.1:9999")
	t.Setenv("CAU_TOKEN", "for-cauctl")
	t.Setenv("CAU_IMAP_MAILBOXES", "cau")
	t.Setenv("CAU_ZZZZZZZZZZZZZZZZZZZZ", "1")
	c, err := Load([]string{"--data-dir", t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	w := strings.Join(c.Warnings(), "\n")
	for _, want := range []string{
		"CAU_HTTP_LISTN names no configuration key and is ignored; did you mean CAU_HTTP_LISTEN?",
		"CAU_IMAP_MAILBOXES names no configuration key and is ignored (mailboxes come only from the config file)",
		"CAU_ZZZZZZZZZZZZZZZZZZZZ names no configuration key and is ignored\n",
	} {
		if !strings.Contains(w+"\n", want) {
			t.Errorf("warnings lack %q:\n%s", want, w)
		}
	}
	if strings.Contains(w, "CAU_TOKEN") {
		t.Errorf("cauctl's CAU_TOKEN warned about:\n%s", w)
	}
}
