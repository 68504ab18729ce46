package postgres

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Listener turns the NotifyChannel announcements into wake-ups for the dispatcher, so
// that a queued notification's e-mail leaves at once rather than at the next poll.
// A wake-up is only a hint: announcements made while the listener reconnects are lost,
// which the dispatcher's polling covers.
type Listener struct {
	pool *pgxpool.Pool
	log  *slog.Logger
	c    chan struct{}
}

// NewListener listens on a connection of its own to pool's database (a pooled one
// would be held for ever).
func NewListener(pool *pgxpool.Pool, log *slog.Logger) *Listener {
	return &Listener{pool: pool, log: log.With("component", "notify-listener"), c: make(chan struct{}, 1)}
}

// C fires after one or more notifications were queued. Wake-ups that arrive while a
// previous one is unread fold into it.
func (l *Listener) C() <-chan struct{} { return l.c }

// Run listens until ctx ends, then returns nil, reconnecting with backoff when the
// connection breaks.
func (l *Listener) Run(ctx context.Context) error {
	wait := 250 * time.Millisecond
	for {
		err := l.listen(ctx)
		if ctx.Err() != nil {
			return nil
		}
		l.log.Warn("listening failed; reconnecting", "err", err, "in", wait.String())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, 10*time.Second)
	}
}

func (l *Listener) listen(ctx context.Context) error {
	conn, err := pgx.ConnectConfig(ctx, l.pool.Config().ConnConfig.Copy())
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+NotifyChannel); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	l.wake() // anything announced while not listening is found by the next pass
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return fmt.Errorf("wait for notification: %w", err)
		}
		l.wake()
	}
}

func (l *Listener) wake() {
	select {
	case l.c <- struct{}{}:
	default: // one wake-up is already waiting
	}
}
