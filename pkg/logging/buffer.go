package logging

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

// maxBuffer is how much a Buffer holds before it is written regardless.
const maxBuffer = 64 << 10

// Buffer holds log lines for out and writes them every so often, when maxBuffer is
// reached, on Flush and on Close. Writing each line as it comes costs a system call a
// line: for the gateway, whose access log writes one per request, about a tenth of its
// CPU per request under load (docs/benchmarks.md); nginx buffers its access log the
// same way (access_log buffer= flush=). A logger made by Urgent writes warnings and
// errors at once, with every line before them, so that what matters in an incident is
// never held back and the order is kept. The price: a crash loses the info and debug
// lines of the last interval.
//
// It is safe for concurrent use; each Write is expected to be whole lines, as slog's
// handlers write them.
type Buffer struct {
	out  io.Writer
	stop chan struct{}
	done chan struct{}

	mu  sync.Mutex
	buf []byte
}

// NewBuffer holds lines for out and writes them every interval until Close.
func NewBuffer(out io.Writer, every time.Duration) *Buffer {
	b := &Buffer{out: out, stop: make(chan struct{}), done: make(chan struct{})}
	go b.run(every)
	return b
}

func (b *Buffer) run(every time.Duration) {
	defer close(b.done)
	t := time.NewTicker(every)
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

// Write holds p, writing what is held first when p would take it past maxBuffer.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var err error
	if len(b.buf)+len(p) > maxBuffer {
		err = b.flushLocked()
	}
	b.buf = append(b.buf, p...)
	return len(p), err
}

// Flush writes what is held.
func (b *Buffer) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.flushLocked()
}

func (b *Buffer) flushLocked() error {
	if len(b.buf) == 0 {
		return nil
	}
	_, err := b.out.Write(b.buf)
	b.buf = b.buf[:0]
	return err
}

// Close stops the periodic writes and writes what is held. Lines written after it
// wait for an explicit Flush.
func (b *Buffer) Close() error {
	close(b.stop)
	<-b.done
	return b.Flush()
}

// Urgent is log, which writes to b, made to write b out as soon as it has logged a
// record of level warning or above.
func (b *Buffer) Urgent(log *slog.Logger) *slog.Logger {
	return slog.New(urgentLines{log.Handler(), b})
}

// urgentLines is a handler that writes its buffer out as soon as it has handled a
// record of level warning or above.
type urgentLines struct {
	slog.Handler
	buf *Buffer
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
