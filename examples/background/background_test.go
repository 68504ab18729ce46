package main

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/bazaar-shop/bazaar/internal/testkit/redistest"
)

// within is how long a test waits for something that should take milliseconds.
const within = 5 * time.Second

// receive is the next value from ch, failing t if none comes within 5 s (recv).
func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	v, err := recv(ch, what)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestInProcessWorkIsLostWhenTheProcessEnds(t *testing.T) {
	t.Parallel()
	started, done := make(chan string, 1), make(chan string, 10)
	do := func(ctx context.Context, job string) error {
		if job == "report" {
			started <- job
			<-ctx.Done() // a long job, still running when the process is stopped
			return ctx.Err()
		}
		done <- job
		return nil
	}

	process, stop := context.WithCancel(context.Background())
	defer stop()
	p := startPool(process, 1, do, t.Logf)
	if err := p.submit("report"); err != nil {
		t.Fatal(err)
	}
	receive(t, started, "start of the report") // the only worker is busy with it
	if err := p.submit("welcome-email"); err != nil {
		t.Fatal(err) // accepted: the client was told "202 Accepted"
	}
	stop() // the process ends: a deploy, a crash
	if never := p.wait(); never != 1 {
		t.Errorf("%d accepted jobs never started; want 1, the welcome e-mail", never)
	}
	if len(done) != 0 {
		t.Fatalf("%d jobs finished; want none: the report was cut off, the e-mail never began", len(done))
	}

	// The restarted process has a new, empty pool. Its single worker takes jobs in
	// order, so if anything had kept the lost jobs, they would be done before this one.
	restarted, stopAgain := context.WithCancel(context.Background())
	defer stopAgain()
	p2 := startPool(restarted, 1, do, t.Logf)
	if err := p2.submit("after-restart"); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, done, "job done after the restart"); got != "after-restart" {
		t.Fatalf("the restarted process did %q first; want after-restart (the lost jobs never come back)", got)
	}
	stopAgain()
	p2.wait()
}

// setup gives an asynq test its own Redis database (asynq's keys take no namespace),
// a client and an inspector.
func setup(t *testing.T) (url string, c *asynq.Client, in *asynq.Inspector) {
	t.Helper()
	url = redistest.New(t)
	opt, err := asynq.ParseRedisURI(url)
	if err != nil {
		t.Fatal(err)
	}
	c, in = asynq.NewClient(opt), asynq.NewInspector(opt)
	t.Cleanup(func() { c.Close(); in.Close() })
	return url, c, in
}

func mustStart(t *testing.T, url string, h asynq.HandlerFunc) *asynq.Server {
	t.Helper()
	srv, err := startServer(url, h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown) // before redistest flushes the database; a second Shutdown is a no-op
	return srv
}

func TestAsynqTaskSurvivesTheServerThatWasRunningIt(t *testing.T) {
	t.Parallel()
	url, client, inspector := setup(t)
	ctx := context.Background()
	for _, task := range [][2]string{{typeReport, "2025-05"}, {typeEmail, "ada@example.com"}} {
		if _, err := enqueue(ctx, client, task[0], task[1]); err != nil {
			t.Fatal(err)
		}
	}

	// The first process gets as far as starting the report and is then stopped.
	started := make(chan string, 2)
	first := mustStart(t, url, func(ctx context.Context, task *asynq.Task) error {
		started <- task.Type()
		<-ctx.Done()
		return ctx.Err()
	})
	if got := receive(t, started, "task started by server 1"); got != typeReport {
		t.Fatalf("server 1 started %s; want %s, enqueued first", got, typeReport)
	}
	first.Shutdown()

	// asynq waited ShutdownTimeout for the handler, then put the report back: both
	// tasks are still in Redis, waiting.
	q, err := inspector.GetQueueInfo(queue)
	if err != nil {
		t.Fatal(err)
	}
	if q.Pending != 2 || q.Active != 0 {
		t.Fatalf("after server 1 stopped: %d pending, %d active; want 2 and 0", q.Pending, q.Active)
	}

	// The restarted process: a second server on the same Redis does both.
	done := make(chan string, 2)
	mustStart(t, url, func(ctx context.Context, task *asynq.Task) error {
		done <- task.Type() + " " + string(task.Payload())
		return nil
	})
	got := []string{receive(t, done, "first task done by server 2"), receive(t, done, "second task done by server 2")}
	slices.Sort(got)
	if want := []string{"email:welcome ada@example.com", "report:monthly 2025-05"}; !slices.Equal(got, want) {
		t.Fatalf("server 2 did %v; want %v", got, want)
	}
}

func TestAsynqRetriesAFailedTask(t *testing.T) {
	t.Parallel()
	url, client, inspector := setup(t)
	attempts := make(chan int, 3)
	mustStart(t, url, func(ctx context.Context, task *asynq.Task) error {
		n, _ := asynq.GetRetryCount(ctx)
		attempts <- n
		if n == 0 {
			return errors.New("smtp: 451 try again later") // fails once
		}
		return nil
	})
	info, err := enqueue(context.Background(), client, typeEmail, "bob@example.com")
	if err != nil {
		t.Fatal(err)
	}

	for want := range 2 { // the first run, then the retry
		if n := receive(t, attempts, "attempt"); n != want {
			t.Fatalf("attempt with retry count %d; want %d", n, want)
		}
	}
	info, err = waitCompleted(inspector, info.ID, within)
	if err != nil {
		t.Fatal(err)
	}
	if info.Retried != 1 || !strings.Contains(info.LastErr, "451") {
		t.Errorf("task retried %d times, last error %q; want 1 and the 451", info.Retried, info.LastErr)
	}
}

func TestRunTellsTheStory(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := run(context.Background(), redistest.New(t), &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"1 accepted job(s) never started",
		"2 tasks pending, 0 active",
		"did report:monthly 2025-05",
		"attempt 2: sent",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
