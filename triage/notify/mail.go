package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// compose builds the notice as an RFC 5322 message: multipart/alternative with a text and an HTML
// part in UTF-8 (quoted-printable), RFC 2047 subject and names, threaded on the request, marked as an
// automatic reply (RFC 3834) and asking Exchange not to answer it.
func compose(e *Email, date time.Time) ([]byte, error) {
	var h mail.Header
	h.SetDate(date)
	h.SetAddressList("From", []*mail.Address{{Name: e.FromName, Address: e.From}})
	h.SetAddressList("To", []*mail.Address{{Name: e.ToName, Address: e.To}})
	h.SetSubject(e.Subject)
	h.SetMessageID(e.MessageID)
	if e.InReplyTo != "" {
		h.SetMsgIDList("In-Reply-To", []string{e.InReplyTo})
	}
	if len(e.References) > 0 {
		h.SetMsgIDList("References", e.References)
	}
	h.Set("Auto-Submitted", "auto-replied")
	h.Set("X-Auto-Response-Suppress", "All")
	h.Set("MIME-Version", "1.0")
	var b bytes.Buffer
	w, err := mail.CreateInlineWriter(&b, h)
	if err != nil {
		return nil, fmt.Errorf("compose: %w", err)
	}
	for _, p := range []struct{ typ, body string }{{"text/plain", e.Text}, {"text/html", e.HTML}} {
		var ph mail.InlineHeader
		ph.SetContentType(p.typ, map[string]string{"charset": "utf-8"})
		ph.Set("Content-Transfer-Encoding", "quoted-printable")
		pw, err := w.CreatePart(ph)
		if err != nil {
			return nil, fmt.Errorf("compose: %w", err)
		}
		if _, err := io.WriteString(pw, p.body); err != nil {
			return nil, fmt.Errorf("compose: %w", err)
		}
		if err := pw.Close(); err != nil {
			return nil, fmt.Errorf("compose: %w", err)
		}
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("compose: %w", err)
	}
	return b.Bytes(), nil
}

// mailer submits messages over SMTP. Each message uses its own connection: notices are few, and a
// fresh connection never inherits a broken one's state.
type mailer struct {
	o SMTPOptions
}

// sendError says whether a failed send may succeed later.
type sendError struct {
	permanent bool
	err       error
}

func (e *sendError) Error() string { return e.err.Error() }
func (e *sendError) Unwrap() error { return e.err }

func transient(err error) error { return &sendError{err: err} }
func permanent(err error) error { return &sendError{permanent: true, err: err} }

// isPermanent reports whether retrying err cannot help.
func isPermanent(err error) bool {
	var se *sendError
	return errors.As(err, &se) && se.permanent
}

// send submits msg from → to. A 5xx answer to RCPT or DATA (recipient or content refused) is
// permanent; everything else (no connection, timeouts, 4xx, and 5xx to AUTH or MAIL, which are our
// configuration's fault, not the notice's) is transient.
func (m *mailer) send(ctx context.Context, from, to string, msg []byte) error {
	ctx, cancel := context.WithTimeout(ctx, 4*m.o.Timeout)
	defer cancel()
	addr := net.JoinHostPort(m.o.Host, strconv.Itoa(m.o.Port))
	tlsCfg := m.o.TLSConfig
	if tlsCfg == nil {
		tlsCfg = &tls.Config{ServerName: m.o.Host, MinVersion: tls.VersionTLS12}
	}
	dialer := &net.Dialer{Timeout: m.o.Timeout}
	var conn net.Conn
	var err error
	if m.o.TLS == "implicit" {
		conn, err = (&tls.Dialer{NetDialer: dialer, Config: tlsCfg}).DialContext(ctx, "tcp", addr)
	} else {
		conn, err = dialer.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return transient(fmt.Errorf("smtp dial %s: %w", addr, err))
	}
	// Closing the connection is what interrupts a blocked command when ctx ends.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	var c *smtp.Client
	if m.o.TLS == "starttls" {
		if c, err = smtp.NewClientStartTLS(conn, tlsCfg); err != nil {
			conn.Close()
			return transient(fmt.Errorf("smtp starttls: %w", err))
		}
	} else {
		c = smtp.NewClient(conn)
	}
	defer c.Close()
	c.CommandTimeout = m.o.Timeout
	c.SubmissionTimeout = m.o.Timeout
	if err := c.Hello(helloName(from)); err != nil {
		return transient(fmt.Errorf("smtp hello: %w", err))
	}
	if m.o.Username != "" {
		if err := c.Auth(sasl.NewPlainClient("", m.o.Username, m.o.Password)); err != nil {
			return transient(fmt.Errorf("smtp auth: %w", err))
		}
	}
	if err := c.Mail(from, nil); err != nil {
		return transient(fmt.Errorf("smtp mail from: %w", err))
	}
	if err := c.Rcpt(to, nil); err != nil {
		return classify(fmt.Errorf("smtp rcpt to: %w", err))
	}
	wc, err := c.Data()
	if err != nil {
		return classify(fmt.Errorf("smtp data: %w", err))
	}
	if _, err := wc.Write(msg); err != nil {
		return transient(fmt.Errorf("smtp data: %w", err))
	}
	if err := wc.Close(); err != nil {
		return classify(fmt.Errorf("smtp data: %w", err))
	}
	// The message is accepted; a failing QUIT changes nothing.
	_ = c.Quit()
	return nil
}

func classify(err error) error {
	var se *smtp.SMTPError
	if errors.As(err, &se) && se.Code >= 500 && se.Code < 600 {
		return permanent(err)
	}
	return transient(err)
}

func helloName(from string) string {
	for i := len(from) - 1; i >= 0; i-- {
		if from[i] == '@' && i < len(from)-1 {
			return from[i+1:]
		}
	}
	return "localhost"
}
