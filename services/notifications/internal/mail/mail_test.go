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
	if got.From != "no-reply@bazaar.local" {
		t.Errorf("envelope from %q, want no-reply@bazaar.local", got.From)
	}
	if len(got.To) != 1 {
		t.Errorf("envelope to %q, want one recipient", got.To)
	} else if got.To[0] != "ann@example.com" {
		t.Errorf("envelope to %q, want ann@example.com", got.To[0])
	}
	h := got.Header
	dec := new(mime.WordDecoder)
	subject, err := dec.DecodeHeader(h.Get("Subject"))
	if err != nil {
		t.Errorf("Subject %q: %v", h.Get("Subject"), err)
	} else if subject != "Welcome to Bazaar, Ann Ünal" {
		t.Errorf("Subject %q, want %q", subject, "Welcome to Bazaar, Ann Ünal")
	}
	to, err := h.AddressList("To")
	if err != nil {
		t.Errorf("To %q: %v", h.Get("To"), err)
	} else if len(to) != 1 {
		t.Errorf("To %q: %v, want one address", h.Get("To"), to)
	} else {
		if to[0].Name != "Ann Ünal" {
			t.Errorf("To %q: name %q, want %q", h.Get("To"), to[0].Name, "Ann Ünal")
		}
		if to[0].Address != "ann@example.com" {
			t.Errorf("To %q: address %q, want ann@example.com", h.Get("To"), to[0].Address)
		}
	}
	if fromHdr, err := h.AddressList("From"); err != nil {
		t.Errorf("From %q: %v", h.Get("From"), err)
	} else if fromHdr[0].String() != from.String() {
		t.Errorf("From %q, want %q", fromHdr[0].String(), from.String())
	}
	if date, err := h.Date(); err != nil {
		t.Errorf("Date %q: %v", h.Get("Date"), err)
	} else if !date.Equal(email().Date) {
		t.Errorf("Date %v, want %v", date, email().Date)
	}
	id := h.Get("Message-ID")
	if id != "<0b5e8a4e-0000-4000-8000-000000000001@bazaar.local>" {
		t.Errorf("Message-ID %q, want %q", id, "<0b5e8a4e-0000-4000-8000-000000000001@bazaar.local>")
	}
	if want := m.MessageID(email().ID); id != want {
		t.Errorf("Message-ID %q, want MessageID's %q", id, want)
	}
	if v := h.Get("MIME-Version"); v != "1.0" {
		t.Errorf("MIME-Version %q, want 1.0", v)
	}
	if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "multipart/alternative;") {
		t.Errorf("Content-Type %q, want multipart/alternative", ct)
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
	if err == nil || errors.Is(err, notification.ErrUndeliverable) {
		t.Errorf("451: %v, want a retryable error", err)
	}
	if err == nil || !strings.Contains(err.Error(), "451") {
		t.Errorf("451: %v, want it to say 451", err)
	}

	srv.FailMail(550, "5.1.1 no such user")
	if err := m.Send(t.Context(), email()); !errors.Is(err, notification.ErrUndeliverable) {
		t.Errorf("550: %v, want ErrUndeliverable", err)
	}

	srv.Recover()
	srv.Refuse()
	err = m.Send(t.Context(), email())
	if err == nil || errors.Is(err, notification.ErrUndeliverable) {
		t.Errorf("421 greeting: %v, want a retryable error", err)
	}
	if err == nil || !strings.Contains(err.Error(), "421") {
		t.Errorf("421 greeting: %v, want it to say 421", err)
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
