package loadgen

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DefaultBaseURL is the gateway of `make run` and of docker compose.
const DefaultBaseURL = "http://localhost:8080"

// DefaultAdminEmail and DefaultAdminPassword are the demo admin that `make run` and
// docker compose seed (internal/devstack.DefaultAdmin).
const (
	DefaultAdminEmail    = "admin@bazaar.local"
	DefaultAdminPassword = "bazaar-admin"
)

// DefaultPassword is the password of every load-generator account. The accounts are
// test accounts on a local stack; the password is fixed so that any run can sign in to
// the accounts an earlier one registered.
const DefaultPassword = "loadgen-password"

// The payment methods of the public API (docs/openapi.yaml, CreateOrderRequest).
const (
	PaymentVisa         = "pm_card_visa"                            // confirmed
	PaymentDeclined     = "pm_card_chargeDeclined"                  // cancelled: payment_declined
	PaymentInsufficient = "pm_card_chargeDeclinedInsufficientFunds" // cancelled: insufficient_funds
)

// paymentAliases are the short names ParsePaymentMix accepts beside the full ones.
var paymentAliases = map[string]string{
	"visa":         PaymentVisa,
	"declined":     PaymentDeclined,
	"insufficient": PaymentInsufficient,
	"funds":        PaymentInsufficient,
}

// PaymentWeight is one payment method of a PaymentMix and its relative weight.
type PaymentWeight struct {
	Method string  `json:"method"`
	Weight float64 `json:"weight"`
}

// PaymentMix is how often each payment method is used: each order picks one with
// probability weight / (sum of the weights).
type PaymentMix []PaymentWeight

// DefaultPaymentMix is mostly cards that work: 90 % visa, 6 % declined, 4 %
// insufficient funds.
var DefaultPaymentMix = PaymentMix{
	{PaymentVisa, 90},
	{PaymentDeclined, 6},
	{PaymentInsufficient, 4},
}

// ParsePaymentMix reads a mix written as comma-separated method=weight pairs, such as
// "visa=90,declined=6,insufficient=4". A method is its full name (pm_card_visa,
// pm_card_chargeDeclined, pm_card_chargeDeclinedInsufficientFunds) or one of the
// short names visa, declined, insufficient (or funds). Weights are non-negative
// numbers, not all zero.
func ParsePaymentMix(s string) (PaymentMix, error) {
	var m PaymentMix
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, weight, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("payment mix %q: %q is not method=weight", s, part)
		}
		method, err := paymentMethod(strings.TrimSpace(name))
		if err != nil {
			return nil, fmt.Errorf("payment mix %q: %w", s, err)
		}
		w, err := strconv.ParseFloat(strings.TrimSpace(weight), 64)
		if err != nil || w < 0 || w != w {
			return nil, fmt.Errorf("payment mix %q: the weight of %s must be a number ≥ 0", s, name)
		}
		if slices.ContainsFunc(m, func(p PaymentWeight) bool { return p.Method == method }) {
			return nil, fmt.Errorf("payment mix %q: %s is given twice", s, method)
		}
		m = append(m, PaymentWeight{method, w})
	}
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("payment mix %q: %w", s, err)
	}
	return m, nil
}

func paymentMethod(name string) (string, error) {
	if full, ok := paymentAliases[strings.ToLower(name)]; ok {
		return full, nil
	}
	switch name {
	case PaymentVisa, PaymentDeclined, PaymentInsufficient:
		return name, nil
	}
	return "", fmt.Errorf("unknown payment method %q (want visa, declined, insufficient or a pm_card_* name)", name)
}

func (m PaymentMix) validate() error {
	var sum float64
	for _, p := range m {
		if _, err := paymentMethod(p.Method); err != nil {
			return err
		}
		if p.Weight < 0 || p.Weight != p.Weight {
			return fmt.Errorf("the weight of %s must be ≥ 0", p.Method)
		}
		sum += p.Weight
	}
	if sum <= 0 {
		return errors.New("at least one payment method needs a weight above zero")
	}
	return nil
}

// String writes m the way ParsePaymentMix reads it.
func (m PaymentMix) String() string {
	parts := make([]string, len(m))
	for i, p := range m {
		parts[i] = p.Method + "=" + strconv.FormatFloat(p.Weight, 'g', -1, 64)
	}
	return strings.Join(parts, ",")
}

// pick chooses a method with the mix's odds.
func (m PaymentMix) pick(rng *rand.Rand) string {
	var sum float64
	for _, p := range m {
		sum += p.Weight
	}
	x := rng.Float64() * sum
	for _, p := range m {
		if x < p.Weight {
			return p.Method
		}
		x -= p.Weight
	}
	// Rounding: the last method with a weight.
	for i := len(m) - 1; i >= 0; i-- {
		if m[i].Weight > 0 {
			return m[i].Method
		}
	}
	return PaymentVisa
}

// Config is what a load run does. Start from DefaultConfig and change what you need:
// in a Config literal a zero fraction (Browse, Replay, Cancel, Stream) or pacing rate
// means "never" or "unpaced", while the other zero values take the defaults noted.
type Config struct {
	// BaseURL is the gateway, such as http://localhost:8080 (default DefaultBaseURL).
	BaseURL string

	// Rate, when above zero, runs an open loop: orders arrive at this many per
	// second whether or not earlier ones have been answered (a new shopper for each
	// arrival), at most MaxInFlight at once. Concurrency, when above zero, runs a
	// closed loop instead: that many shoppers, each placing its next order once the
	// last is done. Exactly one of the two must be set.
	Rate        float64
	Concurrency int
	// Poisson spaces open-loop arrivals at random (exponential gaps, as independent
	// shoppers arrive) rather than evenly.
	Poisson bool
	// MaxInFlight bounds the open loop's shoppers at once; an arrival that finds
	// them all busy is dropped and counted (Summary.Dropped) (default 256).
	MaxInFlight int

	// Duration and Orders end the run: no new order starts once Duration has passed
	// since the first one, or once Orders orders have started, whichever comes
	// first. Orders under way then finish (each within SettleTimeout). With both
	// zero, Duration is DefaultDuration.
	Duration time.Duration
	Orders   int

	// Accounts is how many accounts the shoppers share (default 10). They are
	// AccountPrefix-<n>@bazaar.test for n = 1..Accounts, with Password, registered
	// when they do not exist yet, so that every run reuses the same ones.
	Accounts      int
	AccountPrefix string // default "loadgen"
	Password      string // default DefaultPassword
	// TokenCache is a file that keeps the accounts' tokens between runs, so that a
	// run refreshes tokens instead of logging in again; "" keeps none. DefaultTokenCache
	// names the usual place.
	TokenCache string

	// Restock, when above zero, has the admin (AdminEmail, AdminPassword) set the
	// stock of every product below Restock to Restock before the first order, and
	// again every 5 s for those fallen below half of it, so that long or repeated runs
	// do not end every order out_of_stock. Beware: a stock set by an admin is a new
	// baseline, so internal/invariants no longer checks those products' stock
	// conservation.
	Restock int
	// AdminEmail and AdminPassword sign the admin in for Restock (default
	// DefaultAdminEmail and DefaultAdminPassword, the local stack's demo admin).
	AdminEmail, AdminPassword string

	// Payments is the mix of payment methods (default DefaultPaymentMix).
	Payments PaymentMix
	// MaxLines and MaxQuantity bound an order: 1..MaxLines lines of distinct
	// products, each of 1..MaxQuantity units (defaults 3 and 2).
	MaxLines, MaxQuantity int

	// The fractions of shoppers that do something, each in [0, 1]:
	Browse float64 // browse pages of the catalogue and the products' pages before ordering
	Replay float64 // send their order again with the same Idempotency-Key and check the replay
	Cancel float64 // cancel their order once it is confirmed
	Stream float64 // follow their order's status stream (SSE) to the end; others poll a pending order

	// RequestTimeout bounds each request (default 10s; the saga answers within 3s).
	RequestTimeout time.Duration
	// SettleTimeout bounds each shopper's whole visit, following a pending order
	// included; an order still not confirmed or cancelled then counts as pending
	// (default 3m: a saga that cannot charge within 2 minutes is cancelled).
	SettleTimeout time.Duration
	// PostRetries is how many times an order whose POST failed (time-out, network,
	// 5xx, 409 from a held key) is sent again with the same Idempotency-Key (default
	// 2; negative: none).
	PostRetries int
	// MaxRateLimitWaits is how many 429s in a row a request waits out (Retry-After)
	// before it counts as failed (default 10).
	MaxRateLimitWaits int

	// SignInsPerMinute paces log-ins and sign-ups, which the gateway limits per
	// client IP (10 a minute by default); zero does not pace them.
	SignInsPerMinute int
	// AnonymousPerSecond paces the requests the gateway limits per client IP
	// (catalogue pages, token refreshes; 20 a second by default). Browsing is
	// skipped, not delayed, when it would go over; zero does not pace them.
	AnonymousPerSecond float64

	// Seed makes the shoppers' choices repeatable; zero picks one at random. The
	// seed used is in the Summary.
	Seed uint64

	// Progress, when set, is called with the run's state every ProgressEvery
	// (default 1s) while orders run, and once at the end. FormatProgress renders it.
	Progress      func(Progress)
	ProgressEvery time.Duration

	// HTTPClient sends every request (default: a client of its own, with enough
	// idle connections for the load). Its Timeout should be zero: status streams
	// last as long as their order's saga.
	HTTPClient *http.Client

	clock clock // tests' fake time; nil is the real clock
}

// Defaults of DefaultConfig and of zero fields.
const (
	DefaultDuration    = 30 * time.Second
	DefaultAccounts    = 10
	DefaultMaxInFlight = 256
)

// DefaultConfig is a run of 5 orders a second for DefaultDuration against
// DefaultBaseURL, with the gateway's default limits in mind.
func DefaultConfig() Config {
	return Config{
		BaseURL:            DefaultBaseURL,
		Rate:               5,
		MaxInFlight:        DefaultMaxInFlight,
		Duration:           DefaultDuration,
		Accounts:           DefaultAccounts,
		AccountPrefix:      "loadgen",
		Password:           DefaultPassword,
		Payments:           DefaultPaymentMix,
		MaxLines:           3,
		MaxQuantity:        2,
		Browse:             0.8,
		Replay:             0.1,
		Cancel:             0.1,
		Stream:             0.2,
		RequestTimeout:     10 * time.Second,
		SettleTimeout:      3 * time.Minute,
		PostRetries:        2,
		MaxRateLimitWaits:  10,
		SignInsPerMinute:   10,
		AnonymousPerSecond: 15,
		ProgressEvery:      time.Second,
	}
}

// normalize fills the defaults of zero fields and checks the rest.
func (c Config) normalize() (Config, error) {
	if c.BaseURL == "" {
		c.BaseURL = DefaultBaseURL
	}
	c.BaseURL = strings.TrimRight(c.BaseURL, "/")
	if c.MaxInFlight == 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.Duration == 0 && c.Orders == 0 {
		c.Duration = DefaultDuration
	}
	if c.Accounts == 0 {
		c.Accounts = DefaultAccounts
	}
	if c.AccountPrefix == "" {
		c.AccountPrefix = "loadgen"
	}
	if c.Password == "" {
		c.Password = DefaultPassword
	}
	if c.AdminEmail == "" {
		c.AdminEmail = DefaultAdminEmail
	}
	if c.AdminPassword == "" {
		c.AdminPassword = DefaultAdminPassword
	}
	if c.Payments == nil {
		c.Payments = DefaultPaymentMix
	}
	if c.MaxLines == 0 {
		c.MaxLines = 3
	}
	if c.MaxQuantity == 0 {
		c.MaxQuantity = 2
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 10 * time.Second
	}
	if c.SettleTimeout == 0 {
		c.SettleTimeout = 3 * time.Minute
	}
	if c.PostRetries == 0 {
		c.PostRetries = 2
	}
	if c.PostRetries < 0 {
		c.PostRetries = 0
	}
	if c.MaxRateLimitWaits == 0 {
		c.MaxRateLimitWaits = 10
	}
	if c.ProgressEvery == 0 {
		c.ProgressEvery = time.Second
	}
	if c.Seed == 0 {
		c.Seed = rand.Uint64() | 1
	}
	if c.clock == nil {
		c.clock = realClock{}
	}

	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if u, err := url.Parse(c.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("base URL %q: want http://host:port", c.BaseURL)
	}
	switch {
	case c.Rate < 0 || c.Rate != c.Rate:
		bad("rate %v: must be ≥ 0", c.Rate)
	case c.Concurrency < 0:
		bad("concurrency %d: must be ≥ 0", c.Concurrency)
	case c.Rate > 0 && c.Concurrency > 0:
		bad("set either a rate (open loop) or a concurrency (closed loop), not both")
	case c.Rate == 0 && c.Concurrency == 0:
		bad("set a rate (open loop) or a concurrency (closed loop)")
	}
	if c.MaxInFlight < 0 {
		bad("max in-flight %d: must be ≥ 1", c.MaxInFlight)
	}
	if c.Duration < 0 {
		bad("duration %s: must be ≥ 0", c.Duration)
	}
	if c.Orders < 0 {
		bad("orders %d: must be ≥ 0", c.Orders)
	}
	if c.Accounts < 0 {
		bad("accounts %d: must be ≥ 1", c.Accounts)
	}
	if strings.ContainsAny(c.AccountPrefix, "@ \t\r\n") {
		bad("account prefix %q: no @ or spaces", c.AccountPrefix)
	}
	if len(c.Password) < 8 {
		bad("the password must have at least 8 characters")
	}
	if c.Restock < 0 || c.Restock > 1_000_000_000 {
		bad("restock %d: must be 0 (off) to 1000000000", c.Restock)
	}
	if err := c.Payments.validate(); err != nil {
		bad("payment mix: %w", err)
	}
	if c.MaxLines < 1 || c.MaxLines > 50 {
		bad("max lines %d: must be 1..50", c.MaxLines)
	}
	if c.MaxQuantity < 1 || c.MaxQuantity > 100 {
		bad("max quantity %d: must be 1..100", c.MaxQuantity)
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"browse", c.Browse}, {"replay", c.Replay}, {"cancel", c.Cancel}, {"stream", c.Stream}} {
		if f.v < 0 || f.v > 1 || f.v != f.v {
			bad("%s fraction %v: must be in [0, 1]", f.name, f.v)
		}
	}
	if c.RequestTimeout < 0 || c.SettleTimeout < 0 || c.ProgressEvery < 0 {
		bad("time-outs and the progress period must be ≥ 0")
	}
	if c.MaxRateLimitWaits < 0 {
		bad("max rate-limit waits %d: must be ≥ 0", c.MaxRateLimitWaits)
	}
	if c.SignInsPerMinute < 0 || c.AnonymousPerSecond < 0 {
		bad("pacing rates must be ≥ 0")
	}
	return c, errors.Join(errs...)
}

// email is the address of account n (1-based).
func (c Config) email(n int) string {
	return fmt.Sprintf("%s-%d@bazaar.test", c.AccountPrefix, n)
}
