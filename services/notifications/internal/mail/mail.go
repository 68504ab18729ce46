// Package mail sends the notifications service's e-mail over SMTP (Mailpit locally):
// one connection per message, multipart/alternative with a plain-text and an HTML
// part, and a Message-ID derived from the notification id.
package mail

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	netmail "net/mail"
	"net/smtp"
	"net/textproto"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/services/notifications/internal/notification"
)

// Mailer sends e-mail through the SMTP server at an address, without TLS or
// authentication (the local relay: Mailpit, or a smarthost beside the service).
type Mailer struct {
	addr        string
	from        netmail.Address
	domain      string
	dialTimeout time.Duration
}

var _ notification.Mailer = (*Mailer)(nil)

// New sends through the server at addr (host:port) as from, giving up on a connection
// after dialTimeout. Message-IDs and the HELO name use from's domain.
func New(addr string, from netmail.Address, dialTimeout time.Duration) *Mailer {
	_, domain, _ := strings.Cut(from.Address, "@")
	if domain == "" {
		domain = "localhost"
	}
	return &Mailer{addr: addr, from: from, domain: domain, dialTimeout: dialTimeout}
}

// MessageID is the Message-ID of the e-mail of notification id: the same for every
// copy, so a resend after a crash is recognisable.
func (m *Mailer) MessageID(id uuid.UUID) string { return "<" + id.String() + "@" + m.domain + ">" }

// Send implements notification.Mailer. ctx bounds the whole conversation. A 5xx reply
// is permanent (ErrUndeliverable); everything else (refused or dropped connections,
// 4xx replies, time-outs) may pass.
func (m *Mailer) Send(ctx context.Context, e notification.Email) error {
	msg, err := m.compose(e)
	if err != nil {
		return fmt.Errorf("%w: compose: %w", notification.ErrUndeliverable, err)
	}
	c, err := m.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Mail(m.from.Address); err != nil {
		return classify("MAIL FROM", err)
	}
	if err := c.Rcpt(e.To); err != nil {
		return classify("RCPT TO", err)
	}
	w, err := c.Data()
	if err != nil {
		return classify("DATA", err)
	}
	if _, err := w.Write(msg); err != nil {
		return classify("DATA", err)
	}
	if err := w.Close(); err != nil { // the server's verdict on the message
		return classify("end of DATA", err)
	}
	// The message is accepted; a failed QUIT changes nothing.
	_ = c.Quit()
	return nil
}

// Ping checks that the server answers with a ready greeting: the readiness probe.
func (m *Mailer) Ping(ctx context.Context) error {
	c, err := m.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.Quit()
}

// dial connects and greets. The connection obeys ctx: its deadline, and its
// cancellation, which closes the connection under a blocked read.
func (m *Mailer) dial(ctx context.Context) (*smtp.Client, error) {
	d := net.Dialer{Timeout: m.dialTimeout}
	conn, err := d.DialContext(ctx, "tcp", m.addr)
	if err != nil {
		return nil, fmt.Errorf("connect to the mail server %s: %w", m.addr, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	host, _, _ := net.SplitHostPort(m.addr)
	c, err := smtp.NewClient(&stopOnClose{Conn: conn, stop: stop}, host)
	if err != nil {
		_ = conn.Close()
		stop()
		return nil, classify("greeting", err)
	}
	if err := c.Hello(m.domain); err != nil {
		_ = c.Close()
		return nil, classify("EHLO", err)
	}
	return c, nil
}

// stopOnClose releases the ctx watcher when the connection closes.
type stopOnClose struct {
	net.Conn
	stop func() bool
}

func (c *stopOnClose) Close() error {
	c.stop()
	return c.Conn.Close()
}

// classify wraps an SMTP error with the step it happened at, marking 5xx replies as
// permanent.
func classify(step string, err error) error {
	var reply *textproto.Error
	if errors.As(err, &reply) && reply.Code >= 500 && reply.Code < 600 {
		return fmt.Errorf("%w: %s: %w", notification.ErrUndeliverable, step, err)
	}
	return fmt.Errorf("smtp %s: %w", step, err)
}

// compose writes the message: headers, then a multipart/alternative body with the
// plain-text part first (clients show the last part they can, the HTML).
func (m *Mailer) compose(e notification.Email) ([]byte, error) {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, p := range []struct{ typ, content string }{{"text/plain", e.Text}, {"text/html", e.HTML}} {
		w, err := mw.CreatePart(textproto.MIMEHeader{
			"Content-Type":              {p.typ + "; charset=utf-8"},
			"Content-Transfer-Encoding": {"quoted-printable"},
		})
		if err != nil {
			return nil, err
		}
		qp := quotedprintable.NewWriter(w)
		if _, err := qp.Write([]byte(p.content)); err != nil {
			return nil, err
		}
		if err := qp.Close(); err != nil {
			return nil, err
		}
	}
	if err := mw.Close(); err != nil {
		return nil, err
	}

	var msg bytes.Buffer
	to := netmail.Address{Name: e.ToName, Address: e.To}
	header := []struct{ k, v string }{
		{"From", m.from.String()},
		{"To", to.String()},
		// Q-encoding also turns any CR or LF into =0D =0A: a subject cannot add headers.
		{"Subject", mime.QEncoding.Encode("utf-8", e.Subject)},
		{"Date", e.Date.Format(time.RFC1123Z)},
		{"Message-ID", m.MessageID(e.ID)},
		{"MIME-Version", "1.0"},
		{"Content-Type", mime.FormatMediaType("multipart/alternative", map[string]string{"boundary": mw.Boundary()})},
		{"Auto-Submitted", "auto-generated"}, // RFC 3834: no vacation replies, please
	}
	for _, h := range header {
		fmt.Fprintf(&msg, "%s: %s\r\n", h.k, h.v)
	}
	msg.WriteString("\r\n")
	msg.Write(body.Bytes())
	return msg.Bytes(), nil
}
