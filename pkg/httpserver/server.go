// Package httpserver is the HTTP plumbing every Bazaar program shares: a chi router
// with the standard middleware (request ids, tracing, access logs, panic recovery, a
// body limit, metrics, problem+json 404/405) and a server with timeouts that shuts
// down gracefully when its context ends.
package httpserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Server is an http.Server with Bazaar's timeouts.
type Server struct {
	srv *http.Server
	log *slog.Logger
	ln  net.Listener // bound by Listen
	// ShutdownTimeout bounds how long in-flight requests may finish after the context ends.
	ShutdownTimeout time.Duration
	// Label names a listener other than the program's public one ("internal"): its
	// start is logged as "<label> listening", so that the one line "listening" always
	// names the public address, which tests and the local stack read from the log.
	Label string
}

// New serves h on addr.
func New(addr string, h http.Handler, log *slog.Logger) *Server {
	return &Server{
		srv: &http.Server{
			Addr:              addr,
			Handler:           h,
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       15 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       60 * time.Second,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		},
		log:             log,
		ShutdownTimeout: 10 * time.Second,
	}
}

// Listen binds the server's address without serving it yet, so that a program can
// make sure of every address it needs before it serves any: one whose second port is
// taken then never half-starts. Run calls it when it has not been called; a listener
// bound but never run is released by Close.
func (s *Server) Listen() error {
	if s.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", s.srv.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.srv.Addr, err)
	}
	s.ln = ln
	return nil
}

// Close releases the address Listen bound, for a server that will not Run after all.
func (s *Server) Close() error {
	if s.ln == nil {
		return nil
	}
	return s.ln.Close()
}

// Run listens (unless Listen has), logs "listening" with the bound address (tests
// start programs on :0 and read it from there), and serves until ctx ends; then it
// stops accepting, lets in-flight requests finish within ShutdownTimeout, and returns
// nil.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	ln := s.ln
	s.srv.BaseContext = func(net.Listener) context.Context { return context.WithoutCancel(ctx) }
	msg := "listening"
	if s.Label != "" {
		msg = s.Label + " listening"
	}
	s.log.Info(msg, "addr", ln.Addr().String())

	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	s.log.Info("shutting down", "timeout", s.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), s.ShutdownTimeout)
	defer cancel()
	if err := s.srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
