package e2e

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// mailpitMessage is a message as Mailpit's search API lists it.
type mailpitMessage struct {
	ID      string `json:"ID"`
	Subject string `json:"Subject"`
	To      []struct {
		Address string `json:"Address"`
	} `json:"To"`
	Snippet string `json:"Snippet"`
}

// mailTo polls the stack's Mailpit until at least n messages to addr arrived, and
// returns them.
func mailTo(t *testing.T, addr string, n int) []mailpitMessage {
	t.Helper()
	return mailAt(t, mailpitURL, addr, n)
}

// mailAt is mailTo for the Mailpit at base.
func mailAt(t *testing.T, base, addr string, n int) []mailpitMessage {
	t.Helper()
	var got []mailpitMessage
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		resp, err := client.Get(base + "/api/v1/search?query=" + url.QueryEscape(`to:"`+addr+`"`))
		if err != nil {
			continue
		}
		var page struct {
			Messages []mailpitMessage `json:"messages"`
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if err == nil && len(page.Messages) >= n {
			return page.Messages
		}
		got = page.Messages
	}
	t.Fatalf("%d messages to %s arrived in Mailpit, want %d", len(got), addr, n)
	return nil
}

type notificationDoc struct {
	ID        string     `json:"id"`
	Kind      string     `json:"kind"`
	Subject   string     `json:"subject"`
	Status    string     `json:"status"`
	CreatedAt time.Time  `json:"created_at"`
	SentAt    *time.Time `json:"sent_at"`
}

// A user registered through the gateway gets a welcome e-mail in Mailpit and a sent
// notification in their list: users → outbox → relay → events.users → notifications'
// consumer → email:send task → SMTP.
func TestWelcomeEmailArrivesAndIsListedAsSent(t *testing.T) {
	setup(t)
	email := newEmail(t)
	register(t, email, "correct horse", "Grace Hopper")
	tok := login(t, email, "correct horse")

	msgs := mailTo(t, email, 1)
	if len(msgs) != 1 || !strings.Contains(strings.ToLower(msgs[0].Subject), "welcome") {
		t.Fatalf("mail to %s: %+v; want one welcome message", email, msgs)
	}

	var list struct {
		Items      []notificationDoc `json:"items"`
		NextCursor *string           `json:"next_cursor"`
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		decode(t, do(t, request{Method: "GET", Path: "/api/v1/notifications", Token: tok.AccessToken}), http.StatusOK, &list)
		if len(list.Items) == 1 && list.Items[0].Status == "sent" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("notifications: %+v; want one sent welcome", list)
		}
	}
	n := list.Items[0]
	if n.Kind != "welcome" {
		t.Fatalf("notification of kind %q; want welcome", n.Kind)
	}
	if n.SentAt == nil {
		t.Fatalf("notification %+v without sent_at; want the time the mail went", n)
	}
	if n.Subject != msgs[0].Subject {
		t.Fatalf("notification subject %q; want the mail's, %q", n.Subject, msgs[0].Subject)
	}
	if list.NextCursor != nil {
		t.Fatalf("notifications next_cursor %q; want none, the one page", *list.NextCursor)
	}

	// Another user sees none of it.
	other := sharedShop().shopper(t)
	var theirs struct {
		Items []notificationDoc `json:"items"`
	}
	decode(t, do(t, request{Method: "GET", Path: "/api/v1/notifications", Token: other.Token}), http.StatusOK, &theirs)
	for _, x := range theirs.Items {
		if x.ID == n.ID {
			t.Fatal("another user sees this user's notification")
		}
	}
	problem(t, do(t, request{Method: "GET", Path: "/api/v1/notifications"}), http.StatusUnauthorized)
}
