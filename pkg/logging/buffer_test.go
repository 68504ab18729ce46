package logging

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/bazaar-shop/bazaar/internal/testkit/syncbuf"
)

// A warning is written as soon as it is logged, after every line logged before it,
// in order; Close writes whatever is left; a buffer that fills up is written then.
func TestBufferWritesWarningsAtOnceAndTheRestInOrder(t *testing.T) {
	t.Parallel()
	out := &syncbuf.Buffer{}
	// An hour: nothing is written by the clock during the test.
	buf := NewBuffer(out, time.Hour)
	log := buf.Urgent(slog.New(slog.NewTextHandler(buf, nil))).With("service", "gateway")

	log.Info("first")
	log.Info("second")
	log.Warn("trouble")
	got := out.String()
	if i, j, k := strings.Index(got, "msg=first"), strings.Index(got, "msg=second"), strings.Index(got, "msg=trouble"); i < 0 || j < i || k < j {
		t.Fatalf("right after a warning the output is %q; want first, second, trouble in that order", got)
	}
	if !strings.Contains(got, "service=gateway") {
		t.Errorf("attributes lost: %q", got)
	}

	log.Info("last")
	if err := buf.Close(); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); !strings.HasSuffix(strings.TrimSpace(got), "msg=last service=gateway") {
		t.Fatalf("after Close the output ends %q; want the last line", got[max(0, len(got)-80):])
	}

	// More than the buffer holds is written without waiting.
	out2 := &syncbuf.Buffer{}
	buf2 := NewBuffer(out2, time.Hour)
	defer buf2.Close()
	line := strings.Repeat("x", 1023) + "\n"
	for range 2 * maxBuffer / len(line) {
		if _, err := buf2.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(out2.String()); n < maxBuffer/2 {
		t.Fatalf("%d bytes written after twice the buffer's size was logged", n)
	}
}

// An info line waits at most about the interval: poll for it with a deadline far
// beyond that.
func TestBufferWritesHeldLinesOnItsInterval(t *testing.T) {
	t.Parallel()
	out := &syncbuf.Buffer{}
	buf := NewBuffer(out, 10*time.Millisecond)
	defer buf.Close()
	if _, err := buf.Write([]byte("held\n")); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); out.String() != "held\n"; {
		if time.Now().After(deadline) {
			t.Fatalf("output %q ten seconds after the write; want the held line", out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
