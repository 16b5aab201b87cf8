package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

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
