package smtptest_test

import (
	"errors"
	"net/smtp"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/bazaar-shop/bazaar/internal/testkit/smtptest"
)

const multipartMessage = "From: Bazaar <no-reply@bazaar.local>\r\n" +
	"To: ann@example.com\r\n" +
	"Subject: Hello\r\n" +
	"Message-ID: <n1@bazaar.local>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/alternative; boundary=b1\r\n" +
	"\r\n" +
	"--b1\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"Content-Transfer-Encoding: quoted-printable\r\n" +
	"\r\n" +
	"Caf=C3=A9 time\r\n" +
	".a line that starts with a dot\r\n" +
	"--b1\r\n" +
	"Content-Type: text/html; charset=utf-8\r\n" +
	"\r\n" +
	"<p>Caf\u00e9 time</p>\r\n" +
	"--b1--\r\n"

func TestAcceptsAndRecordsMessages(t *testing.T) {
	t.Parallel()
	s := smtptest.New(t)
	err := smtp.SendMail(s.Addr(), nil, "no-reply@bazaar.local", []string{"ann@example.com", "bob@example.com"}, []byte(multipartMessage))
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := s.WaitFor(1, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	m := msgs[0]
	if m.From != "no-reply@bazaar.local" {
		t.Errorf("envelope from %q, want no-reply@bazaar.local", m.From)
	}
	if to := strings.Join(m.To, ","); to != "ann@example.com,bob@example.com" {
		t.Errorf("envelope to %q, want ann@example.com,bob@example.com", to)
	}
	if got := m.Header.Get("Subject"); got != "Hello" {
		t.Errorf("Subject %q, want Hello", got)
	}
	if got := m.Header.Get("Message-ID"); got != "<n1@bazaar.local>" {
		t.Errorf("Message-ID %q, want <n1@bazaar.local>", got)
	}
	if string(m.Data) != multipartMessage {
		t.Errorf("data differs from what was sent (dot-stuffing or line ends):\n%q", m.Data)
	}
	parts, err := m.Parts()
	if err != nil {
		t.Fatal(err)
	}
	if want := "Caf\u00e9 time\r\n.a line that starts with a dot"; parts["text/plain"] != want {
		t.Errorf("text/plain part %q, want %q", parts["text/plain"], want)
	}
	if want := "<p>Caf\u00e9 time</p>"; parts["text/html"] != want {
		t.Errorf("text/html part %q, want %q", parts["text/html"], want)
	}
	if n := len(s.To("BOB@example.com")); n != 1 {
		t.Errorf("To(BOB@example.com): %d messages, want 1", n)
	}
	if n := len(s.To("carol@example.com")); n != 0 {
		t.Errorf("To(carol@example.com): %d messages, want 0", n)
	}
}

func TestFailMailThenRecover(t *testing.T) {
	t.Parallel()
	s := smtptest.New(t)
	s.FailMail(451, "4.3.0 try again later")
	err := smtp.SendMail(s.Addr(), nil, "a@example.com", []string{"b@example.com"}, []byte("Subject: x\r\n\r\nbody\r\n"))
	var tpErr *textproto.Error
	if !errors.As(err, &tpErr) || tpErr.Code != 451 {
		t.Fatalf("send while failing = %v, want a 451 reply", err)
	}
	if len(s.Messages()) != 0 || s.Rejected() != 1 {
		t.Errorf("%d messages, %d rejected; want 0, 1", len(s.Messages()), s.Rejected())
	}

	s.FailMail(550, "5.1.1 no such user")
	err = smtp.SendMail(s.Addr(), nil, "a@example.com", []string{"b@example.com"}, []byte("Subject: x\r\n\r\nbody\r\n"))
	if !errors.As(err, &tpErr) || tpErr.Code != 550 {
		t.Fatalf("send while failing permanently = %v, want a 550 reply", err)
	}

	s.Recover()
	if err := smtp.SendMail(s.Addr(), nil, "a@example.com", []string{"b@example.com"}, []byte("Subject: x\r\n\r\nbody\r\n")); err != nil {
		t.Fatalf("send after Recover: %v", err)
	}
	if _, err := s.WaitFor(1, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestRefuseThenRecover(t *testing.T) {
	t.Parallel()
	s := smtptest.New(t)
	s.Refuse()
	_, err := smtp.Dial(s.Addr())
	var tpErr *textproto.Error
	if !errors.As(err, &tpErr) || tpErr.Code != 421 {
		t.Fatalf("dial while refusing = %v, want a 421 greeting", err)
	}
	s.Recover()
	c, err := smtp.Dial(s.Addr())
	if err != nil {
		t.Fatalf("dial after Recover: %v", err)
	}
	if err := c.Noop(); err != nil {
		t.Errorf("NOOP: %v", err)
	}
	if err := c.Quit(); err != nil {
		t.Errorf("QUIT: %v", err)
	}
}

func TestProtocolErrorsAndReset(t *testing.T) {
	t.Parallel()
	s := smtptest.New(t)
	c, err := smtp.Dial(s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var tpErr *textproto.Error
	if err := c.Rcpt("b@example.com"); !errors.As(err, &tpErr) || tpErr.Code != 503 {
		t.Errorf("RCPT before MAIL = %v, want 503", err)
	}
	if err := c.Mail("a@example.com"); err != nil {
		t.Fatal(err)
	}
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Data(); !errors.As(err, &tpErr) || tpErr.Code != 503 {
		t.Errorf("DATA after RSET = %v, want 503", err)
	}
	if err := c.Quit(); err != nil {
		t.Errorf("QUIT: %v", err)
	}
	if len(s.Messages()) != 0 {
		t.Errorf("recorded %d messages", len(s.Messages()))
	}
}

func TestWaitForGivesUpAtItsDeadline(t *testing.T) {
	t.Parallel()
	s := smtptest.New(t)
	start := time.Now()
	msgs, err := s.WaitFor(1, 100*time.Millisecond)
	if err == nil {
		t.Fatalf("WaitFor = %d messages, no error; want an error", len(msgs))
	}
	if len(msgs) != 0 {
		t.Fatalf("WaitFor = %d messages, %v; want none and an error", len(msgs), err)
	}
	if waited := time.Since(start); waited < 100*time.Millisecond {
		t.Errorf("gave up after %s", waited)
	}
}

func TestDelayedReplyRecordsFirst(t *testing.T) {
	t.Parallel()
	s := smtptest.New(t)
	s.SetDelay(time.Hour) // the client gives up long before
	c, err := smtp.Dial(s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("a@example.com"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("b@example.com"); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("Subject: slow\r\n\r\nbody\r\n")); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- w.Close() }() // blocks on the delayed 250
	msgs, err := s.WaitFor(1, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if msgs[0].Header.Get("Subject") != "slow" {
		t.Errorf("recorded %q", msgs[0].Header.Get("Subject"))
	}
	select {
	case err := <-closed:
		t.Fatalf("the reply came before the delay: %v", err)
	default:
	}
	s.Close() // drops the session; the waiting client sees an error, Close does not hang
	if err := <-closed; err == nil {
		t.Error("client saw success from a dropped session")
	}
}
