package main

import (
	"context"
	"errors"
	"sync"
)

// pool is in-process background work as it is often first written: a handler hands a
// job to submit and answers at once ("202 Accepted"), and a few goroutines do the jobs.
// The waiting jobs are in a Go channel: in this process's memory and nowhere else.
type pool struct {
	jobs chan string
	wg   sync.WaitGroup
}

// errFull is submit's answer when too many jobs are waiting.
var errFull = errors.New("pool: too much work waiting")

// startPool starts workers goroutines that do each submitted job until ctx, the
// process's life, ends (SIGTERM for a deploy, or a crash). A job that fails is
// reported to logf and dropped: it is written down nowhere, so nothing can retry it.
func startPool(ctx context.Context, workers int, do func(ctx context.Context, job string) error, logf func(format string, args ...any)) *pool {
	p := &pool{jobs: make(chan string, 100)}
	for range workers {
		p.wg.Go(func() {
			// Checked before each job, so that a process told to stop takes no more.
			for ctx.Err() == nil {
				select {
				case <-ctx.Done():
				case job := <-p.jobs:
					if err := do(ctx, job); err != nil {
						logf("pool: %s: %v (dropped)", job, err)
					}
				}
			}
		})
	}
	return p
}

// submit accepts job for later. Accepted means "in memory", not "will be done".
func (p *pool) submit(job string) error {
	select {
	case p.jobs <- job:
		return nil
	default:
		return errFull
	}
}

// wait blocks until the workers have stopped and returns how many accepted jobs were
// never started: they end with the process.
func (p *pool) wait() int {
	p.wg.Wait()
	return len(p.jobs)
}
