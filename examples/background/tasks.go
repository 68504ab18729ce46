package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// The same work as asynq tasks. Enqueueing writes the task to Redis, and asynq keeps
// it there until a handler has finished it: a server that is stopped mid-task hands
// the task back, and a handler's error schedules a retry.

// The task types and the queue. Bazaar names queues per service ("notifications:
// critical", pkg/tasks) because asynq's keys take no namespace and a server takes
// any task from the queues it serves.
const (
	typeReport = "report:monthly"
	typeEmail  = "email:welcome"
	queue      = "examples:background"
)

// newServer is an asynq server on the Redis at redisURL that runs one task at a time
// from queue, tuned so that a demonstration takes milliseconds, not seconds: it looks
// for new tasks and due retries every 10 ms (asynq's defaults are 1 s and 5 s), waits
// 10 ms before a retry (asynq's default waits n⁴+15 s and more before retry n, days by
// the 25th; Bazaar's grows from 1 s to 5 min), and on Shutdown gives a running handler
// 100 ms to finish before handing its task back (asynq's default is 8 s, Bazaar's 20 s).
func newServer(redisURL string) (*asynq.Server, error) {
	opt, err := asynq.ParseRedisURI(redisURL)
	if err != nil {
		return nil, err
	}
	return asynq.NewServer(opt, asynq.Config{
		Queues:                   map[string]int{queue: 1},
		Concurrency:              1,
		TaskCheckInterval:        10 * time.Millisecond,
		DelayedTaskCheckInterval: 10 * time.Millisecond,
		RetryDelayFunc:           func(int, error, *asynq.Task) time.Duration { return 10 * time.Millisecond },
		ShutdownTimeout:          100 * time.Millisecond,
		LogLevel:                 asynq.WarnLevel,
	}), nil
}

// startServer starts a server (newServer) running h; stop it with Shutdown.
func startServer(redisURL string, h asynq.HandlerFunc) (*asynq.Server, error) {
	srv, err := newServer(redisURL)
	if err != nil {
		return nil, err
	}
	if err := srv.Start(h); err != nil {
		return nil, err
	}
	return srv, nil
}

// enqueue writes a task of type typ to queue; from then on it is in Redis, whatever
// happens to this process. It may be retried 3 times, and once done it is kept for
// an hour, so that the inspector can still show its state.
// (Bazaar's payloads are JSON; a string keeps the example short.)
func enqueue(ctx context.Context, c *asynq.Client, typ, payload string) (*asynq.TaskInfo, error) {
	return c.EnqueueContext(ctx, asynq.NewTask(typ, []byte(payload)),
		asynq.Queue(queue), asynq.MaxRetry(3), asynq.Retention(time.Hour))
}

// waitCompleted polls the inspector until task id is completed, for at most timeout:
// asynq records the completion just after the handler returns.
func waitCompleted(in *asynq.Inspector, id string, timeout time.Duration) (*asynq.TaskInfo, error) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(timeout)
	for {
		info, err := in.GetTaskInfo(queue, id)
		if err != nil {
			return nil, err
		}
		if info.State == asynq.TaskStateCompleted {
			return info, nil
		}
		select {
		case <-tick.C:
		case <-deadline:
			return nil, fmt.Errorf("task %s still %s after %s", id, info.State, timeout)
		}
	}
}

// deleteQueue removes queue and all asynq keeps of it. The inspector's DeleteQueue
// leaves completed tasks and the queue's counters behind, and nothing expires them once
// the queue is gone; every key of a queue is named asynq:{<queue>}:…, so the rest are
// deleted by name.
func deleteQueue(ctx context.Context, in *asynq.Inspector, rdb *redis.Client) error {
	if err := in.DeleteQueue(queue, true); err != nil && !errors.Is(err, asynq.ErrQueueNotFound) {
		return err
	}
	keys := rdb.Scan(ctx, 0, "asynq:{"+queue+"}:*", 100).Iterator()
	for keys.Next(ctx) {
		if err := rdb.Del(ctx, keys.Val()).Err(); err != nil {
			return err
		}
	}
	return keys.Err()
}
