// Package httpload is the load generator of the gateway's benchmark: a closed loop of
// N keep-alive connections, each sending one request, reading the whole answer and
// sending the next, for a fixed time after a warm-up. It speaks just enough HTTP/1.1
// (a fixed request, answers with Content-Length or chunked bodies) to cost the
// machine little: it shares the cores with the servers it measures, so every
// microsecond it spends is taken from them, the same for each.
package httpload

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Options describe one run.
type Options struct {
	Addr string // host:port to connect to
	// Requests are whole HTTP/1.1 requests, sent as they are: connection i sends
	// Requests[i % len(Requests)] every time (one caller per connection, say).
	Requests [][]byte
	Conns    int           // concurrent connections, each a closed loop
	Warmup   time.Duration // load applied, not measured, before Duration
	Duration time.Duration // how long answers are counted
}

// Result is what a run measured. Latencies are those of the answers counted.
type Result struct {
	Requests int           // answers received within Duration
	All      int           // answers received, the warm-up's included
	Statuses map[int]int   // how many of them had each status
	Errors   int           // connections broken (each is redialled)
	Elapsed  time.Duration // the measured span
	P50, P99 time.Duration // latency percentiles
	Max      time.Duration // slowest answer
	FirstErr error         // the first connection error, if any
	Sample   []byte        // the first answer's head, for a reader to check
	lat      []time.Duration
}

// RPS is answers per second.
func (r Result) RPS() float64 { return float64(r.Requests) / r.Elapsed.Seconds() }

// OK is how many answers were 2xx.
func (r Result) OK() int {
	n := 0
	for s, c := range r.Statuses {
		if s >= 200 && s < 300 {
			n += c
		}
	}
	return n
}

// Run applies the load until Warmup+Duration has passed or ctx ends.
func Run(ctx context.Context, o Options) (Result, error) {
	if o.Conns <= 0 || o.Duration <= 0 || len(o.Requests) == 0 {
		return Result{}, errors.New("httpload: need connections, a duration and a request")
	}
	start := time.Now()
	measureFrom := start.Add(o.Warmup)
	end := measureFrom.Add(o.Duration)
	ctx, cancel := context.WithDeadline(ctx, end)
	defer cancel()

	workers := make([]*worker, o.Conns)
	var wg sync.WaitGroup
	for i := range workers {
		w := &worker{addr: o.Addr, req: o.Requests[i%len(o.Requests)], from: measureFrom, until: end, statuses: map[int]int{}}
		workers[i] = w
		wg.Go(func() { w.loop(ctx) })
	}
	wg.Wait()

	res := Result{Statuses: map[int]int{}, Elapsed: o.Duration}
	for _, w := range workers {
		res.Requests += len(w.lat)
		res.All += w.all
		res.Errors += w.errors
		if res.FirstErr == nil {
			res.FirstErr = w.firstErr
		}
		if res.Sample == nil {
			res.Sample = w.sample
		}
		for s, c := range w.statuses {
			res.Statuses[s] += c
		}
		res.lat = append(res.lat, w.lat...)
	}
	if len(res.lat) == 0 {
		return res, fmt.Errorf("httpload: no answer from %s (first error: %v)", o.Addr, res.FirstErr)
	}
	slices.Sort(res.lat)
	res.P50 = res.lat[len(res.lat)*50/100]
	res.P99 = res.lat[min(len(res.lat)-1, len(res.lat)*99/100)]
	res.Max = res.lat[len(res.lat)-1]
	return res, nil
}

type worker struct {
	addr        string
	req         []byte
	from, until time.Time
	lat         []time.Duration
	statuses    map[int]int
	all         int
	errors      int
	firstErr    error
	sample      []byte
}

func (w *worker) fail(err error) {
	w.errors++
	if w.firstErr == nil {
		w.firstErr = err
	}
}

// loop sends requests on one connection until ctx ends, redialling a broken one.
func (w *worker) loop(ctx context.Context) {
	var d net.Dialer
	// The time is checked as well as ctx: the dialler gives up at ctx's deadline on
	// its own timer, which may fire before ctx reports that it ended.
	over := func() bool { return ctx.Err() != nil || !time.Now().Before(w.until) }
	for !over() {
		conn, err := d.DialContext(ctx, "tcp", w.addr)
		if err != nil {
			if !over() {
				w.fail(err)
				// A refused dial returns at once; without a pause a dead server
				// would spin the loop (and the cores the others need).
				select {
				case <-ctx.Done():
				case <-time.After(10 * time.Millisecond):
				}
			}
			continue
		}
		stop := context.AfterFunc(ctx, func() { conn.Close() })
		err = w.serve(conn)
		stop()
		conn.Close()
		if err != nil && !over() {
			w.fail(err)
		}
	}
}

// serve runs the closed loop on conn until the connection ends or the time is up.
func (w *worker) serve(conn net.Conn) error {
	br := bufio.NewReaderSize(conn, 16<<10)
	for {
		t0 := time.Now()
		if !t0.Before(w.until) {
			return nil
		}
		if _, err := conn.Write(w.req); err != nil {
			return err
		}
		status, keep, err := w.readResponse(br)
		if err != nil {
			return err
		}
		t1 := time.Now()
		w.all++
		if !t0.Before(w.from) && !t1.After(w.until) {
			w.lat = append(w.lat, t1.Sub(t0))
			w.statuses[status]++
		}
		if !keep {
			return nil
		}
	}
}

var (
	headContentLength = []byte("content-length:")
	headTransfer      = []byte("transfer-encoding:")
	headConnection    = []byte("connection:")
	chunked           = []byte("chunked")
	closeToken        = []byte("close")
)

// readResponse reads one answer whole: its status, whether the connection stays open.
func (w *worker) readResponse(br *bufio.Reader) (status int, keep bool, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, false, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, false, fmt.Errorf("httpload: not an HTTP answer: %q", line)
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, false, fmt.Errorf("httpload: status line %q", line)
	}
	var head []byte
	if w.sample == nil {
		head = append(head, line...)
	}
	length, isChunked, keep := -1, false, true
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return 0, false, err
		}
		if head != nil {
			head = append(head, line...)
		}
		if len(bytes.TrimSpace(line)) == 0 {
			break
		}
		switch {
		case hasPrefixFold(line, headContentLength):
			length, err = strconv.Atoi(string(bytes.TrimSpace(line[len(headContentLength):])))
			if err != nil {
				return 0, false, fmt.Errorf("httpload: %q", line)
			}
		case hasPrefixFold(line, headTransfer):
			isChunked = bytes.Contains(bytes.ToLower(line), chunked)
		case hasPrefixFold(line, headConnection):
			keep = !bytes.Contains(bytes.ToLower(line), closeToken)
		}
	}
	if head != nil {
		w.sample = head
	}
	switch {
	case isChunked:
		err = readChunked(br)
	case length >= 0:
		_, err = br.Discard(length)
	default: // no length: the body runs to the end of the connection
		_, err = io.Copy(io.Discard, br)
		keep = false
	}
	return status, keep, err
}

func hasPrefixFold(line, prefix []byte) bool {
	return len(line) >= len(prefix) && bytes.EqualFold(line[:len(prefix)], prefix)
}

// readChunked discards a chunked body and its trailer.
func readChunked(br *bufio.Reader) error {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		size := bytes.TrimSpace(line)
		if i := bytes.IndexByte(size, ';'); i >= 0 {
			size = size[:i]
		}
		n, err := strconv.ParseInt(string(size), 16, 64)
		if err != nil {
			return fmt.Errorf("httpload: chunk size %q", line)
		}
		if n == 0 {
			for { // trailer, up to the blank line
				line, err = br.ReadSlice('\n')
				if err != nil {
					return err
				}
				if len(bytes.TrimSpace(line)) == 0 {
					return nil
				}
			}
		}
		if _, err := br.Discard(int(n) + 2); err != nil { // the data and its CRLF
			return err
		}
	}
}
