package invariants

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/bazaar-shop/bazaar/services/orders/orderevents"
	"github.com/bazaar-shop/bazaar/services/payments/paymentevents"
	"github.com/bazaar-shop/bazaar/services/users/userevents"
)

// Group is a consumer group and the streams it reads. Inbox says that its consumer
// records every event it handles in the notifications database's inbox, so that each
// event can be checked one by one; a group without one is checked by its position in
// the stream only.
type Group struct {
	Name    string
	Streams []string
	Inbox   bool
}

// Groups are Bazaar's consumer groups (docs/contract.md, "Events").
var Groups = []Group{
	{Name: "notifications", Streams: []string{"events.users", "events.orders", "events.payments"}, Inbox: true},
	{Name: "gateway", Streams: []string{"events.inventory"}},
}

// dlqStream is where consumers put what they could not handle (pkg/events.DLQStream).
const dlqStream = "events.dlq"

// notifying are the event types notifications turns into one notification (and one
// e-mail) each, with the kind it gives them.
var notifying = map[string]string{
	string(userevents.TypeRegistered):  "welcome",
	string(orderevents.TypeConfirmed):  "order_confirmed",
	string(orderevents.TypeCancelled):  "order_cancelled",
	string(paymentevents.TypeRefunded): "payment_refunded",
	string(orderevents.TypeDailySales): "daily_sales_report",
}

type eventsCheck struct {
	redisURL string
	expected []deadLetter
}

type deadLetter struct{ stream, eventID string }

// CheckEvents adds the event rules, read from the users, inventory, payments and
// orders outboxes, the notifications inbox and the Redis at redisURL:
//
//   - outbox-unpublished: every outbox row is published (published_at set);
//   - event-unconsumed: every group of Groups exists on each of its streams, has no
//     entry delivered and not acknowledged, and has been delivered the stream's last
//     entry; and every published event of a stream an inbox group reads is in its
//     inbox;
//   - dead-letter: the DLQ holds exactly the entries ExpectDeadLetter names, one per
//     group that reads their stream, and nothing else.
//
// The Databases must include Users and Notifications.
func CheckEvents(redisURL string) Option {
	return func(s *scope) {
		if s.events == nil {
			s.events = &eventsCheck{}
		}
		s.events.redisURL = redisURL
	}
}

// ExpectDeadLetter says that the entry with event id eventID put on stream on
// purpose (a poison message) belongs in the DLQ: once for each group that reads the
// stream, and in no inbox. It is used with CheckEvents.
func ExpectDeadLetter(stream, eventID string) Option {
	return func(s *scope) {
		if s.events == nil {
			s.events = &eventsCheck{}
		}
		s.events.expected = append(s.events.expected, deadLetter{stream, eventID})
	}
}

// CheckMail adds the e-mail rules, read from the notifications database and the
// Mailpit whose web address is mailpitURL:
//
//   - email-unsent: every notification is sent;
//   - email-once: every event that owes an e-mail (user.registered, order.confirmed,
//     order.cancelled, payment.refunded, report.daily_sales) has exactly one
//     notification; every sent notification exactly one e-mail in Mailpit (by its
//     Message-ID) and every e-mail a notification; and every order exactly one
//     e-mail per outcome, found by the tail of its id in the subject ("Your order
//     1A2B3C4D is confirmed"): one "confirmed" for an order that was confirmed (a
//     customer's cancellation comes after one), one "cancelled" for a cancelled
//     order, none otherwise.
//
// Copies of one e-mail (the same Message-ID twice, which docs/events.md allows: a
// crash after the SMTP server took a message and before it was marked sent sends it
// again) count once; Report.Delivery.EmailCopies says how many there were.
func CheckMail(mailpitURL string) Option {
	return func(s *scope) { s.mailpit = strings.TrimRight(mailpitURL, "/") }
}

// rulesOf lists the rules a check with sc applies.
func rulesOf(sc scope) []string {
	rules := []string{RuleUnsettled, RuleMissingSaga, RuleOrderTotal, RuleConfirmedMoney, RuleConfirmedStock,
		RuleConfirmedPrice, RuleCancelledMoney, RuleCancelledStock, RuleOrphanMoney, RuleOrphanStock,
		RuleNegativeStock, RuleConservation}
	if sc.ledger {
		rules = append(rules, RuleStockLedger)
	}
	if sc.events != nil {
		rules = append(rules, RuleUnpublished, RuleUnconsumed, RuleDeadLetter)
	}
	if sc.mailpit != "" {
		rules = append(rules, RuleEmailUnsent, RuleEmailOnce)
	}
	return rules
}

// DeliveryReport is what the event and mail rules looked at.
type DeliveryReport struct {
	OutboxRows    int            // rows in the four outboxes
	Streams       map[string]int // entries per stream (XLEN)
	Inbox         int            // events in notifications' inbox
	DeadLetters   int            // entries in the DLQ
	Notifications int
	Emails        int // messages in Mailpit
	// EmailCopies counts messages whose Message-ID another message has too (the
	// second and later copies), and CopiedEmails names up to 20 of those Message-IDs.
	EmailCopies  int
	CopiedEmails []string
}

type outboxRow struct {
	service, id, stream, typ, subject string
	seq                               int64
	published                         bool
}

type notificationRow struct {
	id, eventID, kind, status, order, subject, recipient, err string
	attempts                                                  int
}

// mailMessage is a message as Mailpit's API lists it.
type mailMessage struct {
	ID        string `json:"ID"`
	MessageID string `json:"MessageID"`
	Subject   string `json:"Subject"`
	To        []struct {
		Address string `json:"Address"`
	} `json:"To"`
}

// deliveryViolations applies the event and mail rules; w is the saga rules' world
// (its orders, for the e-mail per outcome).
func deliveryViolations(ctx context.Context, dbs Databases, sc scope, w *world) ([]Violation, DeliveryReport, error) {
	var vs []Violation
	add := func(rule, order, format string, args ...any) {
		vs = append(vs, Violation{Rule: rule, OrderID: order, Detail: fmt.Sprintf(format, args...)})
	}
	rep := DeliveryReport{Streams: map[string]int{}}
	if dbs.Users == "" || dbs.Notifications == "" {
		return nil, rep, errors.New("invariants: the event and mail rules need the users and notifications database URLs too")
	}

	// Notifications first, the outboxes after: an event is in its outbox before it
	// can be handled, so every inbox row and notification read here has its event in
	// the later read.
	inbox, notes, err := readNotifications(ctx, dbs.Notifications)
	if err != nil {
		return nil, rep, fmt.Errorf("notifications database: %w", err)
	}
	rep.Inbox, rep.Notifications = len(inbox), len(notes)
	var outbox []outboxRow
	for _, svc := range []struct{ name, url string }{
		{"users", dbs.Users}, {"inventory", dbs.Inventory}, {"payments", dbs.Payments}, {"orders", dbs.Orders},
	} {
		rows, err := readOutbox(ctx, svc.name, svc.url)
		if err != nil {
			return nil, rep, fmt.Errorf("%s database: %w", svc.name, err)
		}
		outbox = append(outbox, rows...)
	}
	rep.OutboxRows = len(outbox)

	if ec := sc.events; ec != nil {
		evs, err := eventViolations(ctx, ec, outbox, inbox, &rep)
		if err != nil {
			return nil, rep, err
		}
		vs = append(vs, evs...)
	}
	if sc.mailpit == "" {
		return vs, rep, nil
	}

	// E-mail per event: exactly one notification.
	byEvent := map[string][]notificationRow{}
	for _, n := range notes {
		byEvent[n.eventID] = append(byEvent[n.eventID], n)
	}
	known := map[string]bool{}
	for _, r := range outbox {
		known[r.id] = true
		kind, ok := notifying[r.typ]
		if !ok || !r.published {
			continue
		}
		switch ns := byEvent[r.id]; {
		case len(ns) == 0:
			add(RuleEmailOnce, orderOf(r), "%s %s (subject %s) has no notification: it owes a %s e-mail", r.typ, r.id, r.subject, kind)
		case len(ns) > 1:
			add(RuleEmailOnce, orderOf(r), "%s %s has %d notifications", r.typ, r.id, len(ns))
		}
	}
	for _, n := range notes {
		if !known[n.eventID] {
			add(RuleEmailOnce, n.order, "notification %s (%s) is for event %s, which no outbox has", n.id, n.kind, n.eventID)
		}
		if n.status != "sent" {
			add(RuleEmailUnsent, n.order, "notification %s (%s to %s) is %s after %d attempts: %s", n.id, n.kind, n.recipient, n.status, n.attempts, or(n.err, "no error"))
		}
	}

	mails, err := listMail(ctx, sc.mailpit)
	if err != nil {
		return nil, rep, fmt.Errorf("mailpit: %w", err)
	}
	rep.Emails = len(mails)
	// Copies of one e-mail share its Message-ID ("<notification id>@<domain>"):
	// count each once, keyed by the notification id in it.
	byNote := map[string][]mailMessage{}
	for _, m := range mails {
		id := notificationOf(m.MessageID)
		byNote[id] = append(byNote[id], m)
	}
	for _, id := range slices.Sorted(maps.Keys(byNote)) {
		if n := len(byNote[id]); n > 1 {
			rep.EmailCopies += n - 1
			if len(rep.CopiedEmails) < 20 {
				rep.CopiedEmails = append(rep.CopiedEmails, fmt.Sprintf("%s ×%d", byNote[id][0].MessageID, n))
			}
		}
	}
	noteByID := map[string]notificationRow{}
	for _, n := range notes {
		noteByID[n.id] = n
		if n.status == "sent" && len(byNote[n.id]) == 0 {
			add(RuleEmailOnce, n.order, "notification %s (%s to %s, %q) is sent but Mailpit has no e-mail with its Message-ID", n.id, n.kind, n.recipient, n.subject)
		}
	}

	// E-mail per order outcome, by the order's tail in the subject.
	tails := map[string][]string{} // tail → orders
	for _, o := range w.orders {
		tails[tail(o.id)] = append(tails[tail(o.id)], o.id)
	}
	type outcome struct{ confirmed, cancelled int }
	perOrder := map[string]*outcome{}
	for _, id := range slices.Sorted(maps.Keys(byNote)) {
		m := byNote[id][0]
		note, explained := noteByID[id]
		if !explained {
			add(RuleEmailOnce, "", "e-mail %q to %s (Message-ID %s) is no notification's", m.Subject, addresses(m), m.MessageID)
		}
		sub := orderSubject.FindStringSubmatch(m.Subject)
		if sub == nil {
			continue
		}
		var order string
		switch cands := tails[sub[1]]; {
		case explained && note.order != "":
			order = note.order
			if tail(order) != sub[1] {
				add(RuleEmailOnce, order, "e-mail %q (Message-ID %s) names order %s, its notification is for order %s", m.Subject, id, sub[1], order)
			}
		case len(cands) == 1:
			order = cands[0]
		default:
			add(RuleEmailOnce, "", "e-mail %q (Message-ID %s) names order %s, which is %d orders' tail", m.Subject, id, sub[1], len(cands))
			continue
		}
		c := perOrder[order]
		if c == nil {
			c = &outcome{}
			perOrder[order] = c
		}
		if sub[2] == "is confirmed" {
			c.confirmed++
		} else {
			c.cancelled++
		}
	}
	for _, o := range w.orders {
		if o.status != "confirmed" && o.status != "cancelled" {
			continue // unsettled: reported as such
		}
		wantConfirmed, wantCancelled := 0, 0
		if o.status == "confirmed" || o.reason == "customer_request" {
			wantConfirmed = 1
		}
		if o.status == "cancelled" {
			wantCancelled = 1
		}
		got := perOrder[o.id]
		if got == nil {
			got = &outcome{}
		}
		if got.confirmed != wantConfirmed || got.cancelled != wantCancelled {
			add(RuleEmailOnce, o.id, "%s%s order has %d \"confirmed\" and %d \"cancelled\" e-mails; want %d and %d",
				o.status, reasonSuffix(o.reason), got.confirmed, got.cancelled, wantConfirmed, wantCancelled)
		}
	}
	return vs, rep, nil
}

// eventViolations applies the outbox, consumer and DLQ rules.
func eventViolations(ctx context.Context, ec *eventsCheck, outbox []outboxRow, inbox map[string]bool, rep *DeliveryReport) ([]Violation, error) {
	var vs []Violation
	add := func(rule, order, format string, args ...any) {
		vs = append(vs, Violation{Rule: rule, OrderID: order, Detail: fmt.Sprintf(format, args...)})
	}
	for _, r := range outbox {
		if !r.published {
			add(RuleUnpublished, orderOf(r), "%s's outbox row %d (%s %s, subject %s) is not published", r.service, r.seq, r.typ, r.id, r.subject)
		}
	}

	opt, err := redis.ParseURL(ec.redisURL)
	if err != nil {
		return nil, fmt.Errorf("redis URL: %w", err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()

	inboxed := map[string]bool{} // streams an inbox group reads
	readers := map[string][]string{}
	for _, g := range Groups {
		for _, s := range g.Streams {
			readers[s] = append(readers[s], g.Name)
			if g.Inbox {
				inboxed[s] = true
			}
			c, err := groupState(ctx, rdb, s, g.Name)
			if err != nil {
				return nil, err
			}
			rep.Streams[s] = int(c.length)
			switch {
			case !c.exists:
				add(RuleUnconsumed, "", "group %s does not exist on %s (%d entries)", g.Name, s, c.length)
			case c.pending > 0:
				add(RuleUnconsumed, "", "group %s has %d entries of %s delivered and not acknowledged", g.Name, c.pending, s)
			}
			if c.exists && compareIDs(c.lastDelivered, c.lastEntry) < 0 {
				add(RuleUnconsumed, "", "group %s has been delivered %s up to %s; its last entry is %s", g.Name, s, c.lastDelivered, c.lastEntry)
			}
		}
	}
	poison := map[string]bool{}
	for _, d := range ec.expected {
		poison[d.eventID] = true
		if inbox[d.eventID] {
			add(RuleDeadLetter, "", "the poison event %s on %s was handled (it is in the inbox)", d.eventID, d.stream)
		}
	}
	for _, r := range outbox {
		if r.published && inboxed[r.stream] && !inbox[r.id] {
			add(RuleUnconsumed, orderOf(r), "%s %s (subject %s) was published to %s but notifications never handled it", r.typ, r.id, r.subject, r.stream)
		}
	}

	dlq, err := rdb.XRange(ctx, dlqStream, "-", "+").Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("xrange %s: %w", dlqStream, err)
	}
	rep.DeadLetters = len(dlq)
	got := map[deadLetter][]string{} // expected entry → groups that dead-lettered it
	for _, m := range dlq {
		str := func(k string) string { s, _ := m.Values[k].(string); return s }
		d := deadLetter{str("dlq_stream"), str("id")}
		if poison[d.eventID] && slices.Contains(ec.expected, d) {
			got[d] = append(got[d], str("dlq_group"))
			continue
		}
		add(RuleDeadLetter, orderIfOrder(str("type"), str("subject")), "DLQ entry %s: %s %s (subject %s) from %s, group %s, after %s deliveries: %s",
			m.ID, or(str("type"), "(no type)"), or(str("id"), "(no id)"), str("subject"), d.stream, str("dlq_group"), str("dlq_deliveries"), str("dlq_error"))
	}
	for _, d := range ec.expected {
		groups := slices.Sorted(slices.Values(got[d]))
		if want := slices.Sorted(slices.Values(readers[d.stream])); !slices.Equal(groups, want) {
			add(RuleDeadLetter, "", "the poison event %s on %s was dead-lettered by groups %v; want once by each of %v", d.eventID, d.stream, groups, want)
		}
	}
	return vs, nil
}

type groupInfo struct {
	exists                   bool
	length, pending, lag     int64 // lag: -1 when Redis cannot tell
	lastDelivered, lastEntry string
}

// groupState is where group stands on stream.
func groupState(ctx context.Context, rdb *redis.Client, stream, group string) (groupInfo, error) {
	var g groupInfo
	info, err := rdb.XInfoStream(ctx, stream).Result()
	if err != nil {
		if strings.Contains(err.Error(), "no such key") {
			return g, nil
		}
		return g, fmt.Errorf("xinfo stream %s: %w", stream, err)
	}
	g.length, g.lastEntry = info.Length, info.LastGeneratedID
	if info.Length == 0 {
		g.lastEntry = "0-0" // nothing to deliver (trimmed or never written)
	}
	groups, err := rdb.XInfoGroups(ctx, stream).Result()
	if err != nil {
		return g, fmt.Errorf("xinfo groups %s: %w", stream, err)
	}
	for _, x := range groups {
		if x.Name == group {
			g.exists, g.pending, g.lag, g.lastDelivered = true, x.Pending, x.Lag, x.LastDeliveredID
		}
	}
	return g, nil
}

// compareIDs orders two stream ids ("ms-seq").
func compareIDs(a, b string) int {
	am, as := splitID(a)
	bm, bs := splitID(b)
	if am != bm {
		if am < bm {
			return -1
		}
		return 1
	}
	switch {
	case as < bs:
		return -1
	case as > bs:
		return 1
	}
	return 0
}

func splitID(id string) (uint64, uint64) {
	ms, seq, _ := strings.Cut(id, "-")
	a, _ := strconv.ParseUint(ms, 10, 64)
	b, _ := strconv.ParseUint(seq, 10, 64)
	return a, b
}

func readOutbox(ctx context.Context, service, url string) ([]outboxRow, error) {
	var out []outboxRow
	err := readOnly(ctx, url, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id::text, stream, type, subject, seq, published_at IS NOT NULL FROM outbox ORDER BY seq`)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (outboxRow, error) {
			o := outboxRow{service: service}
			err := r.Scan(&o.id, &o.stream, &o.typ, &o.subject, &o.seq, &o.published)
			return o, err
		})
		return err
	})
	return out, err
}

func readNotifications(ctx context.Context, url string) (map[string]bool, []notificationRow, error) {
	inbox := map[string]bool{}
	var notes []notificationRow
	err := readOnly(ctx, url, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT event_id::text FROM inbox`)
		if err != nil {
			return err
		}
		var id string
		if _, err := pgx.ForEachRow(rows, []any{&id}, func() error { inbox[id] = true; return nil }); err != nil {
			return err
		}
		rows, err = tx.Query(ctx, `SELECT id::text, event_id::text, kind, status, COALESCE(data->>'order_id', ''),
			subject, recipient, attempts, COALESCE(error, '') FROM notifications ORDER BY created_at, id`)
		if err != nil {
			return err
		}
		notes, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (notificationRow, error) {
			var n notificationRow
			err := r.Scan(&n.id, &n.eventID, &n.kind, &n.status, &n.order, &n.subject, &n.recipient, &n.attempts, &n.err)
			return n, err
		})
		return err
	})
	return inbox, notes, err
}

// listMail reads every message's summary from Mailpit, a page at a time, again if
// the count changed while it read.
func listMail(ctx context.Context, base string) ([]mailMessage, error) {
	// Its own transport: an httptest server closing in the same process (a test's)
	// closes http.DefaultTransport's idle connections under requests (see
	// internal/testkit/testhttp).
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	page := func(start int) (total int, ms []mailMessage, err error) {
		u := base + "/api/v1/messages?" + url.Values{"start": {strconv.Itoa(start)}, "limit": {"1000"}}.Encode()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return 0, nil, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
			return 0, nil, fmt.Errorf("GET %s: %s %s", u, resp.Status, b)
		}
		var body struct {
			Total    int           `json:"total"`
			Messages []mailMessage `json:"messages"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			return 0, nil, fmt.Errorf("GET %s: %w", u, err)
		}
		return body.Total, body.Messages, nil
	}
	for try := 0; ; try++ {
		seen := map[string]bool{}
		var all []mailMessage
		first, start := -1, 0
		for {
			total, ms, err := page(start)
			if err != nil {
				return nil, err
			}
			if first < 0 {
				first = total
			}
			for _, m := range ms {
				if !seen[m.ID] {
					seen[m.ID] = true
					all = append(all, m)
				}
			}
			start += len(ms)
			if len(ms) == 0 || start >= total {
				if total == first && len(all) == total || try == 2 {
					return all, nil
				}
				break
			}
		}
	}
}

// orderSubject matches the subjects of the order e-mails (services/notifications,
// notification.subject): the order's tail and its outcome.
var orderSubject = regexp.MustCompile(`^Your order ([0-9A-F]{8}) (is confirmed|was cancelled)$`)

// tail is how the e-mails name an order: the last 8 hex digits of its id, in capitals.
func tail(id string) string { return strings.ToUpper(id[max(0, len(id)-8):]) }

// notificationOf is the notification id in an e-mail's Message-ID (as Mailpit lists
// it, without angle brackets): services/notifications makes it "<id>@<domain of
// MAIL_FROM>".
func notificationOf(messageID string) string { id, _, _ := strings.Cut(messageID, "@"); return id }

func orderOf(r outboxRow) string { return orderIfOrder(r.typ, r.subject) }

// orderIfOrder is the subject of an order event (an order id), else "".
func orderIfOrder(typ, subject string) string {
	if strings.HasPrefix(typ, "order.") {
		return subject
	}
	return ""
}

func reasonSuffix(reason string) string {
	if reason == "" {
		return ""
	}
	return " (" + reason + ")"
}

func addresses(m mailMessage) string {
	var to []string
	for _, a := range m.To {
		to = append(to, a.Address)
	}
	return strings.Join(to, ", ")
}
