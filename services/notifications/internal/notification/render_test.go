package notification_test

import (
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/bazaar-shop/bazaar/services/notifications/internal/notification"
)

func TestRenderEachKind(t *testing.T) {
	t.Parallel()
	r := recipient(t, "Ann")
	items := []notification.Item{
		{ProductID: prodA, Quantity: 2, UnitPrice: usd(999)},
		{ProductID: prodB, Quantity: 1, UnitPrice: usd(600)},
	}
	for _, tc := range []struct {
		kind notification.Kind
		d    notification.Details
		want []string // in both the text and the HTML
	}{
		{notification.KindWelcome, notification.Details{}, []string{"Hello Ann,", "Welcome to Bazaar"}},
		{notification.KindOrderConfirmed, notification.Details{OrderID: orderID, Total: usd(2598), Items: items},
			[]string{"Hello Ann,", "1A2B3C4D", "is confirmed", "AAAAAAAA", "$9.99", "$19.98", "BBBBBBBB", "$6.00", "$25.98", orderID.String()}},
		{notification.KindOrderCancelled, notification.Details{OrderID: orderID, Total: usd(2598), Reason: notification.ReasonPaymentDeclined},
			[]string{"Hello Ann,", "1A2B3C4D", "was cancelled because", "the payment was declined", "$25.98"}},
		{notification.KindPaymentRefunded, notification.Details{OrderID: orderID, PaymentID: payID, Refunded: usd(1250)},
			[]string{"Hello Ann,", "refunded", "$12.50", "1A2B3C4D", payID.String()}},
	} {
		t.Run(string(tc.kind), func(t *testing.T) {
			t.Parallel()
			c, err := notification.Render(notification.New(uuid.New(), tc.kind, r, tc.d, at))
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(c.Text, w) {
					t.Errorf("text lacks %q:\n%s", w, c.Text)
				}
				if !strings.Contains(c.HTML, w) {
					t.Errorf("HTML lacks %q:\n%s", w, c.HTML)
				}
			}
			if strings.Contains(c.Text, "<") || strings.Contains(c.Text, "<no value>") || strings.Contains(c.HTML, "<no value>") {
				t.Errorf("text has markup or missing values:\n%s", c.Text)
			}
			if !strings.HasPrefix(c.HTML, "<!DOCTYPE html>") || !strings.Contains(c.HTML, "</html>") {
				t.Errorf("HTML is not a whole page:\n%s", c.HTML)
			}
		})
	}
}

func TestRenderEscapesHTML(t *testing.T) {
	t.Parallel()
	name := `<script>alert("x")</script> & <b>Bob</b>`
	n := notification.New(uuid.New(), notification.KindWelcome, recipient(t, name), notification.Details{}, at)
	c, err := notification.Render(n)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(c.HTML, "<script>") || strings.Contains(c.HTML, "<b>Bob") {
		t.Errorf("HTML carries the name's markup:\n%s", c.HTML)
	}
	if !strings.Contains(c.HTML, "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &lt;b&gt;Bob&lt;/b&gt;") {
		t.Errorf("HTML does not show the name escaped:\n%s", c.HTML)
	}
	// Plain text is not markup: the name is shown as given.
	if !strings.Contains(c.Text, "Hello "+name+",") {
		t.Errorf("text does not carry the name:\n%s", c.Text)
	}
}

func TestRenderWithoutNameGreetsAnyway(t *testing.T) {
	t.Parallel()
	c, err := notification.Render(notification.New(uuid.New(), notification.KindWelcome, recipient(t, ""), notification.Details{}, at))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(c.Text, "Hello there,") || !strings.Contains(c.HTML, "Hello there,") {
		t.Errorf("greeting without a name:\n%s\n%s", c.Text, c.HTML)
	}
}

func TestRenderRejectsAnUnknownKind(t *testing.T) {
	t.Parallel()
	n := notification.New(uuid.New(), "birthday", recipient(t, "Ann"), notification.Details{}, at)
	if _, err := notification.Render(n); err == nil {
		t.Error("rendered a kind without templates")
	}
}
