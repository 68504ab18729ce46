package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bazaar-shop/bazaar/internal/chaos"
	"github.com/bazaar-shop/bazaar/internal/devstack"
)

// stderr receives the progress log and the usage; tests replace it.
var stderr io.Writer = os.Stderr

const usage = `usage: chaos [flags]

Starts Bazaar on a private Postgres cluster and a private Redis (never the machine's
shared servers), puts an open loop of shoppers on it through the gateway, and while
they order injects faults on a wall-clock plan: every program SIGKILLed and restarted
(orders mid-saga), payments and orders down longer than CHARGE_BUDGET, Redis and
Postgres restarted, orders→payments cut and healed, orders→inventory slowed, SMTP
unreachable for minutes, a poison entry on events.orders; an admin restocks and
reprices meanwhile. Then it waits for the stack to come to rest and judges it with the
invariant checker. The table goes to stdout, progress to stderr, every program's
output to -log. It exits non-zero when an invariant is violated, a program died on
its own, a fault could not be carried out, the stack did not come to rest, or fewer
than -orders orders were made.

Flags:
`

// run parses the flags, runs the chaos and prints the table.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	orders := fs.Int("orders", 10_000, "orders the run must create; unless -duration is given, the load lasts orders/rate/0.6 (a third of the arrivals meet a fault and make no order)")
	duration := fs.Duration("duration", 0, "how long orders keep arriving (default: from -orders and -rate)")
	rate := fs.Float64("rate", 15, "orders a second (an open loop)")
	seed := fs.Uint64("seed", 0, "seed of the shoppers' and the admin's choices (0: random)")
	budget := fs.Duration("budget", 30*time.Second, "orders' CHARGE_BUDGET in the stack (the down faults last 8 s longer)")
	settle := fs.Duration("settle", 10*time.Minute, "how long the stack may take to come to rest after the load")
	logPath := fs.String("log", "", "file for every program's output (default: chaos-<time>.log in the temporary directory)")
	maxViolations := fs.Int("max-violations", 50, "violations listed in full")
	wipe := fs.Bool("redis-wipe", false, "make the first Redis restart lose all of Redis's data (see docs/reliability.md)")
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
	if *rate <= 0 {
		return errors.New("-rate must be above zero")
	}
	load := *duration
	if load == 0 {
		// No order is made while orders, the gateway or Postgres is down (about a
		// quarter of each pass of the plan), and arrivals are dropped while every
		// shopper is busy waiting out a payments outage: about two thirds of the
		// arrivals become orders (a long run: 9 376 of 14 295). Allow for a little less.
		load = time.Duration(math.Ceil(float64(*orders)/(*rate)/0.6)) * time.Second
	}

	plan, err := chaos.Plan(load, *budget)
	if err != nil {
		return err
	}
	if *wipe {
		for i := range plan {
			if plan[i].Kind == chaos.KindRedisRestart {
				plan[i].Wipe = true
				break
			}
		}
	}

	root, err := devstack.FindRepoRoot(".")
	if err != nil {
		return err
	}
	if *logPath == "" {
		*logPath = filepath.Join(os.TempDir(), "chaos-"+time.Now().Format("20060102-150405")+".log")
	}
	logFile, err := os.Create(*logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	log.Info("chaos run", "load", load.String(), "rate", *rate, "budget", budget.String(), "stack_log", *logPath)

	res, err := chaos.Run(ctx, chaos.Config{
		RepoDir:       root,
		Load:          load,
		Rate:          *rate,
		Seed:          *seed,
		ChargeBudget:  *budget,
		Plan:          plan,
		RestockEvery:  30 * time.Second,
		SettleTimeout: *settle,
		Log:           log,
		StackOutput:   logFile,
	})
	if err != nil {
		return err
	}
	if err := res.WriteTable(stdout, *maxViolations); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nEvery program's output: %s\n", *logPath)
	var problems []string
	if created := res.Report.Orders; created < *orders {
		problems = append(problems, fmt.Sprintf("%d orders made, fewer than the %d asked for", created, *orders))
	}
	problems = append(problems, res.Problems()...)
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}
