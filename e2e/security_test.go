package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bazaar-shop/bazaar/pkg/auth"
)

// The security suite: each test attacks the running stack the way an attacker would,
// over real HTTP, and asserts the defended outcome (docs/security.md lists the
// controls and the unit tests behind each; these hold them end to end). Attackers
// come from loopback addresses of their own (origin), so that what they exhaust is
// theirs and not the rest of the suite's, which signs in from 127.0.0.1.

// nobody is an e-mail address no account has.
func nobody(i int) string {
	return fmt.Sprintf("nobody-%d-%s@e2e.bazaar.test", i, randomHex(4))
}

// Finding: /ops/login answered 401 to wrong passwords forever. Now a flood of them
// from one address is turned away with 429 and Retry-After before long; the refusal
// comes before the password is checked (a right one is refused alike), holds at the
// API's log-in too, and cannot be escaped with a forged X-Forwarded-For; and it is
// the flooding address's alone (the gateway tells users the browser's address, not
// its own, or every browser behind it would be slowed).
func TestSecurityOpsSignInFloodFromOneAddressGets429(t *testing.T) {
	setup(t)
	attacker, bystander := newOrigin(t), newOrigin(t)
	email := newEmail(t)
	const password = "correct horse battery"
	register(t, email, password, "Flood Target")

	// Wrong passwords as fast as the form answers, sprayed over many e-mail
	// addresses, so that only a limit on the address can stop them (users' throttle
	// delays an address after 20 failures; a stack with the gateway's sign-in limits
	// on refuses its 11th attempt in a minute).
	const most = 30
	var refused response
	for i := range most {
		r := attacker.do(t, opsLogin("", nobody(i), "wrong password "+strconv.Itoa(i)))
		if r.StatusCode == http.StatusTooManyRequests {
			refused = r
			t.Logf("/ops/login from %s: attempt %d was the first refused", attacker.addr, i+1)
			break
		}
		opsPage(t, r, http.StatusUnauthorized)
	}
	if refused.Response == nil {
		t.Fatalf("%d wrong passwords from %s at /ops/login were all answered 401; want 429 with Retry-After before long", most, attacker.addr)
	}
	opsPage(t, refused, http.StatusTooManyRequests)
	positiveRetryAfter(t, refused)
	if !bytes.Contains(refused.Body, []byte("Too many sign-in attempts")) {
		t.Errorf("the 429 page does not say why: %.500s", refused.Body)
	}

	// Refused before the password is looked at: the right password is refused alike,
	// so a 429 confirms nothing.
	r := attacker.do(t, opsLogin("", email, password))
	opsPage(t, r, http.StatusTooManyRequests)
	positiveRetryAfter(t, r)
	// The API's log-in is no second door.
	rateLimitedProblem(t, attacker.do(t, loginRequest(email, password)))
	// Nor is an address of the attacker's choosing: the gateway replaces what a client
	// says in X-Forwarded-For.
	forged := loginRequest(email, password)
	forged.Header = map[string]string{"X-Forwarded-For": "203.0.113.77"}
	rateLimitedProblem(t, attacker.do(t, forged))

	// Another address is not slowed: the count is the flooding address's.
	opsPage(t, bystander.do(t, opsLogin("", nobody(most), "wrong password")), http.StatusUnauthorized)
	tok := loggedIn(t, bystander.do(t, loginRequest(email, password)))
	if u := me(t, tok.AccessToken); u.Email != email {
		t.Errorf("/users/me = %+v; want %s", u, email)
	}
}

// Finding: /ops/login told a customer's right password apart from a wrong one (only
// the admin role may sign in there, so the form confirmed guesses). Now both get the
// same 401 and the same page, byte for byte, and no cookie; an admin's right password
// still signs in (so the form under test works).
func TestSecurityOpsSignInAnswersACustomersRightPasswordLikeAWrongOne(t *testing.T) {
	setup(t)
	o := newOrigin(t)
	email := newEmail(t)
	const password = "correct horse battery"
	register(t, email, password, "Oracle Target")

	wrong := o.do(t, opsLogin("", email, "wrong horse battery"))
	right := o.do(t, opsLogin("", email, password))
	opsPage(t, wrong, http.StatusUnauthorized)
	opsPage(t, right, http.StatusUnauthorized)
	if !bytes.Equal(wrong.Body, right.Body) {
		t.Errorf("a customer's right password and a wrong one got different pages:\nwrong: %s\nright: %s", wrong.Body, right.Body)
	}
	for _, h := range []string{"Content-Type", "Content-Security-Policy", "Cache-Control", "Set-Cookie", "Location", "Retry-After", "Content-Length"} {
		if w, r := wrong.Header.Values(h), right.Header.Values(h); !slices.Equal(w, r) {
			t.Errorf("%s: %q for a wrong password, %q for the right one; want the same", h, w, r)
		}
	}
	if len(right.Cookies()) != 0 {
		t.Errorf("a customer's right password got cookies %v", right.Cookies())
	}
	// An address with no account gets the same page but for the address echoed back.
	unknown := nobody(0)
	u := o.do(t, opsLogin("", unknown, password))
	opsPage(t, u, http.StatusUnauthorized)
	if got := bytes.ReplaceAll(u.Body, []byte(unknown), []byte(email)); !bytes.Equal(got, wrong.Body) {
		t.Errorf("an unknown address got another page than a wrong password:\nunknown: %s\nwrong: %s", u.Body, wrong.Body)
	}

	// The control: the admin's right password is let in, with the session cookie.
	a := o.do(t, opsLogin("", admin.Email, admin.Password))
	if a.StatusCode != http.StatusSeeOther || a.Header.Get("Location") != "/ops/tasks/" {
		t.Fatalf("the admin's sign-in → %d to %q; want 303 to /ops/tasks/; body %.300s", a.StatusCode, a.Header.Get("Location"), a.Body)
	}
	var session *http.Cookie
	for _, c := range a.Cookies() {
		if c.Name == "bazaar_ops" {
			session = c
		}
	}
	if session == nil || session.Value == "" || !session.HttpOnly || session.SameSite != http.SameSiteStrictMode || session.Path != "/ops" {
		t.Errorf("the admin's session cookie is %+v; want bazaar_ops, HttpOnly, SameSite=Strict, Path=/ops", session)
	}
}

// Finding: guessing one account's password from many addresses could keep its owner
// out (or rotate addresses for a fresh allowance each). Now the guesses from fresh
// addresses share a small budget, after which every address is refused (429); and the
// owner, from an address of their own, gets in after at most one delay, the one the
// attack earned; the attacker is still slowed after. Driven through the gateway from
// a dozen real source addresses, as a botnet would: the gateway tells users each
// one's address (users trusts it, on loopback), and the gateway's own sign-in limits
// are off in the suite's stack, so users' throttle is what is under test.
func TestSecurityGuessingFromManyAddressesCannotLockTheOwnerOut(t *testing.T) {
	setup(t)
	needOwnStack(t) // a stack whose gateway's sign-in limits are known to be off
	email := newEmail(t)
	const password = "correct horse battery"
	register(t, email, password, "Lock-out Target")

	const addresses = 12
	var attackers []origin
	var statuses []int
	admitted := 0
	for i := range addresses {
		a := newOrigin(t)
		attackers = append(attackers, a)
		r := a.do(t, loginRequest(email, "guess number "+strconv.Itoa(i)))
		switch r.StatusCode {
		case http.StatusUnauthorized:
			problem(t, r, http.StatusUnauthorized)
			admitted++
		case http.StatusTooManyRequests:
			rateLimitedProblem(t, r)
		default:
			t.Fatalf("guess %d from %s → %d; want 401 or 429: %s", i, a.addr, r.StatusCode, r.Body)
		}
		statuses = append(statuses, r.StatusCode)
	}
	t.Logf("guesses from %d addresses: %v", addresses, statuses)
	// Five failures start the delays, three more from fresh addresses are the budget;
	// a slow machine may let one more in between delays.
	if admitted > 5+3+1 {
		t.Errorf("%d of %d guesses from fresh addresses were checked; want at most 9 (new addresses must not bring new guesses)", admitted, addresses)
	}
	for i, s := range statuses[len(statuses)-3:] {
		if s != http.StatusTooManyRequests {
			t.Errorf("guess %d from a fresh address → %d; want 429 once the budget is spent", addresses-3+i, s)
		}
	}
	// An address that has failed before waits too.
	rateLimitedProblem(t, attackers[0].do(t, loginRequest(email, "one more guess")))

	// The owner, from an address of their own, gets in: at once, or after the one
	// delay the attack earned (1 s doubled per failure past the fifth).
	owner := newOrigin(t)
	r := owner.do(t, loginRequest(email, password))
	if r.StatusCode == http.StatusTooManyRequests {
		wait := rateLimitedProblem(t, r)
		earned := time.Second << max(0, admitted-5)
		if wait > earned+time.Second {
			t.Errorf("the owner is told to wait %s; want at most the delay the attack earned, %s", wait, earned)
		}
		t.Logf("the owner waits %s (Retry-After), then signs in", wait)
		time.Sleep(wait) // honouring Retry-After, as a client must
		r = owner.do(t, loginRequest(email, password))
	}
	tok := loggedIn(t, r) // a 429 again would be a lock-out
	if u := me(t, tok.AccessToken); u.Email != email {
		t.Errorf("/users/me = %+v; want %s", u, email)
	}
	// The owner's success does not reopen the door for the attacker.
	rateLimitedProblem(t, attackers[1].do(t, loginRequest(email, "guess after the owner")))
}

// Finding: logging out left the session's access token working until it expired.
// Now POST /auth/logout ends the session: its refresh token is refused at once, and
// its access tokens within seconds, at the gateway (by its own check, not only the
// service's behind it) and at every service called directly; another session of the
// same user is untouched.
func TestSecurityLogoutEndsTheSessionAndItsAccessTokens(t *testing.T) {
	setup(t)
	email := newEmail(t)
	const password = "correct horse battery"
	register(t, email, password, "Logout Tester")
	ended, other := login(t, email, password), login(t, email, password)
	usable(t, ended.AccessToken)

	r := do(t, request{Method: "POST", Path: "/api/v1/auth/logout", Body: map[string]string{"refresh_token": ended.RefreshToken}})
	if r.StatusCode != http.StatusNoContent || len(r.Body) != 0 {
		t.Fatalf("logout → %d %q; want 204 and no body", r.StatusCode, r.Body)
	}
	problem(t, do(t, request{Method: "POST", Path: "/api/v1/auth/refresh", Body: map[string]string{"refresh_token": ended.RefreshToken}}),
		http.StatusUnauthorized)
	ended401(t, ended.AccessToken)

	// Only that session ended.
	usable(t, other.AccessToken)
	var renewed tokensDoc
	decode(t, do(t, request{Method: "POST", Path: "/api/v1/auth/refresh", Body: map[string]string{"refresh_token": other.RefreshToken}}),
		http.StatusOK, &renewed)
	// Logging out again says nothing: 204.
	if r := do(t, request{Method: "POST", Path: "/api/v1/auth/logout", Body: map[string]string{"refresh_token": ended.RefreshToken}}); r.StatusCode != http.StatusNoContent {
		t.Errorf("a second logout → %d; want 204", r.StatusCode)
	}
}

// adminOnly is a route the gateway refuses to a customer itself, after verifying the
// token (403) and before any service sees the request: a 401 there is the gateway's
// own verifier refusing the token, not a service behind it.
const adminOnly = "/api/v1/admin/sagas"

// usable checks that a customer's access token is accepted everywhere ended401
// looks: so that the 401s there are about the session's end.
func usable(t *testing.T, token string) {
	t.Helper()
	problem(t, do(t, request{Method: "GET", Path: adminOnly, Token: token}), http.StatusForbidden)
	for _, s := range tokenSurfaces() {
		if r := do(t, request{Base: s.base, Method: "GET", Path: s.path, Token: token}); r.StatusCode != http.StatusOK {
			t.Fatalf("%s: GET %s with a live session's token → %d; want 200: %s", s.name, s.path, r.StatusCode, r.Body)
		}
	}
}

// ended401 checks that an ended session's access token is refused within seconds:
// by the gateway's own check, and by the gateway and every service on their routes.
func ended401(t *testing.T, token string) {
	t.Helper()
	refusedWithin(t, baseURL, adminOnly, token, 5*time.Second)
	for _, s := range tokenSurfaces() {
		refusedWithin(t, s.base, s.path, token, 5*time.Second)
	}
}

// Finding: a replayed refresh token revoked the refresh tokens of its family but left
// their access tokens working. Now the reuse ends the session: every refresh token of
// the family and every access token of the session are refused (at the gateway and
// at every service, within seconds), while a separate log-in is untouched.
func TestSecurityRefreshTokenReuseEndsTheSessionAndItsAccessTokens(t *testing.T) {
	setup(t)
	email := newEmail(t)
	const password = "correct horse battery"
	register(t, email, password, "Reuse Tester")
	first, other := login(t, email, password), login(t, email, password)
	refresh := func(token string) response {
		return do(t, request{Method: "POST", Path: "/api/v1/auth/refresh", Body: map[string]string{"refresh_token": token}})
	}
	var second tokensDoc
	decode(t, refresh(first.RefreshToken), http.StatusOK, &second)
	usable(t, second.AccessToken)

	// The thief replays the spent token.
	problem(t, refresh(first.RefreshToken), http.StatusUnauthorized)
	problem(t, refresh(second.RefreshToken), http.StatusUnauthorized)
	ended401(t, second.AccessToken)
	ended401(t, first.AccessToken)
	usable(t, other.AccessToken)
}

// Finding: every junk query parameter on the product list made a copy of the page in
// Redis (the cache was keyed on the raw query), so anyone could fill Redis. Now a
// parameter the API does not define, or one given twice, is 422 before the cache is
// asked, and the cache's list keys are exactly what they were; a defined parameter
// is still cached, under the key made from it alone.
//
// Not parallel: it counts the product cache's list keys in the shared Redis, which no
// other test may add to meanwhile, and Go runs the parallel tests only once every
// sequential one has finished. It takes well under a second.
func TestSecurityProductListJunkParametersAreRefusedAndMakeNoCacheKeys(t *testing.T) {
	if baseURL == "" {
		t.Skip("no stack: -short, and E2E_BASE_URL is not set")
	}
	needOwnStack(t)
	opt, err := redis.ParseURL(stackURLs.RedisURL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	// gateway/internal/productcache: a page under "gateway:products:list:" and the
	// SHA-256 of its canonical query; "gateway:products:list:gen" is the pages'
	// generation counter, not a page.
	const prefix = "gateway:products:list:"
	pageKey := func(query string) string {
		sum := sha256.Sum256([]byte(query))
		return prefix + hex.EncodeToString(sum[:])
	}
	listKeys := func() map[string]bool {
		keys := map[string]bool{}
		iter := rdb.Scan(t.Context(), 0, prefix+"*", 1000).Iterator()
		for iter.Next(t.Context()) {
			if k := iter.Val(); k != prefix+"gen" {
				keys[k] = true
			}
		}
		if err := iter.Err(); err != nil {
			t.Fatalf("scanning Redis: %v", err)
		}
		return keys
	}
	before := listKeys()

	marker := randomHex(6)
	cases := []struct {
		query  string
		status int
		fields []string
	}{
		{"junk=" + marker, http.StatusUnprocessableEntity, []string{"junk"}},
		{"limit=5&utm_source=" + marker, http.StatusUnprocessableEntity, []string{"utm_source"}},
		{"limit=5&x" + marker + "=1", http.StatusUnprocessableEntity, []string{"x" + marker}},
		{"Limit=5", http.StatusUnprocessableEntity, []string{"Limit"}},
		{"limit=5&limit=" + strconv.Itoa(6+len(marker)), http.StatusUnprocessableEntity, []string{"limit"}},
		{"cursor=&cursor=" + marker, http.StatusUnprocessableEntity, []string{"cursor"}},
		{"limit=5&junk=%zz", http.StatusBadRequest, nil},
	}
	for _, c := range cases {
		r := do(t, request{Method: "GET", Path: "/api/v1/products?" + c.query})
		p := problem(t, r, c.status)
		for _, f := range c.fields {
			if !slices.Contains(p.fields(), f) {
				t.Errorf("?%s: the problem names %v; want %q among them", c.query, p.fields(), f)
			}
		}
		if x := r.Header.Get("X-Cache"); x == "HIT" {
			t.Errorf("?%s was answered from the cache", c.query)
		}
	}
	after := listKeys()
	for k := range after {
		if !before[k] {
			t.Errorf("refused list queries made the cache key %s", k)
		}
	}
	for _, c := range cases {
		if after[pageKey(c.query)] {
			t.Errorf("?%s has a cache key of its own", c.query)
		}
	}

	// The control: a defined parameter makes one key, that of its canonical query.
	var b [1]byte
	_, _ = rand.Read(b[:])
	limit := strconv.Itoa(30 + int(b[0])%70)
	r := do(t, request{Method: "GET", Path: "/api/v1/products?limit=" + limit})
	if r.StatusCode != http.StatusOK {
		t.Fatalf("?limit=%s → %d; want 200: %s", limit, r.StatusCode, r.Body)
	}
	control := listKeys()
	if !control[pageKey("limit="+limit)] {
		t.Errorf("?limit=%s was not cached under %s: the check above looks in the wrong place", limit, pageKey("limit="+limit))
	}
	if added := len(control) - len(after); added != 1 && !maps.Equal(control, after) {
		t.Errorf("one page read added %d cache keys; want 1", added)
	}
}

// Finding: a flood of badly signed tokens was answered 401 as fast as the gateway
// could check signatures, never counted by any limit (the per-user limit needs a
// verified user). Now every request but the probes is limited per address before any
// token is looked at.
//
// The shared stack runs its gateway with that limit off (RATE_EDGE_IP=0: the suite
// signs dozens of users in from 127.0.0.1), so this starts a second gateway, the
// program alone, in front of the same services, with the limit at 20 a second
// (burst 20) and every other setting at its default. It takes about a second.
func TestSecurityFloodsAreLimitedPerAddressAtTheEdge(t *testing.T) {
	setup(t)
	const rate, burst = 20, 20
	g := startEdgeGateway(t, map[string]string{"RATE_EDGE_IP": strconv.Itoa(rate), "RATE_EDGE_IP_BURST": strconv.Itoa(burst)})

	t.Run("badly signed tokens get 429 before they are verified", func(t *testing.T) {
		t.Parallel()
		// A customer's real token whose signature is replaced: its kid is known, so
		// each one costs the gateway a signature check.
		good := sharedShop().shopper(t).Token
		parts := strings.Split(good, ".")
		bad := parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(make([]byte, ed25519.SignatureSize))
		flood, other := newOrigin(t), newOrigin(t)

		const workers, most = 4, 2000
		var (
			sent, unauthorized atomic.Int64
			mu                 sync.Mutex
			refused            *response
			unexpected         []string
			wg                 sync.WaitGroup
		)
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		start := time.Now()
		var refusedAfter time.Duration
		for range workers {
			wg.Go(func() {
				for ctx.Err() == nil && sent.Add(1) <= most {
					req, err := newHTTPRequest(ctx, request{Base: g.base, Method: "GET", Path: "/api/v1/users/me", Token: bad})
					if err != nil {
						return
					}
					resp, err := flood.hc.Do(req)
					if err != nil {
						if ctx.Err() == nil {
							mu.Lock()
							unexpected = append(unexpected, err.Error())
							mu.Unlock()
						}
						return
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					switch resp.StatusCode {
					case http.StatusUnauthorized:
						unauthorized.Add(1)
						continue
					case http.StatusTooManyRequests:
						mu.Lock()
						if refused == nil {
							refused, refusedAfter = &response{Response: resp, Body: body}, time.Since(start)
						}
						mu.Unlock()
					default:
						mu.Lock()
						unexpected = append(unexpected, fmt.Sprintf("%d %s", resp.StatusCode, body))
						mu.Unlock()
					}
					cancel() // the first 429 (or surprise) ends the flood
				}
			})
		}
		wg.Wait()
		if len(unexpected) > 0 {
			t.Fatalf("the flood got %d unexpected answers, the first: %s", len(unexpected), unexpected[0])
		}
		if refused == nil {
			t.Fatalf("%d badly signed tokens from one address were all answered 401; want 429 from the per-address limit", unauthorized.Load())
		}
		rateLimitedProblem(t, *refused)
		// What the limit lets through: the burst, what refills meanwhile, and what
		// was in flight.
		allowed := int64(burst + rate*refusedAfter.Seconds() + workers)
		if n := unauthorized.Load(); n > allowed {
			t.Errorf("%d badly signed tokens were verified (401) in %s before the first 429; want at most %d", n, refusedAfter, allowed)
		}
		t.Logf("%d × 401, then 429 after %s", unauthorized.Load(), refusedAfter.Round(time.Millisecond))

		// The probes are never limited, and other addresses are not refused.
		for _, path := range []string{"/healthz", "/readyz"} {
			if r := flood.do(t, request{Base: g.base, Method: "GET", Path: path}); r.StatusCode != http.StatusOK {
				t.Errorf("GET %s from the flooding address → %d; want 200 (probes are not limited)", path, r.StatusCode)
			}
		}
		problem(t, other.do(t, request{Base: g.base, Method: "GET", Path: "/api/v1/users/me", Token: bad}), http.StatusUnauthorized)
	})

	// Finding 1 again, at a gateway with its sign-in limits on (10 a minute per
	// address by default): the operations form counts against the API log-in's
	// counter rather than a second one of its own, so alternating between the two
	// doors gains nothing. With two counters of 10, the 21st attempt would be the
	// first refused; with one, the 11th (a slow machine may let one refill in).
	t.Run("the operations sign-in counts with the API log-in", func(t *testing.T) {
		t.Parallel()
		o := newOrigin(t)
		const most = 12
		refusedAt := 0
		for i := range most {
			ops := i%2 == 0
			var r response
			if ops {
				r = o.do(t, opsLogin(g.base, nobody(i), "wrong password"))
			} else {
				api := loginRequest(nobody(i), "wrong password")
				api.Base = g.base
				r = o.do(t, api)
			}
			switch {
			case r.StatusCode == http.StatusTooManyRequests && ops:
				opsPage(t, r, http.StatusTooManyRequests)
				positiveRetryAfter(t, r)
			case r.StatusCode == http.StatusTooManyRequests:
				rateLimitedProblem(t, r)
			case ops:
				opsPage(t, r, http.StatusUnauthorized)
			default:
				problem(t, r, http.StatusUnauthorized)
			}
			if r.StatusCode == http.StatusTooManyRequests {
				refusedAt = i + 1
				break
			}
		}
		if refusedAt == 0 {
			t.Fatalf("%d sign-ins from one address, alternating /ops/login and the API, were never refused; want 429 by the 12th", most)
		}
		if refusedAt < 10 {
			t.Errorf("sign-in number %d was refused; want the first 10 in a minute let through", refusedAt)
		}
		// Both doors are shut now.
		r := o.do(t, opsLogin(g.base, nobody(most), "wrong password"))
		opsPage(t, r, http.StatusTooManyRequests)
		api := loginRequest(nobody(most+1), "wrong password")
		api.Base = g.base
		rateLimitedProblem(t, o.do(t, api))
	})

	// The control of TestSecurityMetricsAreNotServedOnThePublicPort: the gateway has
	// metrics, on its operations listener, which is all that port serves.
	t.Run("metrics are on the operations listener only", func(t *testing.T) {
		t.Parallel()
		problem(t, do(t, request{Base: g.base, Method: "GET", Path: "/metrics"}), http.StatusNotFound)
		r := do(t, request{Base: g.ops, Method: "GET", Path: "/metrics"})
		if r.StatusCode != http.StatusOK || !bytes.Contains(r.Body, []byte("# HELP ")) {
			t.Errorf("GET /metrics on the operations listener → %d %.200s; want 200 and Prometheus metrics", r.StatusCode, r.Body)
		}
		for _, path := range []string{"/api/v1/products", "/ops/login", "/health"} {
			problem(t, do(t, request{Base: g.ops, Method: "GET", Path: path}), http.StatusNotFound)
		}
	})
}

// Finding: a token signed with the real key passed even when it was not an access
// token or claimed a long life. Now, even with the signing key stolen (the users
// database and the KEK: the worst case this control is for), a token with a crit
// header, a typ other than at+jwt, no iat, or exp − iat over an hour is refused with
// 401 by the gateway and by every service verifying again; and a well-formed token
// signed by any other key is refused. The control, a well-formed token minted with
// the stolen key, passes everywhere: the forgeries fail for what they change.
func TestSecurityForgedTokensAreRefusedEvenWithTheStolenSigningKey(t *testing.T) {
	setup(t)
	needOwnStack(t)
	c := sharedShop().shopper(t)
	kid, key := stolenSigningKey(t)
	_, otherKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherKid := auth.Thumbprint(otherKey.Public().(ed25519.PublicKey))
	now := time.Now()
	valid := func() map[string]any { return accessClaims(c.ID, "customer", now, now.Add(10*time.Minute)) }
	header := func(extra ...any) map[string]any {
		h := map[string]any{"typ": "at+jwt", "kid": kid}
		for i := 0; i+1 < len(extra); i += 2 {
			if extra[i+1] == nil {
				delete(h, extra[i].(string))
			} else {
				h[extra[i].(string)] = extra[i+1]
			}
		}
		return h
	}
	surfaces := tokenSurfaces()

	control := jws(key, header(), valid())
	for _, s := range surfaces {
		if r := do(t, request{Base: s.base, Method: "GET", Path: s.path, Token: control}); r.StatusCode != http.StatusOK {
			t.Fatalf("%s: a well-formed token minted with the stolen key → %d; want 200 (else the forgeries below prove nothing): %s",
				s.name, r.StatusCode, r.Body)
		}
	}

	long := valid()
	long["exp"] = now.Add(61 * time.Minute).Unix()
	// Issued 50 minutes ago and expiring in 11: it would soon be gone, but no access
	// token is issued for more than an hour.
	oldLong := accessClaims(c.ID, "customer", now.Add(-50*time.Minute), now.Add(11*time.Minute))
	noIAT := valid()
	delete(noIAT, "iat")
	forgeries := []struct{ name, token string }{
		{"crit header", jws(key, header("crit", []string{"exp"}), valid())},
		{"crit naming an extension", jws(key, header("crit", []string{"urn:example:ext"}, "urn:example:ext", true), valid())},
		{"typ JWT", jws(key, header("typ", "JWT"), valid())},
		{"typ application/jwt", jws(key, header("typ", "application/jwt"), valid())},
		{"no typ", jws(key, header("typ", nil), valid())},
		{"lifetime 61 minutes", jws(key, header(), long)},
		{"lifetime 61 minutes, issued 50 minutes ago", jws(key, header(), oldLong)},
		{"no iat", jws(key, header(), noIAT)},
		{"another key under the real kid", jws(otherKey, header(), valid())},
		{"another key under its own kid", jws(otherKey, header("kid", otherKid), valid())},
	}
	for _, f := range forgeries {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			for _, s := range surfaces {
				r := do(t, request{Base: s.base, Method: "GET", Path: s.path, Token: f.token})
				if r.StatusCode != http.StatusUnauthorized {
					t.Errorf("%s: → %d; want 401: %.300s", s.name, r.StatusCode, r.Body)
					continue
				}
				problem(t, r, http.StatusUnauthorized)
			}
		})
	}
}

// Finding: a JSON body was read whatever its Content-Type said, so a cross-site form
// post or a text/plain fetch (which a browser sends without a CORS preflight) passed
// for a JSON call. Now a body must be declared application/json, else 415
// problem+json before it is read, and nothing is created: no user, no order (and no
// stock taken), no product. Parameters such as charset are still fine.
func TestSecurityJSONBodiesMustBeDeclaredApplicationJSON(t *testing.T) {
	setup(t)
	sh := sharedShop()
	cust := sh.newCustomer(t)
	adminTok := sh.adminToken(t)
	p := sh.createProduct(t, 5, 1234)
	plain := origin{hc: client}

	types := []struct{ name, contentType string }{
		{"no Content-Type", ""},
		{"application/jsonfoo", "application/jsonfoo"},
		{"text/plain", "text/plain;charset=UTF-8"},
		{"a form", "application/x-www-form-urlencoded"},
	}
	post := func(t *testing.T, path, token, contentType string, body any) response {
		t.Helper()
		req, err := newHTTPRequest(t.Context(), request{Method: "POST", Path: path, Token: token, Body: body})
		if err != nil {
			t.Fatal(err)
		}
		if contentType == "" {
			req.Header.Del("Content-Type")
		} else {
			req.Header.Set("Content-Type", contentType)
		}
		return plain.send(t, req)
	}
	unsupported := func(t *testing.T, r response) {
		t.Helper()
		if p := problem(t, r, http.StatusUnsupportedMediaType); p.Type != "urn:bazaar:problem:unsupported_media_type" {
			t.Errorf("the 415's type is %q; want urn:bazaar:problem:unsupported_media_type", p.Type)
		}
	}

	// A group, so that the checks after it run once every parallel subtest is done.
	t.Run("each type", func(t *testing.T) {
		for _, ct := range types {
			t.Run(ct.name, func(t *testing.T) {
				t.Parallel()
				// Sign-up (users).
				email := newEmail(t)
				account := map[string]string{"email": email, "password": "correct horse battery", "name": "Form Post"}
				unsupported(t, post(t, "/api/v1/auth/register", "", ct.contentType, account))
				// Nothing was registered: the address is free, and a declared body
				// (with a charset) signs it up.
				var u userDoc
				decode(t, post(t, "/api/v1/auth/register", "", "application/json; charset=utf-8", account), http.StatusCreated, &u)

				// A product (inventory, as the admin).
				sku := "E2E-CT-" + strings.ToUpper(randomHex(5))
				product := map[string]any{"sku": sku, "name": "Form post " + sku, "description": "refused",
					"price_cents": 100, "currency": "USD", "stock": 1}
				unsupported(t, post(t, "/api/v1/products", adminTok, ct.contentType, product))
				// Its SKU is free: no product was made.
				decode(t, post(t, "/api/v1/products", adminTok, "application/json", product), http.StatusCreated, &productDoc{})

				// An order (orders).
				unsupported(t, post(t, "/api/v1/orders", cust.Token, ct.contentType,
					orderRequest{Items: []item{{p.ID, 1}}, PaymentMethod: visa}))
			})
		}
	})
	// The customer has no order, and the stock is whole.
	if orders := sh.listOrders(t, cust.Token); len(orders) != 0 {
		t.Errorf("refused order bodies made %d orders: %+v", len(orders), orders)
	}
	if got, _ := sh.product(t, p.ID); got.Stock != 5 {
		t.Errorf("product %s has stock %d after refused orders; want 5", p.ID, got.Stock)
	}
}

// Finding: gateway answers lacked the headers that stop content sniffing, Referer
// leaks and framing, and the /ops pages (a sign-in form, a monitor that can delete
// tasks) could be framed for clickjacking. Now every gateway answer, errors and
// redirects included, has nosniff, X-Frame-Options DENY and Referrer-Policy
// no-referrer, every /ops answer a Content-Security-Policy with frame-ancestors
// 'none', the monitor's scripts allowed by hash only; and every error is
// problem+json.
func TestSecurityHeadersAndFramingPolicyOnGatewayAnswers(t *testing.T) {
	setup(t)
	adminTok, customerTok := sharedShop().adminToken(t), sharedShop().shopper(t).Token
	browser := newOrigin(t) // follows no redirect: the 303s are answers too
	html := map[string]string{"Accept": "text/html"}
	cases := []struct {
		name   string
		r      request
		status int
		ops    bool
	}{
		{"a probe", request{Method: "GET", Path: "/healthz"}, http.StatusOK, false},
		{"a product page", request{Method: "GET", Path: "/api/v1/products?limit=1"}, http.StatusOK, false},
		{"401", request{Method: "GET", Path: "/api/v1/users/me"}, http.StatusUnauthorized, false},
		{"403", request{Method: "GET", Path: "/api/v1/admin/sagas", Token: customerTok}, http.StatusForbidden, false},
		{"404", request{Method: "GET", Path: "/no/such/page"}, http.StatusNotFound, false},
		{"405", request{Method: "DELETE", Path: "/api/v1/users/me"}, http.StatusMethodNotAllowed, false},
		{"422", request{Method: "GET", Path: "/api/v1/products?junk=1"}, http.StatusUnprocessableEntity, false},
		{"sign-in page", request{Method: "GET", Path: "/ops/login", Header: html}, http.StatusOK, true},
		{"monitor without a session", request{Method: "GET", Path: "/ops/tasks/", Header: html}, http.StatusSeeOther, true},
		{"monitor's API without a session", request{Method: "GET", Path: "/ops/tasks/api/queues"}, http.StatusUnauthorized, true},
		{"monitor for a customer", request{Method: "GET", Path: "/ops/tasks/api/queues", Token: customerTok}, http.StatusForbidden, true},
		{"monitor for the admin", request{Method: "GET", Path: "/ops/tasks/", Token: adminTok, Header: html}, http.StatusOK, true},
		{"old monitor path", request{Method: "GET", Path: "/ops/tasks"}, http.StatusMovedPermanently, true},
		{"cross-site sign-out", request{Method: "POST", Path: "/ops/logout",
			Header: map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}}, http.StatusForbidden, true},
		// The router's 404, outside the /ops routes: X-Frame-Options covers it, and
		// there is no page to frame.
		{"unknown ops path", request{Method: "GET", Path: "/ops/nothing"}, http.StatusNotFound, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := browser.do(t, c.r)
			if c.status >= 400 {
				problem(t, r, c.status)
			} else if r.StatusCode != c.status {
				t.Fatalf("%s %s → %d; want %d: %.300s", c.r.Method, c.r.Path, r.StatusCode, c.status, r.Body)
			}
			for h, want := range map[string]string{
				"X-Content-Type-Options": "nosniff",
				"X-Frame-Options":        "DENY",
				"Referrer-Policy":        "no-referrer",
			} {
				if got := r.Header.Values(h); len(got) != 1 || got[0] != want {
					t.Errorf("%s = %q; want %q", h, got, want)
				}
			}
			csp := r.Header.Get("Content-Security-Policy")
			if !c.ops {
				return
			}
			if !strings.Contains(csp, "frame-ancestors 'none'") {
				t.Errorf("Content-Security-Policy = %q; want frame-ancestors 'none'", csp)
			}
			for _, d := range strings.Split(csp, ";") {
				d = strings.TrimSpace(d)
				if strings.HasPrefix(d, "script-src") && (strings.Contains(d, "'unsafe-inline'") || strings.Contains(d, "'unsafe-eval'")) {
					t.Errorf("the policy lets injected scripts run: %q", d)
				}
				if strings.HasPrefix(d, "default-src") && d != "default-src 'none'" {
					t.Errorf("the policy's default is %q; want default-src 'none'", d)
				}
			}
		})
	}
}

// Finding: the gateway served /metrics (every route's traffic, error and cache rates)
// on its public port. Now the public port answers it 404 problem+json, to anyone, an
// admin included; /health, the public health report, answers. (Where the metrics
// are served instead is checked against a gateway whose operations port is known:
// TestSecurityFloodsAreLimitedPerAddressAtTheEdge.)
func TestSecurityMetricsAreNotServedOnThePublicPort(t *testing.T) {
	setup(t)
	adminTok := sharedShop().adminToken(t)
	problem(t, do(t, request{Method: "GET", Path: "/metrics"}), http.StatusNotFound)
	problem(t, do(t, request{Method: "GET", Path: "/metrics", Token: adminTok}), http.StatusNotFound)
	r := do(t, request{Method: "GET", Path: "/health"})
	if r.StatusCode != http.StatusOK && r.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("GET /health → %d; want the health report", r.StatusCode)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" || !bytes.Contains(r.Body, []byte(`"services"`)) {
		t.Errorf("GET /health → %q %.200s; want the JSON report of every service", ct, r.Body)
	}
}
