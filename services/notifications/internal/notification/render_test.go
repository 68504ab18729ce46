package notification_test

import (
	"strings"
	"testing"
	"time"

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
		{notification.KindDailySalesReport, notification.Details{Sales: salesReport()},
			[]string{"Hello Ann,", "sales for", "2026-11-25", "2026-11-25 00:00 UTC", "2026-11-26 00:00 UTC",
				"Orders placed", "9", "6", "2", "€12.00", "$1,234.56", "AAAAAAAA", "12", "$155.88", "BBBBBBBB", "$55.88",
				"report recipient", "REPORT_EMAIL"}},
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
			if strings.Contains(c.Text, "<") {
				t.Errorf("text has markup (<), want none:\n%s", c.Text)
			}
			if strings.Contains(c.Text, "<no value>") {
				t.Errorf("text has missing values (<no value>):\n%s", c.Text)
			}
			if strings.Contains(c.HTML, "<no value>") {
				t.Errorf("HTML has missing values (<no value>):\n%s", c.HTML)
			}
			if !strings.HasPrefix(c.HTML, "<!DOCTYPE html>") {
				t.Errorf("HTML is not a whole page: no <!DOCTYPE html> first:\n%s", c.HTML)
			}
			if !strings.Contains(c.HTML, "</html>") {
				t.Errorf("HTML is not a whole page: no </html>:\n%s", c.HTML)
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
	if strings.Contains(c.HTML, "<script>") {
		t.Errorf("HTML carries the name's <script>:\n%s", c.HTML)
	}
	if strings.Contains(c.HTML, "<b>Bob") {
		t.Errorf("HTML carries the name's <b>:\n%s", c.HTML)
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
	if !strings.Contains(c.Text, "Hello there,") {
		t.Errorf("text greeting without a name, want Hello there,:\n%s", c.Text)
	}
	if !strings.Contains(c.HTML, "Hello there,") {
		t.Errorf("HTML greeting without a name, want Hello there,:\n%s", c.HTML)
	}
}

func TestRenderRejectsAnUnknownKind(t *testing.T) {
	t.Parallel()
	n := notification.New(uuid.New(), "birthday", recipient(t, "Ann"), notification.Details{}, at)
	if _, err := notification.Render(n); err == nil {
		t.Error("rendered a kind without templates")
	}
}

// salesReport is a day with sales in two currencies, one order still open.
func salesReport() *notification.SalesReport {
	day := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	return &notification.SalesReport{
		Day: day, From: day, To: day.AddDate(0, 0, 1),
		Orders: 9, Confirmed: 6, Cancelled: 2,
		Revenue: []notification.Money{{Cents: 1200, Currency: "EUR"}, usd(123456)},
		TopProducts: []notification.ProductSales{
			{ProductID: prodA, Quantity: 12, Revenue: usd(15588)},
			{ProductID: prodB, Quantity: 7, Revenue: usd(5588)},
		},
	}
}

func TestRenderDailySalesReport(t *testing.T) {
	t.Parallel()
	n := notification.New(uuid.New(), notification.KindDailySalesReport, recipient(t, "Ada"),
		notification.Details{Sales: salesReport()}, at)
	if n.Subject != "Bazaar daily sales for 2026-11-25" {
		t.Errorf("subject %q", n.Subject)
	}
	c, err := notification.Render(n)
	if err != nil {
		t.Fatal(err)
	}
	// The text lays the figures out line by line, ranked.
	for _, w := range []string{
		"Here are Bazaar's sales for 2026-11-25: the orders placed from\n2026-11-25 00:00 UTC to 2026-11-26 00:00 UTC.",
		"Orders placed: 9\n  confirmed:   6\n  cancelled:   2\n  still open:  1\n",
		"Revenue from confirmed orders:\n  €12.00\n  $1,234.56\n",
		"Top products:\n  1. product AAAAAAAA: 12 sold, $155.88\n  2. product BBBBBBBB: 7 sold, $55.88\n",
	} {
		if !strings.Contains(c.Text, w) {
			t.Errorf("text lacks %q:\n%s", w, c.Text)
		}
	}
	if strings.Contains(c.Text, "account at Bazaar") {
		t.Errorf("the admin is told the report comes with a customer account:\n%s", c.Text)
	}
	// The HTML puts the products in a table, a row each.
	for _, w := range []string{
		"<li>€12.00</li><li>$1,234.56</li>",
		`<tr><td>1</td><td>AAAAAAAA</td><td style="text-align:right">12</td><td style="text-align:right">$155.88</td></tr>`,
		`<tr><td>2</td><td>BBBBBBBB</td><td style="text-align:right">7</td><td style="text-align:right">$55.88</td></tr>`,
		`Still open</td><td style="text-align:right">1</td>`,
	} {
		if !strings.Contains(c.HTML, w) {
			t.Errorf("HTML lacks %q:\n%s", w, c.HTML)
		}
	}
}

func TestRenderDailySalesReportOfAQuietDay(t *testing.T) {
	t.Parallel()
	r := salesReport()
	r.Orders, r.Confirmed, r.Cancelled, r.Revenue, r.TopProducts = 0, 0, 0, nil, nil
	c, err := notification.Render(notification.New(uuid.New(), notification.KindDailySalesReport, recipient(t, "Ada"),
		notification.Details{Sales: r}, at))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"Orders placed: 0\n", "Revenue from confirmed orders:\n  none\n", "Top products:\n  none sold\n"} {
		if !strings.Contains(c.Text, w) {
			t.Errorf("text of a quiet day lacks %q:\n%s", w, c.Text)
		}
	}
	if strings.Contains(c.Text, "still open") {
		t.Errorf("text of a quiet day says still open, want it not to:\n%s", c.Text)
	}
	if !strings.Contains(c.HTML, "None sold.") {
		t.Errorf("HTML of a quiet day lacks None sold.:\n%s", c.HTML)
	}
	if strings.Contains(c.HTML, "<th") {
		t.Errorf("HTML of a quiet day has a table header, want no table:\n%s", c.HTML)
	}
	if strings.Contains(c.HTML, "Still open") {
		t.Errorf("HTML of a quiet day says Still open, want it not to:\n%s", c.HTML)
	}
}

// The admin's name is the only free text in a report (currencies and products are
// parsed); it is escaped like any recipient's.
func TestRenderDailySalesReportEscapesHTML(t *testing.T) {
	t.Parallel()
	name := `<img src=x onerror="alert(1)"> & Co`
	n := notification.New(uuid.New(), notification.KindDailySalesReport, recipient(t, name), notification.Details{Sales: salesReport()}, at)
	c, err := notification.Render(n)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(c.HTML, "<img") {
		t.Errorf("HTML carries the name's markup:\n%s", c.HTML)
	}
	if !strings.Contains(c.HTML, "Hello &lt;img src=x onerror=&#34;alert(1)&#34;&gt; &amp; Co,") {
		t.Errorf("HTML does not show the name escaped:\n%s", c.HTML)
	}
	if !strings.Contains(c.Text, "Hello "+name+",") {
		t.Errorf("text does not carry the name:\n%s", c.Text)
	}
}
