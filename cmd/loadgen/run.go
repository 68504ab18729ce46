package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/bazaar-shop/bazaar/internal/loadgen"
)

// stderr receives the progress line and the usage; tests replace it.
var stderr io.Writer = os.Stderr

const usage = `usage: loadgen [flags]

Puts a crowd of shoppers on a running Bazaar through its gateway and reports what
happened: a progress line on stderr every second, a summary table (or -json) on stdout.
It stops by itself after -duration or -orders (30s when neither is given); Ctrl-C stops
it early and still prints the summary.

Open loop (-rate, the default at 5 orders/s): orders arrive at that rate whatever the
latency, at most -max-inflight at once (arrivals beyond are dropped and counted).
Closed loop (-c N): N shoppers, each ordering again once its last order is done.

The shoppers share -accounts accounts, <prefix>-<n>@bazaar.test, registered on first
use and reused by later runs; their tokens are kept in -token-cache. Sign-ins are paced
under the gateway's default limits, and 429s are waited out.

The demo catalogue's stock runs out after a few thousand orders (they then end
out_of_stock): -restock N has the admin set every product below N back to N before the
run and every 5 s during it (products whose stock an admin set are no longer checked
for stock conservation by internal/invariants).

Environment: LOADGEN_URL (the default of -url), LOADGEN_PASSWORD (the accounts'
password), LOADGEN_TOKEN_CACHE (the default of -token-cache), BAZAAR_ADMIN_EMAIL and
BAZAAR_ADMIN_PASSWORD (the admin for -restock; default the demo admin).

Flags:
`

// run parses the flags, runs the load and prints the summary.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	def := loadgen.DefaultConfig()
	cfg := def
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	baseURL := def.BaseURL
	if v := getenv("LOADGEN_URL"); v != "" {
		baseURL = v
	}
	tokenCache := loadgen.DefaultTokenCache()
	if v := getenv("LOADGEN_TOKEN_CACHE"); v != "" {
		tokenCache = v
	}
	if v := getenv("LOADGEN_PASSWORD"); v != "" {
		cfg.Password = v
	}
	if v := getenv("BAZAAR_ADMIN_EMAIL"); v != "" {
		cfg.AdminEmail = v
	}
	if v := getenv("BAZAAR_ADMIN_PASSWORD"); v != "" {
		cfg.AdminPassword = v
	}
	fs.StringVar(&cfg.BaseURL, "url", baseURL, "the gateway's base URL")
	rate := fs.Float64("rate", 0, "open loop: orders a second (default 5 unless -c is given)")
	fs.IntVar(&cfg.Concurrency, "c", 0, "closed loop: this many shoppers at once, instead of -rate")
	fs.BoolVar(&cfg.Poisson, "poisson", false, "open loop: random (exponential) gaps between arrivals instead of even ones")
	fs.IntVar(&cfg.MaxInFlight, "max-inflight", def.MaxInFlight, "open loop: most shoppers at once")
	duration := fs.Duration("duration", 0, "stop starting orders after this long (default 30s unless -orders is given)")
	fs.IntVar(&cfg.Orders, "orders", 0, "stop after starting this many orders")
	fs.IntVar(&cfg.Accounts, "accounts", def.Accounts, "accounts the shoppers share")
	fs.StringVar(&cfg.AccountPrefix, "account-prefix", def.AccountPrefix, "accounts are <prefix>-<n>@bazaar.test")
	fs.StringVar(&cfg.TokenCache, "token-cache", tokenCache, `file keeping the accounts' tokens between runs ("off": none)`)
	payments := fs.String("payments", "visa=90,declined=6,insufficient=4", "payment methods and their weights (visa, declined, insufficient, or pm_card_* names)")
	fs.IntVar(&cfg.Restock, "restock", 0, "as the admin, keep every product's stock at least N/2, topping it up to N (0: never)")
	fs.IntVar(&cfg.MaxLines, "max-lines", def.MaxLines, "most lines in an order")
	fs.IntVar(&cfg.MaxQuantity, "max-quantity", def.MaxQuantity, "most units in a line")
	fs.Float64Var(&cfg.Browse, "browse", def.Browse, "fraction of shoppers who browse the catalogue first")
	fs.Float64Var(&cfg.Replay, "replay", def.Replay, "fraction of orders sent again with the same Idempotency-Key (and the replay checked)")
	fs.Float64Var(&cfg.Cancel, "cancel", def.Cancel, "fraction of confirmed orders cancelled")
	fs.Float64Var(&cfg.Stream, "stream", def.Stream, "fraction of orders followed on their status stream (SSE)")
	fs.DurationVar(&cfg.RequestTimeout, "timeout", def.RequestTimeout, "time-out of each request")
	fs.DurationVar(&cfg.SettleTimeout, "settle", def.SettleTimeout, "how long a shopper follows its order before counting it pending")
	fs.IntVar(&cfg.SignInsPerMinute, "signins-per-min", def.SignInsPerMinute, "pace of log-ins and sign-ups (0: unpaced)")
	fs.Float64Var(&cfg.AnonymousPerSecond, "anon-rate", def.AnonymousPerSecond, "pace of catalogue reads and token refreshes a second (0: unpaced)")
	fs.Uint64Var(&cfg.Seed, "seed", 0, "seed of the shoppers' choices (0: random)")
	asJSON := fs.Bool("json", false, "print the summary as JSON")
	quiet := fs.Bool("quiet", false, "no progress line")
	if len(args) > 0 {
		args = args[1:]
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %s (see -h)", strings.Join(fs.Args(), " "))
	}

	cfg.Rate = *rate
	if cfg.Rate == 0 && cfg.Concurrency == 0 {
		cfg.Rate = def.Rate
	}
	cfg.Duration = *duration
	if cfg.Duration == 0 && cfg.Orders == 0 {
		cfg.Duration = def.Duration
	}
	if cfg.TokenCache == "off" {
		cfg.TokenCache = ""
	}
	mix, err := loadgen.ParsePaymentMix(*payments)
	if err != nil {
		return err
	}
	cfg.Payments = mix

	var progress *progressLine
	if !*quiet {
		progress = &progressLine{w: stderr, inPlace: isTerminal(stderr)}
		cfg.Progress = progress.show
	}
	summary, err := loadgen.Run(ctx, cfg)
	if progress != nil {
		progress.end()
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil // Ctrl-C before the first order: nothing to report
		}
		return err
	}
	if *asJSON {
		return loadgen.WriteJSON(stdout, summary)
	}
	return loadgen.WriteTable(stdout, summary)
}

// progressLine shows the run's progress: rewritten in place on a terminal, a line a
// second anywhere else (a log file, a CI job).
type progressLine struct {
	w       io.Writer
	inPlace bool
	shown   bool
}

func (p *progressLine) show(pr loadgen.Progress) {
	line := loadgen.FormatProgress(pr)
	if p.inPlace {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
	} else {
		fmt.Fprintln(p.w, line)
	}
	p.shown = true
}

func (p *progressLine) end() {
	if p.inPlace && p.shown {
		fmt.Fprintln(p.w)
	}
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
