package imap

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
)

const dovecotSystemUser = "caudtest"

// dovecot is a throwaway Dovecot on a free loopback port, plaintext, any user name with testPass.
type dovecot struct {
	Addr string
	Dir  string
}

// startDovecot starts Dovecot from the test. It fails (does not skip) when Dovecot is missing:
// CI must install it (apt-get install -y dovecot-imapd) and run the tests as root.
func startDovecot(t *testing.T) *dovecot {
	t.Helper()
	bin, err := exec.LookPath("dovecot")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/dovecot"); serr == nil {
			bin = "/usr/sbin/dovecot"
		} else {
			t.Fatalf("dovecot is not installed: install it with `apt-get install -y dovecot-imapd` (.ci/run does): %v", err)
		}
	}
	if os.Geteuid() != 0 {
		t.Fatalf("the Dovecot integration test must run as root (it creates the system user %q and runs dovecot)", dovecotSystemUser)
	}
	u, err := user.Lookup(dovecotSystemUser)
	if err != nil {
		if out, err := exec.Command("useradd", "-M", "-r", "-s", "/usr/sbin/nologin", dovecotSystemUser).CombinedOutput(); err != nil {
			t.Fatalf("useradd %s: %v: %s", dovecotSystemUser, err, out)
		}
		if u, err = user.Lookup(dovecotSystemUser); err != nil {
			t.Fatal(err)
		}
	}
	dir, err := os.MkdirTemp("", "caud-dovecot-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	mail := filepath.Join(dir, "mail")
	if err := os.MkdirAll(mail, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("chown", u.Username+":", mail).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v: %s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	conf := filepath.Join(dir, "dovecot.conf")
	cfg := fmt.Sprintf(`protocols = imap
listen = 127.0.0.1
base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = 1
mail_location = maildir:%[2]s/%%n
mail_uid = %[3]s
mail_gid = %[4]s
passdb {
  driver = static
  args = password=%[5]s
}
userdb {
  driver = static
  args = uid=%[3]s gid=%[4]s home=%[2]s/%%n
}
namespace inbox {
  inbox = yes
  separator = /
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = %[6]d
  }
  inet_listener imaps {
    port = 0
  }
}
`, dir, mail, u.Uid, u.Gid, testPass, port)
	if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-F", "-c", conf)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dovecot: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "dovecot.log"))
			t.Fatalf("dovecot did not listen on %s: %v\n%s", addr, err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return &dovecot{Addr: addr, Dir: dir}
}

func dialDovecot(t testing.TB, addr, username string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Login(username, testPass).Wait(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestDovecotIntegration(t *testing.T) {
	dc := startDovecot(t)
	t.Run("mail-edge", func(t *testing.T) {
		env := startNATS(t)
		c := dialDovecot(t, dc.Addr, "edge@ipn.mx")
		edges := readJSONL[edgeManifest](t, "testdata/mail-edge/manifest.jsonl")
		for _, e := range edges {
			appendRaw(t, c, "INBOX", fixtureMail(t, "mail-edge", e.File))
		}
		o := env.options(dc.Addr)
		o.Username, o.Address = "edge@ipn.mx", "edge@ipn.mx"
		r := runMailbox(t, o, env.Sink)
		checkEdgeOutcomes(t, env, r.mb, edges)
		waitFor(t, 5*time.Second, "inbox emptied", func() bool { return folderCount(t, c, "INBOX") == 0 })
		if n := folderCount(t, c, "Procesados"); n != uint32(len(edges)) {
			t.Errorf("Procesados has %d, want %d", n, len(edges))
		}
	})
	t.Run("lenient", func(t *testing.T) { checkLenientThroughMailbox(t, dc.Addr, "lenient@ipn.mx") })
	t.Run("mail", func(t *testing.T) {
		env := startNATS(t)
		c := dialDovecot(t, dc.Addr, "cau@ipn.mx")
		manifest := readJSONL[mailManifest](t, "testdata/mail/manifest.jsonl")
		r := runMailbox(t, env.options(dc.Addr), env.Sink)
		waitFor(t, 10*time.Second, "idle", func() bool { return strings.Contains(r.mb.Health(context.Background())[0].Detail, "idle") })
		// Appended while the adapter idles: pushed, not polled.
		for _, mf := range manifest {
			appendRaw(t, c, "INBOX", fixtureMail(t, "mail", mf.File))
		}
		waitFor(t, 20*time.Second, "30 requests", func() bool { return r.mb.Stats().Published == 30 })
		want := fixtureRequests(t)
		byMID := map[string]string{}
		for _, mf := range manifest {
			byMID[mf.MessageID] = mf.ID
		}
		for _, req := range env.inbound(t) {
			w := want[byMID[req.Source.MessageID]]
			if squeeze(joinSplit(Split{Text: req.Text, Signature: req.Signature, Quoted: req.Quoted})) != squeeze(w.Body) {
				t.Errorf("%s: text differs: %q", w.ID, req.Text)
			}
		}
		if n := env.inboundCount(t); n != 30 {
			t.Errorf("%d requests, want 30", n)
		}
	})
}
