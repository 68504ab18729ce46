package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/bazaar-shop/bazaar/internal/devstack"
	"github.com/bazaar-shop/bazaar/pkg/tcpproxy"
	"github.com/bazaar-shop/bazaar/services/orders/orderevents"
)

// FaultRecord is what became of one fault of the plan.
type FaultRecord struct {
	Fault
	Start, End time.Duration // when it began and when it was healed (the program or server back, ready), from the start of the load
	Detail     string        // what it found or did (sagas in flight when killed, the poison's id, ...)
	Err        string        // why it could not be done or healed, if so
	Skipped    bool          // the run ended before its time
}

// faultEnv is what the faults act on.
type faultEnv struct {
	stack                           *devstack.Stack
	pg                              *devstack.PrivatePostgres
	redis                           *devstack.PrivateRedis
	toInventory, toPayments, toSMTP *tcpproxy.Proxy
	ordersDB                        string
	admin                           *admin
	log                             *slog.Logger

	mu     sync.Mutex
	poison []string // event ids of the poison entries put on events.orders
}

func (e *faultEnv) poisoned() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.poison...)
}

// inject carries out f, healing it after f.For, and says what happened; t0 is the
// start of the load.
func (e *faultEnv) inject(ctx context.Context, t0 time.Time, f Fault) FaultRecord {
	rec := FaultRecord{Fault: f, Start: time.Since(t0)}
	log := e.log.With("fault", string(f.Kind), "target", f.Target)
	log.Info("fault", "what", f.String())
	var detail string
	var err error
	switch f.Kind {
	case KindKill, KindDown:
		detail, err = e.killAndRestart(ctx, f)
	case KindRedisRestart:
		e.redis.Stop(f.Crash || f.Wipe)
		if f.Wipe {
			err = e.redis.Wipe()
		}
		wait(ctx, f.For)
		err = errors.Join(err, e.redis.Start(context.WithoutCancel(ctx)))
	case KindPostgresRestart:
		e.pg.Stop(f.Crash)
		wait(ctx, f.For)
		err = e.pg.Start(context.WithoutCancel(ctx))
	case KindCut:
		e.toPayments.Cut()
		wait(ctx, f.For)
		e.toPayments.Restore()
	case KindSlow:
		e.toInventory.SetDelay(f.Delay)
		wait(ctx, f.For)
		e.toInventory.SetDelay(0)
	case KindSMTPDown:
		e.toSMTP.Cut()
		wait(ctx, f.For)
		e.toSMTP.Restore()
	case KindPoison:
		detail, err = e.poisonOrders(ctx)
	case KindReprice:
		detail, err = e.admin.reprice(ctx)
	default:
		err = fmt.Errorf("unknown fault kind %q", f.Kind)
	}
	rec.End, rec.Detail = time.Since(t0), detail
	if err != nil {
		rec.Err = err.Error()
		log.Error("fault failed", "err", err)
	} else {
		log.Info("fault healed", "took", (rec.End - rec.Start).Round(100*time.Millisecond).String(), "detail", detail)
	}
	return rec
}

// killAndRestart SIGKILLs the program, waits f.For and starts it again, waiting
// until it is ready. For orders mid-saga it first waits (up to 10 s) for sagas in
// flight, and says how many there were.
func (e *faultEnv) killAndRestart(ctx context.Context, f Fault) (string, error) {
	var detail string
	if f.MidSaga {
		n, err := e.waitForSagas(ctx, 10*time.Second)
		if err != nil {
			detail = "could not count sagas in flight: " + err.Error()
		} else {
			detail = fmt.Sprintf("%d sagas in flight when killed", n)
		}
	}
	if err := e.stack.KillProgram(f.Target); err != nil {
		return detail, err
	}
	wait(ctx, f.For)
	// The restart goes on even if the run is being stopped: a program left dead
	// would fail the stack's own stop.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Minute)
	defer cancel()
	return detail, e.stack.RestartProgram(rctx, f.Target)
}

// waitForSagas polls the orders database until some saga is unfinished, or within
// bound; it returns the count last seen.
func (e *faultEnv) waitForSagas(ctx context.Context, bound time.Duration) (int, error) {
	conn, err := pgx.Connect(ctx, e.ordersDB)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	deadline := time.Now().Add(bound)
	for {
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM sagas WHERE state <> 'done'`).Scan(&n); err != nil {
			return 0, err
		}
		if n > 0 || time.Now().After(deadline) {
			return n, nil
		}
		if !wait(ctx, 20*time.Millisecond) {
			return n, ctx.Err()
		}
	}
}

// poisonOrders XADDs an entry to events.orders that looks like an event but whose data
// is not JSON: a poison message, which consumers must dead-letter at once and get
// past.
func (e *faultEnv) poisonOrders(ctx context.Context) (string, error) {
	opt, err := redis.ParseURL(e.redis.URL())
	if err != nil {
		return "", err
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	id := uuid.NewString()
	entry, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: orderevents.Stream, Values: map[string]any{
		"specversion": "1.0", "id": id, "type": string(orderevents.TypeConfirmed), "source": "chaos",
		"subject": uuid.NewString(), "time": time.Now().UTC().Format(time.RFC3339Nano),
		"datacontenttype": "application/json", "data": `{"order_id": "`, "traceparent": "",
	}}).Result()
	if err != nil {
		return "", err
	}
	e.mu.Lock()
	e.poison = append(e.poison, id)
	e.mu.Unlock()
	return fmt.Sprintf("event %s, entry %s", id, entry), nil
}

// restockUntil restocks the products running low every period until the end of the
// load (or ctx).
func (e *faultEnv) restockUntil(ctx context.Context, end time.Time, period time.Duration) {
	for time.Now().Add(period).Before(end) {
		if !wait(ctx, period) {
			return
		}
		if err := e.admin.restock(ctx, 150, 300); err != nil && !strings.Contains(err.Error(), "context canceled") {
			e.log.Warn("restock failed; trying again next time", "err", err)
		}
	}
}
