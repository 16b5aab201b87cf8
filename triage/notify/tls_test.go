package notify

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestSMTPTLSModes submits over STARTTLS and implicit TLS to a server with a test certificate.
func TestSMTPTLSModes(t *testing.T) {
	hs := httptest.NewUnstartedServer(http.NotFoundHandler())
	hs.StartTLS()
	defer hs.Close()
	serverTLS := &tls.Config{Certificates: hs.TLS.Certificates}
	clientTLS := hs.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	clientTLS.ServerName = "127.0.0.1"
	for _, mode := range []string{"starttls", "implicit"} {
		t.Run(mode, func(t *testing.T) {
			be := &backend{user: "cau@ipn.mx", pass: "secreto"}
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			if mode == "implicit" {
				l = tls.NewListener(l, serverTLS)
			}
			s := newTestServer(be)
			s.TLSConfig = serverTLS
			s.AllowInsecureAuth = false
			go func() { _ = s.Serve(l) }()
			defer s.Close()
			addr := l.Addr().(*net.TCPAddr)
			m := &mailer{o: SMTPOptions{Host: "127.0.0.1", Port: addr.Port, TLS: mode, Username: be.user, Password: be.pass,
				Timeout: 2 * time.Second, TLSConfig: clientTLS}}
			msg, err := compose(&Email{From: "cau@ipn.mx", To: "aruiz@ipn.mx", Subject: "Prueba", MessageID: "caud.1.acuse@ipn.mx", Text: "hola", HTML: "<p>hola</p>"}, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := m.send(ctx, "cau@ipn.mx", "aruiz@ipn.mx", msg); err != nil {
				t.Fatalf("send: %v", err)
			}
			if got := be.messages(); len(got) != 1 || got[0].User != "cau@ipn.mx" {
				t.Fatalf("received %+v", got)
			}
		})
	}
	// Nothing listening: a transient error, in bounded time.
	m := &mailer{o: SMTPOptions{Host: "127.0.0.1", Port: 1, TLS: "none", Timeout: time.Second}}
	if err := m.send(context.Background(), "cau@ipn.mx", "a@ipn.mx", []byte("x")); err == nil || isPermanent(err) {
		t.Errorf("send to a closed port: %v", err)
	}
}
