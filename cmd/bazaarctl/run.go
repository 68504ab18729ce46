package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/bazaar-shop/bazaar/internal/demo"
	"github.com/bazaar-shop/bazaar/pkg/config"
	"github.com/bazaar-shop/bazaar/pkg/events"
	"github.com/bazaar-shop/bazaar/pkg/outbox"
	"github.com/bazaar-shop/bazaar/pkg/pgdb"
	"github.com/bazaar-shop/bazaar/pkg/redisclient"
)

const usage = `usage:
  bazaarctl dlq list [-n 50]             list dead-lettered events (REDIS_URL)
  bazaarctl dlq replay ID... | -all      put them back on their streams
  bazaarctl outbox pending               count unpublished rows (DATABASE_URL)
  bazaarctl outbox republish -from T -to T
                                         publish the rows written in [from, to) again (RFC 3339 times)
  bazaarctl secrets init -dir DIR [-owner UID:GID]
                                         create a stack's service keys, KEK and admin password where missing
  bazaarctl keys rotate -dir DIR SERVICE give a service a new key without refusing a call
  bazaarctl demo seed -gateway URL       register the demo shopper (BAZAAR_SHOPPER_EMAIL, _PASSWORD), as make run does`

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) < 3 {
		return errors.New(usage)
	}
	env := config.New(getenv)
	redisURL := env.URL("REDIS_URL", "redis://127.0.0.1:6379/0", "redis", "rediss")
	dbURL := env.String("DATABASE_URL", "")
	if err := env.Err(); err != nil {
		return err
	}
	switch args[1] + " " + args[2] {
	case "secrets init":
		return secretsInit(args[3:], stdout)
	case "keys rotate":
		return keysRotate(args[3:], stdout)
	case "dlq list":
		return dlqList(ctx, redisURL, args[3:], stdout)
	case "dlq replay":
		return dlqReplay(ctx, redisURL, args[3:], stdout)
	case "demo seed":
		return demoSeed(ctx, env, args[3:], stdout)
	case "outbox pending", "outbox republish":
		if dbURL == "" {
			return errors.New("DATABASE_URL must name the service's database")
		}
		return outboxCmd(ctx, dbURL, args[2], args[3:], stdout)
	}
	return errors.New(usage)
}

// demoSeed is what make run does once the stack is ready (demo.Seed), for a stack
// started another way: docker compose runs it as a job once the gateway is healthy.
func demoSeed(ctx context.Context, env *config.Env, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("demo seed", flag.ContinueOnError)
	gateway := fs.String("gateway", "http://127.0.0.1:8080", "the gateway's base URL")
	if err := fs.Parse(args); err != nil {
		return err
	}
	shopper := demo.Login{
		Email:    env.String("BAZAAR_SHOPPER_EMAIL", demo.Shopper.Email),
		Password: env.Secret("BAZAAR_SHOPPER_PASSWORD", demo.Shopper.Password),
		Name:     demo.Shopper.Name,
	}
	if err := env.Err(); err != nil {
		return err
	}
	printf := func(format string, a ...any) { fmt.Fprintf(out, format+"\n", a...) }
	return demo.Seed(ctx, *gateway, demo.Login{}, shopper, printf)
}

func dlqList(ctx context.Context, redisURL string, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("dlq list", flag.ContinueOnError)
	n := fs.Int64("n", 50, "how many entries at most")
	if err := fs.Parse(args); err != nil {
		return err
	}
	rdb, err := redisclient.Open(redisURL)
	if err != nil {
		return err
	}
	defer rdb.Close()
	list, err := events.ListDLQ(ctx, rdb, *n)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tSTREAM\tGROUP\tTYPE\tEVENT\tDELIVERIES\tFAILED AT\tERROR")
	for _, d := range list {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", d.ID, d.Stream, d.Group, d.Type, d.EventID,
			d.Deliveries, d.Time.Format(time.RFC3339), d.Error)
	}
	return w.Flush()
}

func dlqReplay(ctx context.Context, redisURL string, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("dlq replay", flag.ContinueOnError)
	all := fs.Bool("all", false, "replay every entry")
	if err := fs.Parse(args); err != nil {
		return err
	}
	rdb, err := redisclient.Open(redisURL)
	if err != nil {
		return err
	}
	defer rdb.Close()
	ids := fs.Args()
	if *all {
		list, err := events.ListDLQ(ctx, rdb, 1_000_000)
		if err != nil {
			return err
		}
		for _, d := range list {
			ids = append(ids, d.ID)
		}
	}
	if len(ids) == 0 {
		return errors.New("name the entries to replay, or -all")
	}
	for _, id := range ids {
		if err := events.Replay(ctx, rdb, id); err != nil {
			return fmt.Errorf("replay %s: %w", id, err)
		}
		fmt.Fprintln(out, "replayed", id)
	}
	return nil
}

func outboxCmd(ctx context.Context, dbURL, verb string, args []string, out io.Writer) error {
	pool, err := pgdb.Open(ctx, dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	if verb == "pending" {
		n, err := outbox.Pending(ctx, pool)
		if err != nil {
			return err
		}
		fmt.Fprintln(out, n, "unpublished rows")
		return nil
	}
	fs := flag.NewFlagSet("outbox republish", flag.ContinueOnError)
	from := fs.String("from", "", "start of the range, RFC 3339, inclusive")
	to := fs.String("to", "", "end of the range, RFC 3339, exclusive")
	if err := fs.Parse(args); err != nil {
		return err
	}
	f, err1 := time.Parse(time.RFC3339, *from)
	t, err2 := time.Parse(time.RFC3339, *to)
	if err1 != nil || err2 != nil || !f.Before(t) {
		return errors.New("-from and -to must be RFC 3339 times with from < to")
	}
	n, err := outbox.Republish(ctx, pool, f, t)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, n, "rows marked for publishing again")
	return nil
}
