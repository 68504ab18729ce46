package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/bazaar-shop/bazaar/internal/devstack"
	"github.com/bazaar-shop/bazaar/pkg/tcpproxy"
)

// The saga under faults: each test has a stack of its own, with the orders service
// tuned (short inline deadline, quick recovery) so that the fault shows in seconds,
// and ends with the invariant checker over the whole stack.

// Payments stopped while orders come in: they answer 202 at once instead of piling up
// behind a dead service (the breaker opens), and once payments is back every one of
// them ends confirmed.
func TestPaymentsDownMidTrafficOrdersGoPendingAndAllSettleWhenItReturns(t *testing.T) {
	setup(t)
	const inline = 2 * time.Second
	s := startStack(t, faultConfig{programEnv: map[string]map[string]string{"orders": {
		"SAGA_INLINE_TIMEOUT": inline.String(), "RECOVER_EVERY": "1s", "BREAKER_COOLDOWN": "1s",
	}}})
	sh := s.shop()
	p := sh.createProduct(t, 200, 700)
	c := sh.newCustomer(t)

	// Three customers' worth of traffic, one order after another each.
	var (
		stop    atomic.Bool
		results = make(chan outcome, 1000)
		wg      sync.WaitGroup
	)
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				var o outcome
				o.at = time.Now()
				o.resp, o.err = send(t.Context(), sh.order(c.Token, orderRequest{Items: []item{{p.ID, 1}}, PaymentMethod: visa}, ""))
				o.took = time.Since(o.at)
				results <- o
			}
		}()
	}
	var before, after []outcome
	for len(before) < 3 {
		before = append(before, <-results)
	}
	if err := s.StopProgram(t.Context(), "payments"); err != nil {
		t.Fatal(err)
	}
	downAt := time.Now()
	for len(after) < 12 {
		if o := <-results; o.at.After(downAt) {
			after = append(after, o)
		} else {
			before = append(before, o)
		}
	}
	stop.Store(true)
	wg.Wait()
	close(results)
	for o := range results {
		if o.at.After(downAt) {
			after = append(after, o)
		} else {
			before = append(before, o)
		}
	}

	var ids []string
	fast := 0
	for i, o := range slices.Concat(before, after) {
		if o.err != nil {
			t.Fatalf("an order request failed: %v", o.err)
		}
		placed := checkPlaced(t, o.resp, c)
		ids = append(ids, placed.ID)
		if o.took > inline+3*time.Second {
			t.Errorf("an order took %s to answer (%d); want at most the inline deadline %s and a margin", o.took, o.resp.StatusCode, inline)
		}
		if i < len(before) {
			continue
		}
		if o.resp.StatusCode != http.StatusAccepted {
			t.Errorf("with payments down an order answered %d %s; want 202 in progress", o.resp.StatusCode, placed.Status)
		}
		if o.took < inline/2 {
			fast++
		}
	}
	// The breaker turns a dead payments into a quick 202, not a wait for the deadline.
	if fast < len(after)*3/4 {
		var took []string
		for _, o := range after {
			took = append(took, o.took.Round(time.Millisecond).String())
		}
		t.Errorf("%d of %d orders placed with payments down answered within %s; want most (took %v)", fast, len(after), inline/2, took)
	}
	if !logged(s.logs.String(), "orders", `"circuit breaker state changed"`, `"downstream":"payments"`, `"to":"open"`) {
		t.Error("orders never logged its payments breaker opening")
	}
	if o := sh.getOrder(t, c.Token, ids[len(ids)-1]); o.terminal() {
		t.Errorf("with payments down, order %s is %s; want it in progress", o.ID, o.Status)
	}

	if err := s.RestartProgram(t.Context(), "payments"); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		o := sh.waitOrder(t, c.Token, id)
		if o.Status != "confirmed" {
			t.Errorf("order %s ended %s (%s) once payments was back; want confirmed", id, o.Status, o.reason())
			continue
		}
		if pays := sh.payments(t, c.Token, id); len(pays) != 1 || pays[0].Status != "captured" {
			t.Errorf("order %s has payments %+v; want one captured", id, pays)
		}
	}
	t.Logf("%d orders before payments stopped, %d while it was down (%d fast)", len(before), len(after), fast)
	sh.waitStock(t, p.ID, 200-len(ids))
	sh.checkInvariants(t)
}

// Orders killed with SIGKILL while a burst of sagas runs: after a restart, recovery
// finishes every one, charging none twice and losing no stock.
func TestOrdersKilledMidSagaFinishEverySagaAfterRestart(t *testing.T) {
	setup(t)
	s := startStack(t, faultConfig{programEnv: map[string]map[string]string{"orders": {"RECOVER_EVERY": "1s"}}})
	sh := s.shop()
	a, b := sh.createProduct(t, 100, 300), sh.createProduct(t, 100, 450)
	c := sh.newCustomer(t)

	const n = 24
	burst := make(chan []outcome, 1)
	go func() {
		burst <- concurrently(context.WithoutCancel(t.Context()), n, func(i int) request {
			pm := visa
			if i%4 == 3 {
				pm = declined // some sagas compensate too
			}
			return sh.order(c.Token, orderRequest{Items: []item{{a.ID, 1 + i%3}, {b.ID, 1}}, PaymentMethod: pm}, "")
		})
	}()
	// Kill it once some sagas have taken steps while others are still running: the
	// burst is then spread over every step of the saga.
	ordersDB := sh.dbs.Orders
	watch, err := pgx.Connect(t.Context(), ordersDB)
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close(context.WithoutCancel(t.Context()))
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(2 * time.Millisecond) {
		var moved, running int
		err := watch.QueryRow(t.Context(), `SELECT count(*) FILTER (WHERE status <> 'pending'),
			count(*) FILTER (WHERE status IN ('pending', 'reserved', 'paid', 'cancelling')) FROM orders`).Scan(&moved, &running)
		if err != nil {
			t.Fatal(err)
		}
		if moved >= 1 && running >= 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the burst's sagas never got going")
		}
	}
	if err := s.KillProgram("orders"); err != nil {
		t.Fatal(err)
	}
	var unfinished int
	var statuses string
	err = watch.QueryRow(t.Context(), `SELECT count(*) FILTER (WHERE s.state <> 'done'),
			COALESCE(string_agg(o.status, ' ' ORDER BY o.status), '')
		FROM orders o JOIN sagas s ON s.order_id = o.id`).Scan(&unfinished, &statuses)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("killed orders with sagas unfinished: %d; orders by status: %s", unfinished, statuses)
	if unfinished == 0 {
		t.Error("every saga had finished when orders was killed: the test tested nothing")
	}
	out := <-burst

	if err := s.RestartProgram(t.Context(), "orders"); err != nil {
		t.Fatal(err)
	}
	answered := 0
	for _, o := range out {
		if o.err == nil && (o.resp.StatusCode == http.StatusCreated || o.resp.StatusCode == http.StatusAccepted) {
			checkPlaced(t, o.resp, c)
			answered++
		}
	}
	sh.checkInvariants(t)

	// Every order that exists, answered or cut off, has ended, and has at most one
	// payment.
	orders := sh.listOrders(t, c.Token)
	if len(orders) < answered {
		t.Errorf("%d orders listed; %d were answered 201/202", len(orders), answered)
	}
	sold := map[string]int{}
	for _, o := range orders {
		o = sh.waitOrder(t, c.Token, o.ID)
		pays := sh.payments(t, c.Token, o.ID)
		captured := 0
		for _, p := range pays {
			if p.Status == "captured" {
				captured++
			}
		}
		switch {
		case len(pays) > 1:
			t.Errorf("order %s has %d payments: %+v", o.ID, len(pays), pays)
		case o.Status == "confirmed" && captured != 1:
			t.Errorf("confirmed order %s has payments %+v", o.ID, pays)
		case o.Status == "cancelled" && captured != 0:
			t.Errorf("cancelled order %s has captured payments %+v", o.ID, pays)
		}
		if o.Status == "confirmed" {
			for _, l := range o.Items {
				sold[l.ProductID] += l.Quantity
			}
		}
	}
	t.Logf("%d requests: %s; %d orders exist", n, describeStatuses(out), len(orders))
	sh.waitStock(t, a.ID, 100-sold[a.ID])
	sh.waitStock(t, b.ID, 100-sold[b.ID])
}

// slowReservations stands between orders and inventory and answers reserve calls
// late: each is passed on at once (so inventory reserves) but its answer held back
// past orders' time-out, so orders retries a reservation that in fact was made. Every
// other call passes straight through. A TCP-level delay would not do: it slows the
// quote that comes first too, and the order would never be created.
type slowReservations struct {
	*httptest.Server
	delay atomic.Int64 // time.Duration

	mu    sync.Mutex
	calls map[string]int // reserve calls seen, by order id
}

// retried is the most reserve calls one order got, and the calls in all.
func (s *slowReservations) retried() (most, all int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.calls {
		most = max(most, n)
		all += n
	}
	return most, all
}

func newSlowReservations(t *testing.T, target string) *slowReservations {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	// A caller that hung up is the point of this proxy, not worth a log line.
	proxy.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, _ error) { w.WriteHeader(http.StatusBadGateway) }
	s := &slowReservations{calls: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d := time.Duration(s.delay.Load())
		if r.Method != http.MethodPost || r.URL.Path != "/internal/reservations" {
			proxy.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		var req struct {
			OrderID string `json:"order_id"`
		}
		_ = json.Unmarshal(body, &req)
		s.mu.Lock()
		s.calls[req.OrderID]++
		s.mu.Unlock()
		if d == 0 {
			proxy.ServeHTTP(w, r)
			return
		}
		// Detached from the caller, so that inventory gets the whole request even
		// though orders will have hung up by the time it answers.
		rec := httptest.NewRecorder()
		proxy.ServeHTTP(rec, r.WithContext(context.WithoutCancel(r.Context())))
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = io.Copy(w, rec.Body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *slowReservations) setDelay(d time.Duration) { s.delay.Store(int64(d)) }

// Inventory slow beyond orders' time-out: while all of it is slow an order cannot be
// priced and nothing is written; while only its reservations answer late, orders
// retries them, and no order gets its stock reserved twice.
func TestSlowInventoryNeverReservesAnOrderTwice(t *testing.T) {
	setup(t)
	ports, release, err := devstack.HoldPorts(1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	// orders → slowReservations → tcpproxy → inventory's internal listener; the gateway reaches
	// inventory directly.
	tcp, err := tcpproxy.New("127.0.0.1:" + strconv.Itoa(ports[0]))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tcp.Close() })
	slow := newSlowReservations(t, "http://"+tcp.Addr())
	const timeout, delay = time.Second, 3 * time.Second
	s := startStack(t, faultConfig{
		ports: devstack.Ports{InventoryInternal: ports[0]},
		programEnv: map[string]map[string]string{"orders": {
			"INVENTORY_URL": slow.URL, "DOWNSTREAM_TIMEOUT": timeout.String(), "SAGA_INLINE_TIMEOUT": "2s",
			"BREAKER_COOLDOWN": "1s", "RECOVER_EVERY": "1s",
		}},
	})
	sh := s.shop()
	p := sh.createProduct(t, 50, 600)
	c := sh.newCustomer(t)
	inventoryDB := sh.dbs.Inventory

	// All of inventory slow: the quote times out; a clear problem, no order.
	tcp.SetDelay(delay)
	start := time.Now()
	r := do(t, sh.order(c.Token, orderRequest{Items: []item{{p.ID, 1}}, PaymentMethod: visa}, ""))
	if r.StatusCode != http.StatusServiceUnavailable && r.StatusCode != http.StatusGatewayTimeout {
		t.Errorf("with inventory slow: %d %s; want 503 or 504", r.StatusCode, r.Body)
	} else if pr := problem(t, r, r.StatusCode); !strings.Contains(pr.Detail, "inventory") {
		t.Errorf("the problem's detail %q does not name inventory", pr.Detail)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the order took %s to fail; want the few bounded attempts", took)
	}
	if list := sh.listOrders(t, c.Token); len(list) != 0 {
		t.Errorf("an order that could not be priced was stored: %+v", list)
	}
	tcp.SetDelay(0)

	// Only reservations slow: placed, reserved, answered too late, retried.
	slow.setDelay(delay)
	const n = 5
	placed := make([]orderDoc, n)
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := "slow-" + uuid.NewString()
			// The breaker may still be open from the quote's time-outs: try again,
			// with the same key, until orders takes the order.
			for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
				r, err := send(t.Context(), sh.order(c.Token, orderRequest{Items: []item{{p.ID, 1 + i}}, PaymentMethod: visa}, key))
				switch {
				case err == nil && r.StatusCode == http.StatusAccepted:
					_ = json.Unmarshal(r.Body, &placed[i])
					return
				case err == nil && (r.StatusCode == http.StatusServiceUnavailable || r.StatusCode == http.StatusGatewayTimeout) && time.Now().Before(deadline):
					continue
				case err != nil:
					errs <- err.Error()
				default:
					errs <- r.Status + " " + string(r.Body) + "; want 202: the reservation cannot answer in time"
				}
				return
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if t.Failed() {
		t.FailNow()
	}
	// Orders gave up on each reservation it sent; wait until it has sent one again.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		if most, _ := slow.retried(); most >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no reservation was retried in a minute")
		}
	}
	reservedOnce := func(when string) {
		t.Helper()
		for _, o := range placed {
			if k := count(t, inventoryDB, `SELECT count(*) FROM outbox WHERE type = 'stock.reserved' AND data->>'order_id' = $1`, o.ID); k != 1 {
				t.Errorf("%s: order %s reserved %d times; want once", when, o.ID, k)
			}
		}
	}
	want := 50 - n*(n+1)/2 // quantities 1..n
	reservedOnce("while reservations are slow")
	if st := count(t, inventoryDB, `SELECT stock FROM products WHERE id = $1`, p.ID); st != want {
		_, all := slow.retried()
		t.Errorf("while reservations are slow, stock is %d after %d reserve calls; want %d (each order taken once)", st, all, want)
	}

	slow.setDelay(0)
	for _, o := range placed {
		if got := sh.waitOrder(t, c.Token, o.ID); got.Status != "confirmed" {
			t.Errorf("order %s ended %s (%s); want confirmed", o.ID, got.Status, got.reason())
		}
	}
	most, all := slow.retried()
	t.Logf("%d reserve calls for %d orders, at most %d for one", all, n, most)
	reservedOnce("at the end")
	sh.waitStock(t, p.ID, want)
	sh.checkInvariants(t)
}

// count runs a query that returns one integer on the database at dbURL.
func count(t *testing.T, dbURL, sql string, args ...any) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var n int
	if err := conn.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// logged reports whether program logged a line containing every one of parts.
func logged(logs, program string, parts ...string) bool {
	prefix := []byte(program + " ")
	for _, line := range bytes.Split([]byte(logs), []byte("\n")) {
		if !bytes.HasPrefix(line, prefix) {
			continue
		}
		if !slices.ContainsFunc(parts, func(p string) bool { return !bytes.Contains(line, []byte(p)) }) {
			return true
		}
	}
	return false
}
