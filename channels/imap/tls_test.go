package imap

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

// selfSigned returns a server certificate for 127.0.0.1 and a pool that trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "imap.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

// startTLSServer serves imapmemserver over implicit TLS or with STARTTLS on 127.0.0.1:0.
func startTLSServer(t *testing.T, cert tls.Certificate, implicit bool) string {
	t.Helper()
	mem := imapmemserver.New()
	u := imapmemserver.NewUser(testUser, testPass)
	if err := u.Create("INBOX", nil); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		raw := synthMail(900 + i)
		if _, err := u.Append("INBOX", &literal{strings.NewReader(string(raw)), int64(len(raw))}, &imap.AppendOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	mem.AddUser(u)
	tlsConfig := &tls.Config{Certificates: []tls.Certificate{cert}}
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps:      imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapUIDPlus: {}, imap.CapMove: {}, imap.CapIdle: {}},
		TLSConfig: tlsConfig,
		Logger:    log.New(io.Discard, "", 0),
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var l net.Listener = ln
	if implicit {
		l = tls.NewListener(ln, tlsConfig)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

type literal struct {
	io.Reader
	n int64
}

func (l *literal) Size() int64 { return l.n }

// Mail is read over implicit TLS and over STARTTLS with a verified certificate, and a certificate
// the configuration does not trust is refused: no mail is read from a server that may be an
// impostor, and /readyz says why.
func TestTLSModes(t *testing.T) {
	cert, pool := selfSigned(t)
	for _, mode := range []string{TLSImplicit, TLSStartTLS} {
		t.Run(mode, func(t *testing.T) {
			env := startNATS(t)
			addr := startTLSServer(t, cert, mode == TLSImplicit)
			o := env.options(addr)
			o.TLS, o.TLSConfig = mode, &tls.Config{RootCAs: pool}
			runMailbox(t, o, env.Sink)
			waitFor(t, 15*time.Second, "3 requests over "+mode, func() bool { return env.inboundCount(t) == 3 })
		})
		t.Run(mode+"/untrusted", func(t *testing.T) {
			env := startNATS(t)
			addr := startTLSServer(t, cert, mode == TLSImplicit)
			o := env.options(addr)
			o.TLS, o.TLSConfig = mode, &tls.Config{RootCAs: x509.NewCertPool()}
			r := runMailbox(t, o, env.Sink)
			waitFor(t, 15*time.Second, "health reports the certificate", func() bool {
				for _, h := range r.mb.Health(context.Background()) {
					if !h.OK && strings.Contains(h.Detail, "certificate") {
						return true
					}
				}
				return false
			})
			if n := env.inboundCount(t); n != 0 {
				t.Fatalf("%d requests read from an untrusted server", n)
			}
		})
	}
}
