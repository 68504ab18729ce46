// Command background shows background work done in the process, lost when the
// process ends, beside the same work as asynq tasks in Redis, which survive a restart
// and are retried after a failure.
// It talks to the Redis in REDIS_URL (default redis://127.0.0.1:6379/0), on the asynq
// queue examples:background, which it deletes when done. README.md explains it.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

func main() {
	url := os.Getenv("REDIS_URL")
	if url == "" {
		url = "redis://127.0.0.1:6379/0"
	}
	if err := run(context.Background(), url, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "background:", err)
		os.Exit(1)
	}
}

// run tells the story step by step on out.
func run(ctx context.Context, redisURL string, out io.Writer) error {
	say := func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) }
	started := make(chan string, 1)
	// longJob starts a job and is still at it when its process is stopped.
	longJob := func(ctx context.Context, job string) error {
		started <- job
		<-ctx.Done()
		return ctx.Err()
	}

	say("1. In the process: a worker pool fed by a channel.")
	process, stopProcess := context.WithCancel(ctx)
	defer stopProcess()
	p := startPool(process, 1, longJob, func(format string, args ...any) { say("   "+format, args...) })
	for _, job := range []string{"report:monthly 2025-05", "email:welcome ada@example.com"} {
		if err := p.submit(job); err != nil {
			return err
		}
		say("   handler: accepted %q (202 Accepted)", job)
	}
	job, err := recv(started, "job started")
	if err != nil {
		return err
	}
	say("   worker: started %q; then the process is stopped (a deploy, a crash)", job)
	stopProcess()
	say("   %d accepted job(s) never started, the report was cut off, and the restarted", p.wait())
	say("   process begins with an empty channel: both are lost, and nobody can retry them.")

	say("\n2. The same work as asynq tasks in Redis.")
	opt, err := asynq.ParseRedisURI(redisURL)
	if err != nil {
		return err
	}
	client, inspector := asynq.NewClient(opt), asynq.NewInspector(opt)
	defer client.Close()
	defer inspector.Close()
	rdbOpt, err := redis.ParseURL(redisURL)
	if err != nil {
		return err
	}
	rdb := redis.NewClient(rdbOpt)
	defer rdb.Close()
	// Delete what an interrupted run may have left, and leave nothing behind.
	if err := deleteQueue(ctx, inspector, rdb); err != nil {
		return err
	}
	defer deleteQueue(context.WithoutCancel(ctx), inspector, rdb)
	for _, t := range [][2]string{{typeReport, "2025-05"}, {typeEmail, "ada@example.com"}} {
		if _, err := enqueue(ctx, client, t[0], t[1]); err != nil {
			return err
		}
		say("   enqueued %s %s", t[0], t[1])
	}
	first, err := startServer(redisURL, func(ctx context.Context, t *asynq.Task) error { return longJob(ctx, t.Type()) })
	if err != nil {
		return err
	}
	if job, err = recv(started, "task started by server 1"); err != nil {
		return err
	}
	say("   server 1: started %s; then it is stopped", job)
	first.Shutdown()
	q, err := inspector.GetQueueInfo(queue)
	if err != nil {
		return err
	}
	say("   asynq handed the report back: %d tasks pending, %d active", q.Pending, q.Active)
	done := make(chan string, 2)
	second, err := startServer(redisURL, func(ctx context.Context, t *asynq.Task) error {
		done <- t.Type() + " " + string(t.Payload())
		return nil
	})
	if err != nil {
		return err
	}
	defer second.Shutdown()
	for range 2 {
		d, err := recv(done, "task done by server 2")
		if err != nil {
			return err
		}
		say("   server 2 (the restarted process): did %s", d)
	}
	second.Shutdown() // so that the next task goes to server 3, whose handler fails once

	say("\n3. A failed task is retried.")
	attempts := make(chan error, 2)
	third, err := startServer(redisURL, func(ctx context.Context, t *asynq.Task) error {
		var err error
		if n, _ := asynq.GetRetryCount(ctx); n == 0 {
			err = errors.New("smtp: 451 try again later") // a transient failure
		}
		attempts <- err
		return err
	})
	if err != nil {
		return err
	}
	defer third.Shutdown()
	info, err := enqueue(ctx, client, typeEmail, "bob@example.com")
	if err != nil {
		return err
	}
	say("   enqueued %s bob@example.com", typeEmail)
	for i := 1; i <= 2; i++ {
		failure, err := recv(attempts, "attempt")
		switch {
		case err != nil:
			return err
		case failure != nil:
			say("   attempt %d failed: %v", i, failure)
		default:
			say("   attempt %d: sent", i)
		}
	}
	if info, err = waitCompleted(inspector, info.ID, 5*time.Second); err != nil {
		return err
	}
	say("   asynq's record of it: %s after %d retry, last error %q", info.State, info.Retried, info.LastErr)
	say("\nIn Bazaar: e-mails are email:send tasks (services/notifications/internal/jobs, EmailTask).")
	return nil
}

// recv is the next value from ch, or an error if none comes within 5 s.
func recv[T any](ch <-chan T, what string) (T, error) {
	select {
	case v := <-ch:
		return v, nil
	case <-time.After(5 * time.Second):
		var zero T
		return zero, fmt.Errorf("no %s within 5 s", what)
	}
}
