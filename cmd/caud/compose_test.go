package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"gopkg.in/yaml.v3"

	"github.com/ipn-cgsi/caud/config"
)

// docker-compose.yml cannot run here (no Docker engine), so this checks what can be checked: every
// file it names exists, and caud accepts the configuration it passes.
func TestComposeFileIsConsistent(t *testing.T) {
	root := filepath.Join("..", "..")
	b, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Services map[string]struct {
			Build *struct {
				Context    string
				Dockerfile string
			}
			Command     []string
			Environment map[string]string
			Volumes     []string
		}
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var replicas int
	for name, svc := range doc.Services {
		if svc.Build != nil {
			if _, err := os.Stat(filepath.Join(root, svc.Build.Context, svc.Build.Dockerfile)); err != nil {
				t.Errorf("%s: dockerfile: %v", name, err)
			}
		}
		mounts := map[string]string{}
		for _, v := range svc.Volumes {
			parts := strings.Split(v, ":")
			if strings.HasPrefix(parts[0], "./") {
				host := filepath.Join(root, parts[0])
				if _, err := os.Stat(host); err != nil {
					t.Errorf("%s: volume %s: %v", name, v, err)
				}
				mounts[parts[1]] = host
			}
		}
		if !strings.HasPrefix(name, "caud") {
			continue
		}
		replicas++
		args := make([]string, len(svc.Command))
		for i, a := range svc.Command {
			if host, ok := mounts[a]; ok {
				a = host
			}
			args[i] = a
		}
		interp := regexp.MustCompile(`\$\{([A-Z_]+)[^}]*\}`)
		for k, v := range svc.Environment {
			t.Setenv(k, interp.ReplaceAllString(v, "token-from-env"))
		}
		cfg, err := config.Load(args)
		if err != nil {
			t.Fatalf("%s: caud refuses the compose configuration: %v", name, err)
		}
		if cfg.NATS.IsEmbedded() || len(cfg.NATS.URLs) != 3 || cfg.NATS.Replicas != 3 || cfg.HTTP.Token == "" {
			t.Errorf("%s: nats %+v, token set %v", name, cfg.NATS, cfg.HTTP.Token != "")
		}
		app := NewApp(cfg, nil)
		if err := app.checkListen(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if replicas != 2 {
		t.Fatalf("%d caud replicas, want 2", replicas)
	}
}

// The compose cluster's nats-server configuration loads as nats-server reads it, with the
// environment docker-compose.yml gives each node, and leaves nothing open: caud's user in an
// account with JetStream, no anonymous client, credentials on every route.
func TestComposeNATSRequiresCredentials(t *testing.T) {
	root := filepath.Join("..", "..")
	var doc struct {
		Services map[string]struct{ Environment map[string]string }
	}
	b, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	if err == nil {
		err = yaml.Unmarshal(b, &doc)
	}
	if err != nil {
		t.Fatal(err)
	}
	interp := regexp.MustCompile(`\$\{([A-Z_]+)[^}]*\}`)
	nodes := 0
	for name, svc := range doc.Services {
		if !strings.HasPrefix(name, "nats-") {
			if strings.HasPrefix(name, "caud") && (svc.Environment["CAU_NATS_USER"] != "caud" || svc.Environment["CAU_NATS_PASSWORD"] == "") {
				t.Errorf("%s: no NATS credentials in its environment: %v", name, svc.Environment)
			}
			continue
		}
		nodes++
		for k, v := range svc.Environment {
			t.Setenv(k, interp.ReplaceAllString(v, "secret-of-$1"))
		}
		opts, err := server.ProcessConfigFile(filepath.Join(root, "config", "compose", "nats.conf"))
		if err != nil {
			t.Fatalf("%s: nats.conf: %v", name, err)
		}
		if opts.ServerName != name || !opts.JetStream || opts.NoAuthUser != "" {
			t.Errorf("%s: server_name %q jetstream %v no_auth_user %q", name, opts.ServerName, opts.JetStream, opts.NoAuthUser)
		}
		var caud *server.User
		for _, u := range opts.Users {
			if u.Username == "caud" {
				caud = u
			}
		}
		if caud == nil || caud.Account == nil || caud.Account.Name != "CAU" || caud.Password != "secret-of-CAUD_NATS_PASSWORD" {
			t.Errorf("%s: user caud %+v", name, caud)
		}
		if opts.SystemAccount != "SYS" {
			t.Errorf("%s: system account %q", name, opts.SystemAccount)
		}
		if opts.Cluster.Username != "route" || opts.Cluster.Password != "secret-of-NATS_ROUTE_PASSWORD" {
			t.Errorf("%s: routes accepted without credentials: %q", name, opts.Cluster.Username)
		}
		if len(opts.Routes) != 3 {
			t.Errorf("%s: %d routes, want 3", name, len(opts.Routes))
		}
		for _, r := range opts.Routes {
			if p, _ := r.User.Password(); r.User.Username() != "route" || p != "secret-of-NATS_ROUTE_PASSWORD" {
				t.Errorf("%s: route %s solicited without the route credentials", name, r.Redacted())
			}
		}
	}
	if nodes != 3 {
		t.Fatalf("%d nats nodes, want 3", nodes)
	}
}
