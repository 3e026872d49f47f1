// Package httpserve is the one serving set-up of every lpgauge binary: an
// http.Server with read-header/read/write/idle timeouts, the serve-and-drain
// loop, and the /metrics and /healthz every long-running binary answers.
package httpserve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NewServer is h behind the house timeouts: a slow client cannot hold a
// connection open without sending its headers (10 s) or its body (30 s), an
// answer may take write (at least 10 s), and idle keep-alives close after 2 min.
func NewServer(h http.Handler, write time.Duration) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      max(write, 10*time.Second),
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
}

// Run listens on addr, serves srv, reports the bound address on ready (if
// not nil; useful with port 0), and when ctx ends gives in-flight requests
// up to grace to finish.
func Run(ctx context.Context, srv *http.Server, addr string, grace time.Duration, log *slog.Logger, ready chan<- string) error {
	bound, wait, err := Start(ctx, srv, addr, grace, log)
	if err != nil {
		return err
	}
	if ready != nil {
		ready <- bound
	}
	return wait()
}

// Start listens on addr now (so a taken port fails at start) and serves srv
// in the background until ctx ends, then drains it for up to grace. wait
// returns once the server has stopped.
func Start(ctx context.Context, srv *http.Server, addr string, grace time.Duration, log *slog.Logger) (bound string, wait func() error, err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	log.Info("listening", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	done := make(chan error, 1)
	go func() {
		select {
		case err := <-errc:
			done <- fmt.Errorf("serve: %w", err)
			return
		case <-ctx.Done():
		}
		log.Info("shutting down", "addr", ln.Addr().String(), "timeout", grace)
		sctx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		err := srv.Shutdown(sctx)
		if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
			err = serr
		}
		if err != nil {
			done <- fmt.Errorf("shutdown: %w", err)
			return
		}
		done <- nil
	}()
	var once error
	var waited bool
	return ln.Addr().String(), func() error {
		if !waited {
			once, waited = <-done, true
		}
		return once
	}, nil
}

// Observe serves h and adds what a long-running binary owes its operator:
// GET /metrics (reg, plus the Go and process collectors and
// <prefix>_http_requests_total by status code) and, when health is not nil,
// GET /healthz. Routes h serves itself take precedence only for other paths.
func Observe(prefix string, h http.Handler, reg *prometheus.Registry, health http.HandlerFunc) http.Handler {
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: prefix + "_http_requests_total",
		Help: "HTTP requests answered, by status code.",
	}, []string{"code"})
	reg.MustRegister(requests)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	if health != nil {
		mux.HandleFunc("GET /healthz", health)
	}
	mux.Handle("/", promhttp.InstrumentHandlerCounter(requests, h))
	return mux
}

// OK is a /healthz for a process that is healthy while it serves.
func OK(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") }
