package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strings"
	"time"

	"github.com/bazaar-shop/bazaar/pkg/balancer"
	"github.com/bazaar-shop/bazaar/pkg/httpserver"
	"github.com/bazaar-shop/bazaar/pkg/logging"
)

// The direct path: the reads that make most of a gateway's traffic, forwarded without
// httputil.ReverseProxy, which clones each request (its headers included) and rebuilds
// it for Go's Transport. Here the request's head is written from the incoming request
// straight onto a pooled connection (fastTransport), and the answer's head copied to
// the client, with the same rules ReverseProxy applies (see rewrite): hop-by-hop
// headers dropped both ways, the client's Forwarded and X-Forwarded-* replaced by what
// the gateway saw, the gateway's request id and Via token added, the upstream's X-Request-ID dropped.
//
// It takes a request when directSuits it and nothing asks for what only the other path
// has: a client span per call (Options.Tracing) or a stream (Options.IdleTimeout).

// directSuits tells the requests the direct path carries: replayable reads (see
// replayableRead) that came without a body.
func directSuits(r *http.Request) bool {
	return r.ContentLength == 0 && len(r.TransferEncoding) == 0 && replayableRead(r)
}

// direct forwards r to an instance and copies its answer back, under the proxy's time
// limit, put on the connection as a deadline (see fastTransport.send).
func (p *Proxy) direct(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	resp, err := p.call(ctx, time.Now().Add(p.timeout), r)
	if errors.Is(err, errNotPlainHTTP) {
		p.reverse(w, r)
		return
	}
	if err != nil {
		p.failed(ctx, w, r, err)
		return
	}
	defer resp.Body.Close()

	h := w.Header()
	connHeaders := resp.Header["Connection"]
	for k, vv := range resp.Header {
		if hopByHop(k) || k == "X-Request-Id" || (connHeaders != nil && listed(connHeaders, k)) {
			continue
		}
		if prior, ok := h[k]; ok {
			h[k] = append(prior, vv...)
		} else {
			h[k] = vv // the answer's own slice: nothing else holds it
		}
	}
	w.WriteHeader(resp.StatusCode)

	buf := buffers.Get().([]byte)
	defer buffers.Put(buf) //nolint:staticcheck // see copyBuffers
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return // the client left; its connection is done with
			}
		}
		if rerr == io.EOF {
			return
		}
		if rerr != nil {
			// The head has gone out: all that is left is to cut the client's
			// connection, so that the answer cannot pass for whole (as ReverseProxy does).
			if ctx.Err() == nil {
				p.log.WarnContext(ctx, "upstream answer cut short", "upstream", p.name, "err", rerr)
			}
			panic(http.ErrAbortHandler)
		}
	}
}

// call sends r to an instance its balancer picks and reads the answer's head, telling
// the balancer how it went. Like balanced, it tries a second instance only when the
// first could not even be connected to.
func (p *Proxy) call(ctx context.Context, deadline time.Time, r *http.Request) (*http.Response, error) {
	var avoid *balancer.Instance
	id := logging.RequestID(r.Context())
	for attempt := 1; ; attempt++ {
		c, err := p.up.Pick(ctx, avoid)
		if err != nil {
			return nil, err
		}
		in := c.Instance()
		if in.URL().Scheme != "http" {
			c.Done(balancer.Abandoned)
			return nil, errNotPlainHTTP
		}
		resp, err := p.pool.send(ctx, deadline, dialAddr(in.URL()), r, func(bw *bufio.Writer) error {
			return writeHead(bw, r, in.Host(), id)
		})
		if err == nil {
			c.Done(balancer.Success)
			return resp, nil
		}
		if errors.Is(ctx.Err(), context.Canceled) {
			c.Done(balancer.Abandoned)
			return nil, err
		}
		c.Done(balancer.Failure)
		if attempt > 1 || !isDialError(err) {
			return nil, err
		}
		avoid = in
	}
}

// errNotPlainHTTP turns a call to an instance over TLS to the other path.
var errNotPlainHTTP = errors.New("proxy: not plain HTTP")

// writeHead writes the request's head as the upstream gets it (see the rules above).
func writeHead(bw *bufio.Writer, r *http.Request, host, requestID string) error {
	bw.WriteString(r.Method)
	bw.WriteByte(' ')
	bw.WriteString(r.URL.RequestURI())
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(host)
	bw.WriteString("\r\n")
	connHeaders := r.Header["Connection"]
	for k, vv := range r.Header {
		switch {
		case hopByHop(k), (connHeaders != nil && listed(connHeaders, k)):
			continue
		case k == "Forwarded", k == "X-Forwarded-For", k == "X-Forwarded-Host", k == "X-Forwarded-Proto":
			continue
		case k == "X-Request-Id" && requestID != "":
			continue
		}
		for _, v := range vv {
			writeField(bw, k, v)
		}
	}
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		writeField(bw, "X-Forwarded-For", ip)
	}
	writeField(bw, "X-Forwarded-Host", r.Host)
	if r.TLS == nil {
		writeField(bw, "X-Forwarded-Proto", "http")
	} else {
		writeField(bw, "X-Forwarded-Proto", "https")
	}
	if requestID != "" {
		writeField(bw, httpserver.RequestIDHeader, requestID)
	}
	writeField(bw, "Via", Via) // after the client's own, as a list's last entry
	_, err := bw.WriteString("\r\n")
	return err
}

// writeField writes one header line. The values come from net/http's parser, or from
// the gateway, and hold no line breaks.
func writeField(bw *bufio.Writer, k, v string) {
	bw.WriteString(k)
	bw.WriteString(": ")
	bw.WriteString(v)
	bw.WriteString("\r\n")
}

// hopByHop tells the headers that concern one connection only (RFC 9110, 7.6.1), in
// the canonical form; ReverseProxy drops the same ones.
func hopByHop(k string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

// listed tells whether a Connection header names k, which makes k hop-by-hop too.
func listed(connection []string, k string) bool {
	for _, f := range connection {
		for _, token := range strings.Split(f, ",") {
			if textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(token)) == k {
				return true
			}
		}
	}
	return false
}
