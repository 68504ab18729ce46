package ratelimit

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/bazaar-shop/bazaar/internal/testkit/redistest"
	"github.com/bazaar-shop/bazaar/internal/testkit/testhttp"
	"github.com/bazaar-shop/bazaar/pkg/auth"
)

// Each 429 is counted under the limit that answered it, and every limit is exported
// from the start at zero, so that a dashboard's rate has a series before the first
// refusal.
func TestRejectionsAreCountedByTheLimitThatRefused(t *testing.T) {
	t.Parallel()
	rdb, err := Open(redistest.New(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	reg := prometheus.NewRegistry()
	l := New(rdb, Limits{EdgeIP: 1, EdgeIPBurst: 1, IP: 1, IPBurst: 1, User: 1, UserBurst: 1,
		AuthIPPerMin: 2, AuthEmailPerMin: 1}, Options{Registerer: reg})
	metrics := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(metrics.Close)

	scrape(t, metrics.URL, map[string]int{LimitEdgeIP: 0, LimitIP: 0, LimitUser: 0, LimitAuthIP: 0, LimitAuthEmail: 0})

	ok := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	send := func(h http.Handler, addr string, user *uuid.UUID, body string) int {
		r := httptest.NewRequest(http.MethodPost, "/api/v1/auth/login", strings.NewReader(body))
		r.RemoteAddr = addr
		if user != nil {
			r = r.WithContext(auth.WithPrincipal(r.Context(), auth.Principal{UserID: *user, Role: auth.RoleCustomer}))
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	user := uuid.New()
	for i, c := range []struct {
		h     http.Handler
		addr  string
		user  *uuid.UUID
		body  string
		want  int
		limit string
	}{
		// One request a second per address at the edge: the second is refused there.
		{l.PerAddress(ok), "192.0.2.1:1000", nil, "", 200, ""},
		{l.PerAddress(ok), "192.0.2.1:1000", nil, "", 429, LimitEdgeIP},
		// An anonymous caller by address, a signed-in one by user.
		{l.PerCaller(ok), "192.0.2.2:1000", nil, "", 200, ""},
		{l.PerCaller(ok), "192.0.2.2:1000", nil, "", 429, LimitIP},
		{l.PerCaller(ok), "192.0.2.3:1000", &user, "", 200, ""},
		{l.PerCaller(ok), "192.0.2.4:1000", &user, "", 429, LimitUser},
		// Sign-ins: the same address two a minute, the same e-mail one.
		{l.SignIn(ok), "192.0.2.5:1000", nil, `{"email":"a@example.com"}`, 200, ""},
		{l.SignIn(ok), "192.0.2.6:1000", nil, `{"email":"a@example.com"}`, 429, LimitAuthEmail},
		{l.SignIn(ok), "192.0.2.5:1000", nil, `{"email":"b@example.com"}`, 200, ""},
		{l.SignIn(ok), "192.0.2.5:1000", nil, `{"email":"c@example.com"}`, 429, LimitAuthIP},
	} {
		if got := send(c.h, c.addr, c.user, c.body); got != c.want {
			t.Fatalf("request %d: %d, want %d (refused by %q)", i, got, c.want, c.limit)
		}
	}
	// The operations sign-in form counts against the same limits, and its refusals
	// too.
	r := httptest.NewRequest(http.MethodPost, "/ops/login", nil)
	r.RemoteAddr = "192.0.2.5:1000"
	if _, ok := l.SignInAttempt(r, "d@example.com"); ok {
		t.Fatal("a third sign-in from one address in a minute was let through")
	}

	scrape(t, metrics.URL, map[string]int{LimitEdgeIP: 1, LimitIP: 1, LimitUser: 1, LimitAuthIP: 2, LimitAuthEmail: 1})
}

// scrape reads the metrics at url and checks the rejections counted by limit.
func scrape(t *testing.T, url string, want map[string]int) {
	t.Helper()
	resp, err := testhttp.Client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for limit, n := range want {
		line := `gateway_rate_limit_rejections_total{limit="` + limit + `"} ` + strconv.Itoa(n)
		if !strings.Contains(string(body), line+"\n") {
			t.Errorf("metrics lack %s:\n%s", line, grepLines(string(body), "gateway_rate_limit_rejections_total{"))
		}
	}
}

func grepLines(s, prefix string) string {
	var out []string
	for line := range strings.Lines(s) {
		if strings.HasPrefix(line, prefix) {
			out = append(out, strings.TrimSpace(line))
		}
	}
	return strings.Join(out, "\n")
}
