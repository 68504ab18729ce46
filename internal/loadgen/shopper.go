package loadgen

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// order is an order as the API returns it, as far as a shopper cares.
type order struct {
	ID           string  `json:"id"`
	Status       string  `json:"status"`
	CancelReason *string `json:"cancel_reason"`
}

func (o order) terminal() bool { return o.Status == "confirmed" || o.Status == "cancelled" }

func (o order) reason() string {
	if o.CancelReason == nil {
		return ""
	}
	return *o.CancelReason
}

// orderRequest is POST /api/v1/orders's body.
type orderRequest struct {
	Items         []line `json:"items"`
	PaymentMethod string `json:"payment_method"`
}

// statusEvent is the data of an `event: status` on an order's stream.
type statusEvent struct {
	OrderID      string  `json:"order_id"`
	Status       string  `json:"status"`
	CancelReason *string `json:"cancel_reason"`
}

// plan is what one shopper will do, drawn up front so that the choices do not depend
// on how the system answers.
type plan struct {
	browse, replay, stream, cancel bool
}

// visit is one shopper placing one order, from picking an account to the order's end;
// it records the order's one outcome.
func (r *runner) visit(ctx context.Context, i int) {
	vctx, cancel := context.WithTimeout(ctx, r.cfg.SettleTimeout)
	defer cancel()
	rng := rand.New(rand.NewPCG(r.cfg.Seed, uint64(i)))
	r.stats.begin()
	o := r.shop(vctx, rng)
	if o.status == "failed" && o.reason == ErrInterrupted && ctx.Err() == nil {
		o.reason = ErrTimeout // the visit's own bound ran out, not the run
	}
	r.stats.end(o)
}

func (r *runner) shop(ctx context.Context, rng *rand.Rand) outcome {
	p := plan{
		browse: rng.Float64() < r.cfg.Browse,
		replay: rng.Float64() < r.cfg.Replay,
		stream: rng.Float64() < r.cfg.Stream,
		cancel: rng.Float64() < r.cfg.Cancel,
	}
	a, err := r.pool.pick(ctx)
	if err != nil {
		return outcome{status: "failed", reason: kindOf(err)}
	}
	lines := r.cat.pick(rng, r.cfg.MaxLines, r.cfg.MaxQuantity)
	if p.browse {
		complete := r.browse(ctx, rng)
		lines, complete = r.look(ctx, rng, lines, complete)
		if !complete {
			r.stats.skipBrowse()
		}
	}
	if len(lines) == 0 {
		r.stats.error(ErrNoProducts)
		return outcome{status: "failed", reason: ErrNoProducts}
	}
	body := orderRequest{Items: lines, PaymentMethod: r.cfg.Payments.pick(rng)}
	key := uuid.NewString() // random, never from the seed: a key names its order for good

	t0 := r.clock.Now()
	o, first, err := r.place(ctx, a, body, key)
	if err != nil {
		return outcome{status: "failed", reason: kindOf(err)}
	}
	r.stats.created(o.ID, r.clock.Now().Sub(t0))
	if p.replay {
		r.replay(ctx, a, body, key, o, first)
	}

	// Follow the order to its end: its stream, or polls while it is pending.
	if !o.terminal() {
		r.stats.following(1)
		defer r.stats.following(-1) // once the visit is over, whatever became of it
	}
	if p.stream {
		if s, err := r.stream(ctx, a, o.ID); err == nil || s.Status != "" {
			o.Status, o.CancelReason = s.Status, s.CancelReason
		}
	}
	if !o.terminal() {
		o, _ = r.poll(ctx, a, o, order.terminal)
	}
	if !o.terminal() {
		return outcome{status: "pending", id: o.ID}
	}
	r.stats.settled(r.clock.Now().Sub(t0))

	if p.cancel && o.Status == "confirmed" {
		c, err := r.cancel(ctx, a, o)
		if err != nil && transient(err) && ctx.Err() == nil {
			// The cancellation failed in a way that may have done it all the same:
			// ask once what became of the order.
			if now, err2 := r.poll(ctx, a, o, func(order) bool { return true }); err2 == nil {
				c = now
			}
		}
		switch {
		case c.Status == "cancelled":
			o = c
		case err == nil || ctx.Err() != nil:
			// Answered 202 and still not cancelled when the shopper stopped looking.
			return outcome{status: "pending", id: o.ID}
		}
		// Otherwise the cancellation was refused or failed: the order stays confirmed.
	}
	return outcome{status: o.Status, reason: o.reason(), id: o.ID}
}

// browse looks at a few pages of the catalogue, as far as the anonymous pace allows
// (skipping the rest, never waiting), and notes what it saw. It reports false when it
// skipped pages for the pace.
func (r *runner) browse(ctx context.Context, rng *rand.Rand) bool {
	limit := 5 + rng.IntN(16)
	cursor := ""
	for range 1 + rng.IntN(3) {
		if !r.anon.try() {
			return false
		}
		path := "/api/v1/products?limit=" + strconv.Itoa(limit)
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		page, err := r.productPage(ctx, path)
		if err != nil || page.NextCursor == nil {
			return true
		}
		cursor = *page.NextCursor
	}
	return true
}

// look opens the page of each product about to be ordered, unless the pace has already
// cut browsing short (complete false) or now does, and drops the lines of those it
// sees without the stock; when none is left it picks again from what it now knows.
// It reports whether it looked at every product.
func (r *runner) look(ctx context.Context, rng *rand.Rand, lines []line, complete bool) ([]line, bool) {
	if !complete {
		return lines, false
	}
	var kept []line
	for _, l := range lines {
		if !r.anon.try() {
			return lines, false
		}
		c := call{endpoint: "get_product", method: http.MethodGet, path: "/api/v1/products/" + url.PathEscape(l.ProductID)}
		ans, err := r.cl.do(ctx, c)
		if err != nil {
			return lines, true
		}
		var p product
		if ans.status != http.StatusOK {
			_ = ans.unexpected(r.stats, c)
			continue
		}
		if err := ans.decode(c, &p); err != nil {
			r.stats.error(ErrProtocol)
			return lines, true
		}
		r.cat.update(p)
		if p.Stock >= l.Quantity {
			kept = append(kept, l)
		}
	}
	if len(kept) == 0 {
		return r.cat.pick(rng, r.cfg.MaxLines, r.cfg.MaxQuantity), true
	}
	return kept, true
}

// productPage gets one page of the catalogue and notes its products.
func (r *runner) productPage(ctx context.Context, path string) (productPage, error) {
	c := call{endpoint: "list_products", method: http.MethodGet, path: path}
	ans, err := r.cl.do(ctx, c)
	if err != nil {
		return productPage{}, err
	}
	if ans.status != http.StatusOK {
		return productPage{}, ans.unexpected(r.stats, c)
	}
	var page productPage
	if err := ans.decode(c, &page); err != nil {
		r.stats.error(ErrProtocol)
		return productPage{}, err
	}
	r.cat.update(page.Items...)
	return page, nil
}

// authDo sends c with a's access token, and once more with a new one when the gateway
// refuses the first (401: expired early, or signed by a stack since reset).
func (r *runner) authDo(ctx context.Context, a *account, c call) (answer, error) {
	for try := 0; ; try++ {
		tok, err := r.pool.token(ctx, a)
		if err != nil {
			return answer{}, err
		}
		c.token = tok
		ans, err := r.cl.do(ctx, c)
		if err == nil && ans.status == http.StatusUnauthorized && try == 0 {
			r.stats.error(ErrAuth)
			a.invalidate(tok)
			continue
		}
		return ans, err
	}
}

// backoff waits before try (1, 2, ...) of a request sent again: 250 ms doubling, with
// jitter so that shoppers that failed together do not come back together.
func (r *runner) backoff(ctx context.Context, try int) error {
	d := 250 * time.Millisecond << min(try-1, 4)
	d = d/2 + time.Duration(rand.Int64N(int64(d)))
	return r.clock.Sleep(ctx, d)
}

// place posts the order, sending it again with the same Idempotency-Key when the POST
// failed in a way that may pass (time-out, network, 5xx, still rate limited, or 409:
// the key is held by the try before, still running). It returns the order and the
// answer it came with (201 or 202).
func (r *runner) place(ctx context.Context, a *account, body orderRequest, key string) (order, answer, error) {
	c := call{endpoint: "create_order", method: http.MethodPost, path: "/api/v1/orders", body: body,
		header: map[string]string{"Idempotency-Key": key}}
	var last error
	for try := 0; try <= r.cfg.PostRetries; try++ {
		if try > 0 {
			if err := r.backoff(ctx, try); err != nil {
				return order{}, answer{}, &requestError{ErrInterrupted, 0, err}
			}
		}
		ans, err := r.authDo(ctx, a, c)
		if err != nil {
			if !transient(err) {
				return order{}, answer{}, err
			}
			last = err
			continue
		}
		switch ans.status {
		case http.StatusCreated, http.StatusAccepted:
			var o order
			if err := ans.decode(c, &o); err != nil || o.ID == "" || o.Status == "" {
				r.stats.error(ErrProtocol)
				return order{}, answer{}, cmpErr(err, &requestError{ErrProtocol, ans.status, fmt.Errorf("POST /api/v1/orders → %d without an order: %.200s", ans.status, ans.body)})
			}
			return o, ans, nil
		case http.StatusConflict:
			last = ans.unexpected(r.stats, c)
			continue
		}
		return order{}, answer{}, ans.unexpected(r.stats, c)
	}
	return order{}, answer{}, last
}

func cmpErr(err, def error) error {
	if err != nil {
		return err
	}
	return def
}

// replay sends the order again with the same key and checks that the answer is the
// first one replayed: the same status, the same order, marked Idempotent-Replayed.
func (r *runner) replay(ctx context.Context, a *account, body orderRequest, key string, o order, first answer) {
	c := call{endpoint: "replay_order", method: http.MethodPost, path: "/api/v1/orders", body: body,
		header: map[string]string{"Idempotency-Key": key}}
	ans, err := r.authDo(ctx, a, c)
	if err != nil {
		return // counted; nothing to compare
	}
	if ans.status == http.StatusConflict {
		return // the first is still being answered (its hold): a documented answer, not one to compare
	}
	var why []string
	if ans.status != first.status {
		why = append(why, fmt.Sprintf("status %d, first %d", ans.status, first.status))
	}
	if ans.header.Get("Idempotent-Replayed") != "true" {
		why = append(why, "no Idempotent-Replayed: true")
	}
	var again order
	if err := json.Unmarshal(ans.body, &again); err != nil || again.ID != o.ID {
		why = append(why, fmt.Sprintf("order %q", again.ID))
	}
	mismatch := ""
	if len(why) > 0 {
		mismatch = fmt.Sprintf("order %s (key %s): %s", o.ID, key, strings.Join(why, "; "))
	}
	r.stats.replay(mismatch)
}

// stream follows the order's status stream until a terminal status, and returns the
// last status it saw. An error says the stream could not be followed to the end.
func (r *runner) stream(ctx context.Context, a *account, id string) (statusEvent, error) {
	c := call{endpoint: "order_events", method: http.MethodGet, path: "/api/v1/orders/" + url.PathEscape(id) + "/events",
		header: map[string]string{"Accept": "text/event-stream"}}
	var resp *http.Response
	for try := 0; ; try++ {
		tok, err := r.pool.token(ctx, a)
		if err != nil {
			return statusEvent{}, err
		}
		c.token = tok
		resp, err = r.cl.open(ctx, c)
		var re *requestError
		if errors.As(err, &re) && re.status == http.StatusUnauthorized && try == 0 {
			r.stats.error(ErrAuth)
			a.invalidate(tok)
			continue
		}
		if err != nil {
			return statusEvent{}, err
		}
		break
	}
	defer resp.Body.Close()
	r.stats.stream()
	var last statusEvent
	event := ""
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		ln := sc.Text()
		switch {
		case ln == "":
			event = ""
		case strings.HasPrefix(ln, "event:"):
			event = strings.TrimSpace(strings.TrimPrefix(ln, "event:"))
		case strings.HasPrefix(ln, "data:") && (event == "status" || event == ""):
			var ev statusEvent
			if err := json.Unmarshal([]byte(strings.TrimSpace(strings.TrimPrefix(ln, "data:"))), &ev); err != nil || ev.Status == "" {
				r.stats.error(ErrProtocol)
				return last, &requestError{ErrProtocol, 0, fmt.Errorf("order %s's stream: bad data %q", id, ln)}
			}
			last = ev
			if (order{Status: ev.Status}).terminal() {
				return last, nil
			}
		}
	}
	err := sc.Err()
	if err == nil {
		err = errors.New("closed before a terminal status")
	}
	if ctx.Err() != nil {
		return last, &requestError{ErrInterrupted, 0, ctx.Err()}
	}
	r.stats.error(ErrNetwork)
	return last, &requestError{ErrNetwork, 0, fmt.Errorf("order %s's stream: %w", id, err)}
}

// poll reads the order, 250 ms after the last read doubling to 2 s, until done says it
// is, or ctx ends; it returns the order as last read.
func (r *runner) poll(ctx context.Context, a *account, o order, done func(order) bool) (order, error) {
	c := call{endpoint: "get_order", method: http.MethodGet, path: "/api/v1/orders/" + url.PathEscape(o.ID)}
	delay := 250 * time.Millisecond
	for {
		if err := r.clock.Sleep(ctx, delay); err != nil {
			return o, err
		}
		delay = min(2*delay, 2*time.Second)
		r.stats.poll()
		ans, err := r.authDo(ctx, a, c)
		if err != nil {
			if ctx.Err() != nil {
				return o, err
			}
			continue // counted; the order is still there to ask about
		}
		var now order
		if ans.status != http.StatusOK {
			_ = ans.unexpected(r.stats, c)
			continue
		}
		if err := ans.decode(c, &now); err != nil || now.ID != o.ID {
			r.stats.error(ErrProtocol)
			continue
		}
		o = now
		if done(o) {
			return o, nil
		}
	}
}

// cancel cancels a confirmed order, at the customer's request: 200 with it cancelled,
// or 202 while the refund runs, after which it is polled until cancelled. It returns
// the order as last seen; an error when the cancellation was refused or failed.
func (r *runner) cancel(ctx context.Context, a *account, o order) (order, error) {
	c := call{endpoint: "cancel_order", method: http.MethodPost, path: "/api/v1/orders/" + url.PathEscape(o.ID) + "/cancel"}
	var last error
	for try := 0; try <= r.cfg.PostRetries; try++ {
		if try > 0 {
			if err := r.backoff(ctx, try); err != nil {
				return o, err
			}
		}
		ans, err := r.authDo(ctx, a, c)
		if err != nil {
			if !transient(err) {
				return o, err
			}
			last = err
			continue
		}
		var now order
		switch ans.status {
		case http.StatusOK, http.StatusAccepted:
			if err := ans.decode(c, &now); err != nil || now.ID != o.ID {
				r.stats.error(ErrProtocol)
				return o, cmpErr(err, fmt.Errorf("cancel %s answered another order", o.ID))
			}
		default:
			return o, ans.unexpected(r.stats, c)
		}
		if now.Status == "cancelled" {
			return now, nil
		}
		return r.poll(ctx, a, now, func(o order) bool { return o.Status == "cancelled" })
	}
	return o, last
}
