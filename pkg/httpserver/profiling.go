package httpserver

import (
	"net/http/pprof"

	"github.com/go-chi/chi/v5"
)

// Profiling mounts Go's profiler (net/http/pprof) under /debug/pprof/ on r. It is for
// an operations listener that only operators and benchmarks reach, and only when asked
// for (PPROF=true): a CPU profile costs the program while it runs, and the heap and
// goroutine dumps say much about it. A CPU profile must be shorter than the server's
// WriteTimeout (30 s).
func Profiling(r chi.Router) {
	r.HandleFunc("/debug/pprof/", pprof.Index)
	r.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	r.HandleFunc("/debug/pprof/profile", pprof.Profile)
	r.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	r.HandleFunc("/debug/pprof/trace", pprof.Trace)
	r.HandleFunc("/debug/pprof/{profile}", pprof.Index) // heap, goroutine, allocs, block, mutex, …
}
