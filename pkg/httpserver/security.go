package httpserver

import (
	"net/http"
	"strings"
)

// HSTS is the Strict-Transport-Security value sent over TLS: a year, and only for the
// host that sent it (includeSubDomains would bind hosts this program does not serve).
const HSTS = "max-age=31536000"

// SecurityHeaders makes every response carry the headers that keep a browser from
// misreading or misusing it, whatever the handler (or an upstream behind a proxy)
// set:
//
//   - X-Content-Type-Options: nosniff: a body is only ever what its Content-Type
//     says, so JSON that echoes a client's text is never run as a script or a page.
//   - Referrer-Policy: no-referrer: no URL of ours (an order id, an operations page)
//     travels to another site in a Referer.
//   - X-Frame-Options: DENY: no page of ours is framed by another (clickjacking).
//     Pages also send CSP frame-ancestors, which newer browsers prefer.
//   - Strict-Transport-Security, only on a request that came over TLS: directly, or
//     through a proxy that terminated TLS and said so in X-Forwarded-Proto. A forged
//     X-Forwarded-Proto gains nothing: browsers ignore the header over plain HTTP.
//
// The headers are set when the response begins rather than before the handler runs,
// so that they replace any value the handler added instead of joining it: two
// X-Frame-Options values make browsers ignore both.
func SecurityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &secureWriter{ResponseWriter: w, tls: overTLS(r)}
		next.ServeHTTP(sw, r)
		sw.set() // a handler that wrote nothing: net/http sends the header after this
	})
}

// overTLS reports whether the client reached us over HTTPS.
func overTLS(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

// secureWriter sets the security headers just before the response's header is sent.
type secureWriter struct {
	http.ResponseWriter
	tls  bool
	done bool
}

var (
	nosniff    = []string{"nosniff"}
	noReferrer = []string{"no-referrer"}
	deny       = []string{"DENY"}
)

func (s *secureWriter) set() {
	if s.done {
		return
	}
	s.done = true
	// Set as Header.Set would (the names are canonical already) but with values made
	// once: this runs for every response. Sharing them is safe because nothing writes
	// into a header's values in place; an Add appends past their capacity, to a copy.
	h := s.ResponseWriter.Header()
	h["X-Content-Type-Options"], h["Referrer-Policy"], h["X-Frame-Options"] = nosniff, noReferrer, deny
	if s.tls {
		h.Set("Strict-Transport-Security", HSTS)
	} else {
		h.Del("Strict-Transport-Security")
	}
}

func (s *secureWriter) WriteHeader(code int) {
	// 1xx answers (103 Early Hints) are not the response; its header comes later.
	if code >= 200 {
		s.set()
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *secureWriter) Write(b []byte) (int, error) {
	s.set()
	return s.ResponseWriter.Write(b)
}

// FlushError flushes through http.ResponseController, which a flush that begins the
// response would otherwise reach past this writer.
func (s *secureWriter) FlushError() error {
	s.set()
	return http.NewResponseController(s.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the writer underneath.
func (s *secureWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
