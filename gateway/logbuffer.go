package main

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

// flushLogsEvery is how long a line of the gateway's log may wait in memory before it
// is written. Writing each line as it comes costs a system call per request (the
// access log), about a tenth of the gateway's CPU per request under load
// (docs/benchmarks.md); nginx buffers its access log the same way (access_log
// buffer= flush=). Warnings and errors are written at once, with every line before
// them, so that what matters in an incident is never held back and the order is
// kept. The price: a crash loses up to this much of the info and debug lines.
const flushLogsEvery = 100 * time.Millisecond

// maxLogBuffer is how much is held before it is written regardless.
const maxLogBuffer = 64 << 10

// logBuffer holds log lines for out and writes them every flushLogsEvery, when
// maxLogBuffer is reached, on Flush and on Close. It is safe for concurrent use; each
// Write is expected to be whole lines, as slog's handlers write them.
type logBuffer struct {
	out  io.Writer
	stop chan struct{}
	done chan struct{}

	mu  sync.Mutex
	buf []byte
}

func newLogBuffer(out io.Writer) *logBuffer {
	b := &logBuffer{out: out, stop: make(chan struct{}), done: make(chan struct{})}
	go b.run()
	return b
}

func (b *logBuffer) run() {
	defer close(b.done)
	t := time.NewTicker(flushLogsEvery)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			_ = b.Flush()
		}
	}
}

// Write holds p, writing what is held first when p would take it past maxLogBuffer.
func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var err error
	if len(b.buf)+len(p) > maxLogBuffer {
		err = b.flushLocked()
	}
	b.buf = append(b.buf, p...)
	return len(p), err
}

// Flush writes what is held.
func (b *logBuffer) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.flushLocked()
}

func (b *logBuffer) flushLocked() error {
	if len(b.buf) == 0 {
		return nil
	}
	_, err := b.out.Write(b.buf)
	b.buf = b.buf[:0]
	return err
}

// Close stops the periodic writes and writes what is held. Lines written after it
// wait for an explicit Flush.
func (b *logBuffer) Close() error {
	close(b.stop)
	<-b.done
	return b.Flush()
}

// urgentLines is a handler that writes its buffer out as soon as it has handled a
// record of level warning or above.
type urgentLines struct {
	slog.Handler
	buf *logBuffer
}

func (h urgentLines) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	if r.Level >= slog.LevelWarn {
		if ferr := h.buf.Flush(); err == nil {
			err = ferr
		}
	}
	return err
}

func (h urgentLines) WithAttrs(as []slog.Attr) slog.Handler {
	return urgentLines{h.Handler.WithAttrs(as), h.buf}
}

func (h urgentLines) WithGroup(name string) slog.Handler {
	return urgentLines{h.Handler.WithGroup(name), h.buf}
}
