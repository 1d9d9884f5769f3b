// Package opshttp is the operator's HTTP endpoint, on a port of its own
// (--metrics-addr), never the gRPC port: Prometheus metrics at /metrics and
// Go's profiles at /debug/pprof/. Nothing on it authenticates: bind it to
// an address only operators and the scraper reach.
package opshttp

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Server serves an HTTP endpoint of the service: the operator's, or the
// AuthZEN API's (internal/authzen).
type Server struct {
	http *http.Server
}

// New returns the operator endpoint serving reg's metrics and the profiles.
func New(reg *prometheus.Registry) *Server {
	return NewServer(Handler(reg), nil)
}

// NewServer returns a server of h, over TLS when tc is set.
func NewServer(h http.Handler, tc *tls.Config) *Server {
	return &Server{http: &http.Server{Handler: h, TLSConfig: tc, ReadHeaderTimeout: 10 * time.Second}}
}

// Handler serves reg's metrics at /metrics and the profiles at
// /debug/pprof/.
func Handler(reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return mux
}

// Serve serves on lis until Shutdown.
func (s *Server) Serve(lis net.Listener) error {
	var err error
	if s.http.TLSConfig != nil {
		err = s.http.ServeTLS(lis, "", "")
	} else {
		err = s.http.Serve(lis)
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Shutdown stops serving, letting requests in progress finish within
// timeout (a profile being taken is cut).
func (s *Server) Shutdown(timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := s.http.Shutdown(ctx); err != nil {
		_ = s.http.Close()
	}
}
