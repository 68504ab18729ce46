package tasks_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/bazaar-shop/bazaar/internal/testkit/redistest"
	"github.com/bazaar-shop/bazaar/internal/testkit/syncbuf"
	"github.com/bazaar-shop/bazaar/pkg/tasks"
)

const service = "svc"

func TestEnqueueRunsHandlerOnItsServiceQueues(t *testing.T) {
	t.Parallel()
	url := redistest.New(t)
	echo := tasks.Task{Type: "test:echo"}
	type payload struct{ N int }
	got := make(chan payload, 10)

	// A task of another service that shares the Redis: this worker must not take it.
	other := newClient(t, url, "other")
	otherID, err := other.Enqueue(t.Context(), echo, payload{N: 1})
	if err != nil {
		t.Fatal(err)
	}

	_, _ = startWorker(t, url, tasks.Config{}, func(w *tasks.Worker) {
		w.Handle(echo, tasks.JSON(func(_ context.Context, p payload) error {
			got <- p
			return nil
		}))
	})
	c := newClient(t, url, service)
	if _, err := c.Enqueue(t.Context(), echo, payload{N: 42}); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-got:
		if p.N != 42 {
			t.Fatalf("handler got %+v, want N=42 (another service's task?)", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("handler did not run within 10s")
	}

	in := newInspector(t, url, "other")
	info, err := in.Get(t.Context(), otherID)
	if err != nil {
		t.Fatal(err)
	}
	if info.State != tasks.StatePending || info.Queue != "other:default" {
		t.Errorf("other service's task: state %s in %s, want pending in other:default", info.State, info.Queue)
	}

	// The worker told asynq (and so asynqmon) which queues it serves, with what weight.
	want := map[string]int{"svc:critical": 6, "svc:default": 3, "svc:low": 1}
	ai := asynq.NewInspector(redisOpt(t, url))
	defer ai.Close()
	eventually(t, 10*time.Second, "worker registered with its queues", func() bool {
		servers, err := ai.Servers()
		if err != nil || len(servers) != 1 {
			return false
		}
		return maps.Equal(servers[0].Queues, want)
	})
}

func TestEnqueueRejectsATakenTaskID(t *testing.T) {
	t.Parallel()
	url := redistest.New(t)
	c := newClient(t, url, service)
	task := tasks.Task{Type: "test:once"}
	if _, err := c.Enqueue(t.Context(), task, nil, asynq.TaskID("n-1")); err != nil {
		t.Fatal(err)
	}
	_, err := c.Enqueue(t.Context(), task, nil, asynq.TaskID("n-1"))
	if !errors.Is(err, tasks.ErrTaskExists) {
		t.Fatalf("second enqueue with the same id: %v, want ErrTaskExists", err)
	}
	if _, err := c.Enqueue(t.Context(), tasks.Task{Type: "test:bad", Queue: "urgent"}, nil); err == nil {
		t.Error("enqueue on an unknown queue succeeded")
	}
}

func TestFailingTaskIsRetriedWithBackoffThenFailsOnce(t *testing.T) {
	t.Parallel()
	url := redistest.New(t)
	flaky := tasks.Task{Type: "test:flaky", MaxRetry: 2}
	doomed := tasks.Task{Type: "test:doomed", MaxRetry: 5}
	crashy := tasks.Task{Type: "test:crashy", MaxRetry: tasks.NoRetry}

	var mu sync.Mutex
	var attempts []time.Time
	var lastAttempt []bool
	var doomedRuns int
	finals := map[string]int{}
	var finalErr error
	var panicked bool
	reg := prometheus.NewRegistry()
	_, logs := startWorker(t, url, tasks.Config{RetryBase: 100 * time.Millisecond, Registerer: reg}, func(w *tasks.Worker) {
		w.Handle(flaky, func(ctx context.Context, _ []byte) error {
			mu.Lock()
			defer mu.Unlock()
			attempts = append(attempts, time.Now())
			lastAttempt = append(lastAttempt, tasks.IsLastAttempt(ctx))
			return errors.New("smtp: connection refused")
		}, tasks.OnFinalFailure(func(ctx context.Context, _ []byte, err error) {
			mu.Lock()
			defer mu.Unlock()
			finals[flaky.Type]++
			finalErr = err
		}))
		w.Handle(doomed, func(context.Context, []byte) error {
			mu.Lock()
			defer mu.Unlock()
			doomedRuns++
			return tasks.SkipRetry(errors.New("no such mailbox"))
		}, tasks.OnFinalFailure(func(context.Context, []byte, error) {
			mu.Lock()
			defer mu.Unlock()
			finals[doomed.Type]++
		}))
		w.Handle(crashy, func(context.Context, []byte) error {
			var m map[string]int
			m["boom"]++ // a bug: asynq recovers the panic into a failure
			return nil
		}, tasks.OnFinalFailure(func(_ context.Context, _ []byte, err error) {
			mu.Lock()
			defer mu.Unlock()
			finals[crashy.Type]++
			panicked = asynq.IsPanicError(err)
		}))
	})
	c := newClient(t, url, service)
	in := newInspector(t, url, service)
	flakyID, err := c.Enqueue(t.Context(), flaky, nil)
	if err != nil {
		t.Fatal(err)
	}
	doomedID, err := c.Enqueue(t.Context(), doomed, nil)
	if err != nil {
		t.Fatal(err)
	}

	info := waitForState(t, in, flakyID, tasks.StateFailed)
	if info.Retried != 2 || info.MaxRetry != 2 || !strings.Contains(info.Error, "connection refused") {
		t.Errorf("failed task: %+v, want retried 2 of 2 with the error", info)
	}
	waitForState(t, in, doomedID, tasks.StateFailed)
	crashyID, err := c.Enqueue(t.Context(), crashy, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitForState(t, in, crashyID, tasks.StateFailed)

	mu.Lock()
	defer mu.Unlock()
	if len(attempts) != 3 {
		t.Fatalf("flaky ran %d times, want 3 (1 + MaxRetry 2)", len(attempts))
	}
	// Retry n waits between half and all of RetryBase·2^n.
	if gap := attempts[1].Sub(attempts[0]); gap < 50*time.Millisecond {
		t.Errorf("first retry after %s, want >= 50ms", gap)
	}
	if gap := attempts[2].Sub(attempts[1]); gap < 100*time.Millisecond {
		t.Errorf("second retry after %s, want >= 100ms", gap)
	}
	if !slices.Equal(lastAttempt, []bool{false, false, true}) {
		t.Errorf("IsLastAttempt per attempt = %v, want [false false true]", lastAttempt)
	}
	if finals[flaky.Type] != 1 || finalErr == nil || !strings.Contains(finalErr.Error(), "connection refused") {
		t.Errorf("final-failure hook: %d calls, err %v; want 1 call with the error", finals[flaky.Type], finalErr)
	}
	if doomedRuns != 1 || finals[doomed.Type] != 1 {
		t.Errorf("SkipRetry: %d runs, %d final hooks; want 1 and 1", doomedRuns, finals[doomed.Type])
	}

	for result, want := range map[string]float64{"retry": 2, "failed": 1} {
		if got := counter(t, reg, "tasks_processed_total", map[string]string{"type": flaky.Type, "result": result}); got != want {
			t.Errorf("tasks_processed_total{type=%s,result=%s} = %v, want %v", flaky.Type, result, got, want)
		}
	}
	if finals[crashy.Type] != 1 || !panicked {
		t.Errorf("panic: %d final hooks, panic error %v; want 1, true", finals[crashy.Type], panicked)
	}
	for _, typ := range []string{doomed.Type, crashy.Type} {
		if got := counter(t, reg, "tasks_processed_total", map[string]string{"type": typ, "result": "failed"}); got != 1 {
			t.Errorf("tasks_processed_total{type=%s,result=failed} = %v, want 1", typ, got)
		}
	}

	// The final failure is logged as JSON with the task's identity and retry count.
	line := logs.find(t, "task failed for good", flakyID)
	if line["task_type"] != flaky.Type {
		t.Errorf("final failure log line: task_type %v, want %s; line %v", line["task_type"], flaky.Type, line)
	}
	if line["retried"] != 2.0 {
		t.Errorf("final failure log line: retried %v, want 2; line %v", line["retried"], line)
	}
	if line["max_retry"] != 2.0 {
		t.Errorf("final failure log line: max_retry %v, want 2; line %v", line["max_retry"], line)
	}
	if line["level"] != "ERROR" {
		t.Errorf("final failure log line: level %v, want ERROR; line %v", line["level"], line)
	}
}

func TestTaskOverItsTimeLimitIsCancelledAndFails(t *testing.T) {
	t.Parallel()
	url := redistest.New(t)
	slow := tasks.Task{Type: "test:slow", Timeout: 300 * time.Millisecond, MaxRetry: tasks.NoRetry}
	type run struct {
		limit time.Duration
		err   error
	}
	runs := make(chan run, 1)
	reg := prometheus.NewRegistry()
	startWorker(t, url, tasks.Config{Registerer: reg}, func(w *tasks.Worker) {
		w.Handle(slow, func(ctx context.Context, _ []byte) error {
			deadline, _ := ctx.Deadline()
			limit := time.Until(deadline)
			select {
			case <-ctx.Done():
			case <-time.After(30 * time.Second):
			}
			runs <- run{limit, ctx.Err()}
			return ctx.Err()
		})
	})
	c := newClient(t, url, service)
	// A producer asking for an hour does not lift the handler's own limit.
	id, err := c.Enqueue(t.Context(), slow, nil, asynq.Timeout(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-runs:
		if r.limit > 300*time.Millisecond {
			t.Errorf("handler's deadline %s away, want <= 300ms", r.limit)
		}
		if !errors.Is(r.err, context.DeadlineExceeded) {
			t.Errorf("handler's context ended with %v, want deadline exceeded", r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the handler was not cut off within 10s")
	}
	info := waitForState(t, newInspector(t, url, service), id, tasks.StateFailed)
	if !strings.Contains(info.Error, "time limit") {
		t.Errorf("error %q does not mention the time limit", info.Error)
	}
	if got := counter(t, reg, "tasks_processed_total", map[string]string{"type": slow.Type, "result": "failed"}); got != 1 {
		t.Errorf("tasks_processed_total{result=failed} = %v, want 1", got)
	}
}

func TestHandlerResultIsReadableByID(t *testing.T) {
	t.Parallel()
	url := redistest.New(t)
	report := tasks.Task{Type: "test:report", Retention: time.Hour}
	startWorker(t, url, tasks.Config{}, func(w *tasks.Worker) {
		w.Handle(report, func(ctx context.Context, _ []byte) error {
			return tasks.WriteResult(ctx, map[string]int{"orders": 3, "revenue_cents": 4500})
		})
	})
	c := newClient(t, url, service)
	in := newInspector(t, url, service)

	later, err := c.Enqueue(t.Context(), report, nil, asynq.ProcessIn(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if info, err := in.Get(t.Context(), later); err != nil || info.State != tasks.StatePending {
		t.Errorf("a task due in an hour: %+v, %v; want pending", info, err)
	}

	id, err := c.Enqueue(t.Context(), report, nil)
	if err != nil {
		t.Fatal(err)
	}
	info := waitForState(t, in, id, tasks.StateCompleted)
	if info.Type != report.Type {
		t.Errorf("completed task: type %q, want %q", info.Type, report.Type)
	}
	if info.Queue != "svc:default" {
		t.Errorf("completed task: queue %q, want svc:default", info.Queue)
	}
	if info.Error != "" {
		t.Errorf("completed task: error %q, want none", info.Error)
	}
	var result map[string]int
	if err := json.Unmarshal(info.Result, &result); err != nil {
		t.Fatalf("result %s: %v", info.Result, err)
	}
	if result["orders"] != 3 {
		t.Errorf("result %s: orders %d, want the handler's 3", info.Result, result["orders"])
	}
	if result["revenue_cents"] != 4500 {
		t.Errorf("result %s: revenue_cents %d, want the handler's 4500", info.Result, result["revenue_cents"])
	}

	// The gateway's inspector searches every queue.
	if all, err := newInspector(t, url, "").Get(t.Context(), id); err != nil {
		t.Errorf("inspector over all queues: %v", err)
	} else if all.State != tasks.StateCompleted {
		t.Errorf("inspector over all queues: state %s, want %s", all.State, tasks.StateCompleted)
	}
	if _, err := in.Get(t.Context(), "no-such-task"); !errors.Is(err, tasks.ErrTaskNotFound) {
		t.Errorf("unknown id: %v, want ErrTaskNotFound", err)
	}
	if err := tasks.WriteResult(t.Context(), 1); err == nil {
		t.Error("WriteResult outside a task succeeded")
	}
}

func TestRunLetsTheTaskInHandFinish(t *testing.T) {
	t.Parallel()
	url := redistest.New(t)
	job := tasks.Task{Type: "test:job", Retention: time.Hour}
	started := make(chan struct{})
	release := make(chan struct{})
	ctxErr := make(chan error, 1)
	stop, logs := startWorker(t, url, tasks.Config{ShutdownTimeout: 20 * time.Second}, func(w *tasks.Worker) {
		w.Handle(job, func(ctx context.Context, _ []byte) error {
			close(started)
			<-release
			ctxErr <- ctx.Err()
			return nil
		})
	})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock) // runs before the worker's cleanup, should the test fail early
	id, err := newClient(t, url, service).Enqueue(t.Context(), job, nil)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("task did not start")
	}

	returned := stop.cancel()
	eventually(t, 10*time.Second, "shutdown to begin", func() bool { return logs.contains("Starting graceful shutdown") })
	select {
	case <-returned:
		t.Fatal("Run returned while a task was running")
	default:
	}
	unblock()
	select {
	case <-returned:
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after the task finished")
	}
	if err := <-ctxErr; err != nil {
		t.Errorf("the running task's context ended early: %v", err)
	}
	info, err := newInspector(t, url, service).Get(t.Context(), id)
	if err != nil || info.State != tasks.StateCompleted {
		t.Errorf("task after shutdown: %+v, %v; want completed", info, err)
	}
}

func TestTwoSchedulersRunEachSlotOnce(t *testing.T) {
	t.Parallel()
	url := redistest.New(t)
	tick := tasks.Task{Type: "test:tick", Queue: tasks.QueueLow}
	var mu sync.Mutex
	runs := map[time.Time]int{}
	startWorker(t, url, tasks.Config{}, func(w *tasks.Worker) {
		w.Handle(tick, func(ctx context.Context, _ []byte) error {
			slot, ok := tasks.ScheduledFor(ctx)
			if !ok {
				return errors.New("no slot")
			}
			mu.Lock()
			defer mu.Unlock()
			runs[slot]++
			return nil
		})
	})

	// Two replicas, each with its own connections, wake at the same slot boundaries.
	ctx, cancel := context.WithCancel(t.Context())
	logs := &logBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var wg sync.WaitGroup
	for range 2 {
		s := tasks.NewScheduler(newClient(t, url, service), log)
		if err := s.Every(tick, time.Second, nil); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			if err := s.Run(ctx); err != nil {
				t.Errorf("scheduler: %v", err)
			}
		})
	}
	eventually(t, 20*time.Second, "four slots to run", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(runs) >= 4
	})
	cancel()
	wg.Wait()
	// Let the worker finish whatever the schedulers enqueued last.
	ai := asynq.NewInspector(redisOpt(t, url))
	defer ai.Close()
	eventually(t, 10*time.Second, "queue to drain", func() bool {
		q, err := ai.GetQueueInfo(tasks.QueueName(service, tasks.QueueLow))
		return err == nil && q.Pending+q.Active+q.Retry+q.Scheduled == 0
	})

	mu.Lock()
	defer mu.Unlock()
	slots := slices.SortedFunc(maps.Keys(runs), time.Time.Compare)
	for i, slot := range slots {
		if runs[slot] != 1 {
			t.Errorf("slot %s ran %d times, want 1", slot.Format(time.RFC3339), runs[slot])
		}
		if i > 0 && slot.Sub(slots[i-1]) != time.Second {
			t.Errorf("gap between slots %s and %s", slots[i-1].Format(time.RFC3339), slot.Format(time.RFC3339))
		}
	}
	// Both replicas tried the slots: one enqueued each, the other found it taken (the
	// last slot may have been cut short by the cancel).
	if taken := logs.count("periodic task already scheduled"); taken < len(slots)-1 {
		t.Errorf("%d slots refused as already scheduled, want >= %d", taken, len(slots)-1)
	}
}

// The next slot's run is enqueued ahead, to start at its time, so that the monitor shows
// what is coming.
func TestSchedulerShowsTheNextRunAsScheduled(t *testing.T) {
	t.Parallel()
	url := redistest.New(t)
	hourly := tasks.Task{Type: "test:hourly", Queue: tasks.QueueLow}
	s := tasks.NewScheduler(newClient(t, url, service), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := s.Every(hourly, time.Hour, nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()

	next := time.Now().UTC().Truncate(time.Hour).Add(time.Hour)
	ai := asynq.NewInspector(redisOpt(t, url))
	defer ai.Close()
	eventually(t, 10*time.Second, "the next run to be scheduled", func() bool {
		list, err := ai.ListScheduledTasks(tasks.QueueName(service, tasks.QueueLow))
		return err == nil && len(list) == 1 && list[0].ID == "test:hourly@"+next.Format(time.RFC3339) &&
			list[0].NextProcessAt.Equal(next)
	})
}

func TestSchedulerRejectsBadSchedules(t *testing.T) {
	t.Parallel()
	c, err := tasks.NewClient("redis://127.0.0.1:6379/0", service) // never used: no Run
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := tasks.NewScheduler(c, slog.New(slog.DiscardHandler))
	tk := tasks.Task{Type: "test:x"}
	for name, err := range map[string]error{
		"every 500ms":   s.Every(tk, 500*time.Millisecond, nil),
		"every 1.5s":    s.Every(tk, 1500*time.Millisecond, nil),
		"daily at 25h":  s.Daily(tk, 25*time.Hour, nil),
		"daily at -1s":  s.Daily(tk, -time.Second, nil),
		"unknown queue": s.Every(tasks.Task{Type: "test:y", Queue: "urgent"}, time.Minute, nil),
		"bad payload":   s.Every(tk, time.Minute, func() {}),
	} {
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := s.Daily(tk, 3*time.Hour+30*time.Minute, nil); err != nil {
		t.Errorf("daily at 03:30: %v", err)
	}
}

// --- helpers ---

type worker struct{ cancel func() <-chan struct{} }

// startWorker runs a worker for service with quick polling, registered by register,
// until the test ends or the returned stop's cancel is called.
func startWorker(t *testing.T, url string, cfg tasks.Config, register func(*tasks.Worker)) (worker, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfg.Service = service
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 50 * time.Millisecond
	}
	w, err := tasks.NewWorker(url, log, cfg)
	if err != nil {
		t.Fatal(err)
	}
	register(w)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := w.Run(ctx); err != nil {
			t.Errorf("worker: %v", err)
		}
	}()
	stop := func() <-chan struct{} { cancel(); return done }
	t.Cleanup(func() {
		<-stop()
		if t.Failed() {
			t.Logf("worker log:\n%s", logs.String())
		}
	})
	return worker{cancel: stop}, logs
}

func newClient(t *testing.T, url, service string) *tasks.Client {
	t.Helper()
	c, err := tasks.NewClient(url, service)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func newInspector(t *testing.T, url, service string) *tasks.Inspector {
	t.Helper()
	in, err := tasks.NewInspector(url, service)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close() })
	return in
}

func redisOpt(t *testing.T, url string) asynq.RedisClientOpt {
	t.Helper()
	o, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	return asynq.RedisClientOpt{Addr: o.Addr, Username: o.Username, Password: o.Password, DB: o.DB}
}

func waitForState(t *testing.T, in *tasks.Inspector, id string, want tasks.State) tasks.Info {
	t.Helper()
	var info tasks.Info
	eventually(t, 15*time.Second, "task "+id+" to be "+string(want), func() bool {
		var err error
		info, err = in.Get(context.Background(), id)
		return err == nil && info.State == want
	})
	return info
}

// eventually polls cond until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not synchronisation
	}
}

// counter is the value of the counter name with exactly labels in reg, 0 if absent.
func counter(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			if maps.Equal(got, labels) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// logBuffer collects JSON log lines from several goroutines, with finders.
type logBuffer struct{ syncbuf.Buffer }

func (b *logBuffer) contains(s string) bool { return strings.Contains(b.String(), s) }

func (b *logBuffer) count(s string) int { return strings.Count(b.String(), s) }

// find is the first line whose msg is msg and whose task_id is id.
func (b *logBuffer) find(t *testing.T, msg, id string) map[string]any {
	t.Helper()
	for line := range strings.Lines(b.String()) {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == msg && m["task_id"] == id {
			return m
		}
	}
	t.Fatalf("no log line %q for task %s in:\n%s", msg, id, b.String())
	return nil
}
