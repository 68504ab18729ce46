package mail_test

import (
	"context"
	"errors"
	"mime"
	netmail "net/mail"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/internal/testkit/closedport"
	"github.com/bazaar-shop/bazaar/internal/testkit/smtptest"
	"github.com/bazaar-shop/bazaar/services/notifications/internal/mail"
	"github.com/bazaar-shop/bazaar/services/notifications/internal/notification"
)

var from = netmail.Address{Name: "Bazaar", Address: "no-reply@bazaar.local"}

func email() notification.Email {
	return notification.Email{
		ID:      uuid.MustParse("0b5e8a4e-0000-4000-8000-000000000001"),
		To:      "ann@example.com",
		ToName:  "Ann Ünal",
		Subject: "Welcome to Bazaar, Ann Ünal",
		Date:    time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC),
		Content: notification.Content{
			Text: "Hello Ann,\n.a line with a leading dot\n" + strings.Repeat("long ", 40) + "\n",
			HTML: "<p>Hello Ann &amp; =friends</p>\n",
		},
	}
}

func TestSendWritesAMultipartAlternativeMessage(t *testing.T) {
	t.Parallel()
	srv := smtptest.New(t)
	m := mail.New(srv.Addr(), from, 5*time.Second)
	if err := m.Send(t.Context(), email()); err != nil {
		t.Fatal(err)
	}
	msgs, err := srv.WaitFor(1, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	got := msgs[0]
	if got.From != "no-reply@bazaar.local" || len(got.To) != 1 || got.To[0] != "ann@example.com" {
		t.Errorf("envelope %q -> %q", got.From, got.To)
	}
	h := got.Header
	dec := new(mime.WordDecoder)
	subject, err := dec.DecodeHeader(h.Get("Subject"))
	if err != nil || subject != "Welcome to Bazaar, Ann Ünal" {
		t.Errorf("Subject %q (%v)", h.Get("Subject"), err)
	}
	to, err := h.AddressList("To")
	if err != nil || len(to) != 1 || to[0].Name != "Ann Ünal" || to[0].Address != "ann@example.com" {
		t.Errorf("To %q: %v %v", h.Get("To"), to, err)
	}
	if fromHdr, err := h.AddressList("From"); err != nil || fromHdr[0].String() != from.String() {
		t.Errorf("From %q", h.Get("From"))
	}
	if date, err := h.Date(); err != nil || !date.Equal(email().Date) {
		t.Errorf("Date %q: %v", h.Get("Date"), err)
	}
	if id := h.Get("Message-ID"); id != "<0b5e8a4e-0000-4000-8000-000000000001@bazaar.local>" || id != m.MessageID(email().ID) {
		t.Errorf("Message-ID %q", id)
	}
	if h.Get("MIME-Version") != "1.0" || !strings.HasPrefix(h.Get("Content-Type"), "multipart/alternative;") {
		t.Errorf("MIME headers %q %q", h.Get("MIME-Version"), h.Get("Content-Type"))
	}
	parts, err := got.Parts()
	if err != nil {
		t.Fatal(err)
	}
	// Quoted-printable and the SMTP dot are undone on the way in; lines end in CRLF.
	wantText := strings.ReplaceAll(email().Text, "\n", "\r\n")
	wantHTML := strings.ReplaceAll(email().HTML, "\n", "\r\n")
	if parts["text/plain"] != wantText || parts["text/html"] != wantHTML {
		t.Errorf("parts %q\nwant text %q html %q", parts, wantText, wantHTML)
	}
	for _, line := range strings.Split(string(got.Data), "\r\n") {
		if len(line) > 998 {
			t.Errorf("a line of %d octets breaks RFC 5322", len(line))
		}
	}
}

func TestSubjectCannotInjectHeaders(t *testing.T) {
	t.Parallel()
	srv := smtptest.New(t)
	e := email()
	e.Subject = "Hi\r\nBcc: victim@example.com"
	if err := mail.New(srv.Addr(), from, 5*time.Second).Send(t.Context(), e); err != nil {
		t.Fatal(err)
	}
	msgs, err := srv.WaitFor(1, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if bcc := msgs[0].Header.Get("Bcc"); bcc != "" {
		t.Errorf("the subject added a Bcc header: %q", bcc)
	}
}

func TestFailuresAreClassified(t *testing.T) {
	t.Parallel()
	srv := smtptest.New(t)
	m := mail.New(srv.Addr(), from, 5*time.Second)

	srv.FailMail(451, "4.3.0 try again later")
	err := m.Send(t.Context(), email())
	if err == nil || errors.Is(err, notification.ErrUndeliverable) || !strings.Contains(err.Error(), "451") {
		t.Errorf("451: %v, want a retryable error", err)
	}

	srv.FailMail(550, "5.1.1 no such user")
	if err := m.Send(t.Context(), email()); !errors.Is(err, notification.ErrUndeliverable) {
		t.Errorf("550: %v, want ErrUndeliverable", err)
	}

	srv.Recover()
	srv.Refuse()
	err = m.Send(t.Context(), email())
	if err == nil || errors.Is(err, notification.ErrUndeliverable) || !strings.Contains(err.Error(), "421") {
		t.Errorf("421 greeting: %v, want a retryable error", err)
	}
	if err := m.Ping(t.Context()); err == nil {
		t.Error("Ping of a refusing server succeeded")
	}

	srv.Recover()
	if err := m.Ping(t.Context()); err != nil {
		t.Errorf("Ping: %v", err)
	}
	if err := m.Send(t.Context(), email()); err != nil {
		t.Errorf("after Recover: %v", err)
	}
	if len(srv.Messages()) != 1 {
		t.Errorf("%d messages accepted, want 1", len(srv.Messages()))
	}
}

func TestNoServer(t *testing.T) {
	t.Parallel()
	addr := closedport.Addr(t)
	err := mail.New(addr, from, 5*time.Second).Send(t.Context(), email())
	if err == nil || errors.Is(err, notification.ErrUndeliverable) {
		t.Errorf("Send to a closed port = %v, want a retryable error", err)
	}
}

func TestSendObeysItsContext(t *testing.T) {
	t.Parallel()
	srv := smtptest.New(t)
	srv.SetDelay(time.Hour)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := mail.New(srv.Addr(), from, 5*time.Second).Send(ctx, email())
	if err == nil {
		t.Fatal("Send succeeded against a server that never answers")
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("Send took %s past its deadline", took)
	}
}
