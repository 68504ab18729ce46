package notification

import (
	"bytes"
	"embed"
	"fmt"
	htmltemplate "html/template"
	"io"
	texttemplate "text/template"
)

// templatesFS holds one pair of templates per kind (<kind>.txt.tmpl, <kind>.html.tmpl)
// and what they share (footer.txt.tmpl, layout.html.tmpl).
//
//go:embed templates/*.tmpl
var templatesFS embed.FS

// The parsed templates, by kind. Parsing happens once, when the program starts; a
// broken template stops it there (and fails the tests) instead of failing e-mails.
var (
	textTemplates = parseTemplates(func(k Kind) (executor, error) {
		return texttemplate.ParseFS(templatesFS, "templates/"+string(k)+".txt.tmpl", "templates/footer.txt.tmpl")
	})
	htmlTemplates = parseTemplates(func(k Kind) (executor, error) {
		t, err := htmltemplate.ParseFS(templatesFS, "templates/layout.html.tmpl", "templates/"+string(k)+".html.tmpl")
		if err != nil {
			return nil, err
		}
		return layout{t}, nil
	})
)

// executor is what text/template and html/template have in common.
type executor interface {
	Execute(w io.Writer, data any) error
}

// layout executes an HTML kind through the shared page layout.
type layout struct{ t *htmltemplate.Template }

func (l layout) Execute(w io.Writer, data any) error { return l.t.ExecuteTemplate(w, "layout", data) }

func parseTemplates(parse func(Kind) (executor, error)) map[Kind]executor {
	out := make(map[Kind]executor, len(Kinds))
	for _, k := range Kinds {
		e, err := parse(k)
		if err != nil {
			panic(fmt.Sprintf("notification: templates of %s: %v", k, err))
		}
		out[k] = e
	}
	return out
}

// Content is a rendered e-mail body, in its two forms.
type Content struct {
	Text string
	HTML string
}

// Render writes n's e-mail as plain text and HTML from its kind's templates. The HTML
// is escaped by html/template, so a name like <script> is shown, never run. It fails
// for a kind without templates.
func Render(n Notification) (Content, error) {
	text, ok := textTemplates[n.Kind]
	html, ok2 := htmlTemplates[n.Kind]
	if !ok || !ok2 {
		return Content{}, fmt.Errorf("no templates for kind %q", n.Kind)
	}
	v := toView(n)
	var tb, hb bytes.Buffer
	if err := text.Execute(&tb, v); err != nil {
		return Content{}, fmt.Errorf("render %s text: %w", n.Kind, err)
	}
	if err := html.Execute(&hb, v); err != nil {
		return Content{}, fmt.Errorf("render %s html: %w", n.Kind, err)
	}
	return Content{Text: tb.String(), HTML: hb.String()}, nil
}

// view is the templates' data: everything already in words, so that templates only
// place values.
type view struct {
	Subject string
	// Why tells the recipient why they get the e-mail (the footer).
	Why       string
	Name      string
	OrderID   string
	OrderRef  string
	PaymentID string
	Total     string
	Refunded  string
	Reason    string
	Items     []itemView
	Sales     *salesView // daily_sales_report
}

type itemView struct {
	Product   string
	Quantity  int
	UnitPrice string
	Total     string
}

type salesView struct {
	Day                          string
	From, To                     string
	Orders, Confirmed, Cancelled int64
	Open                         int64
	Revenue                      []string
	TopProducts                  []productSalesView
}

type productSalesView struct {
	Rank     int
	Product  string
	Quantity int64
	Revenue  string
}

// The footers: a customer has an account; the admin gets reports because of the
// service's REPORT_EMAIL setting, which is where to change it.
const (
	whyCustomer = "You get this e-mail because you have an account at Bazaar."
	whyReport   = "You get this e-mail as Bazaar's report recipient (REPORT_EMAIL)."
)

// reportTime is how a report's range is written: minutes are enough, and the zone
// is said, since the admin may be anywhere.
const reportTime = "2006-01-02 15:04 MST"

func toView(n Notification) view {
	d := n.Details
	v := view{Subject: n.Subject, Why: whyCustomer, Name: d.Name, Total: d.Total.String(), Refunded: d.Refunded.String(), Reason: d.Reason.Words()}
	if d.OrderID != [16]byte{} {
		v.OrderID, v.OrderRef = d.OrderID.String(), short(d.OrderID)
	}
	if d.PaymentID != [16]byte{} {
		v.PaymentID = d.PaymentID.String()
	}
	for _, it := range d.Items {
		v.Items = append(v.Items, itemView{
			Product:   short(it.ProductID),
			Quantity:  it.Quantity,
			UnitPrice: it.UnitPrice.String(),
			Total:     it.Total().String(),
		})
	}
	if r := d.Sales; r != nil {
		v.Why = whyReport
		v.Sales = toSalesView(*r)
	}
	return v
}

func toSalesView(r SalesReport) *salesView {
	sv := &salesView{
		Day:       r.DayString(),
		From:      r.From.UTC().Format(reportTime),
		To:        r.To.UTC().Format(reportTime),
		Orders:    r.Orders,
		Confirmed: r.Confirmed,
		Cancelled: r.Cancelled,
		Open:      r.Open(),
	}
	for _, m := range r.Revenue {
		sv.Revenue = append(sv.Revenue, m.String())
	}
	for i, p := range r.TopProducts {
		sv.TopProducts = append(sv.TopProducts, productSalesView{
			Rank: i + 1, Product: short(p.ProductID), Quantity: p.Quantity, Revenue: p.Revenue.String(),
		})
	}
	return sv
}
