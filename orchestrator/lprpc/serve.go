package lprpc

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"strings"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
	"google.golang.org/grpc"

	"github.com/lpgauge/lpgauge/schemas/proto/lpnet"
)

// MaxHeaderBytes bounds request headers on the shared port (payment and
// segment headers included).
const MaxHeaderBytes = 256 << 10

// Handler routes HTTP/2 requests with a gRPC content type to the gRPC
// server and everything else to h, as go-livepeer's orchestrator does on its
// service URI.
func Handler(g *grpc.Server, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			g.ServeHTTP(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// NewGRPC is a gRPC server with the Orchestrator service registered.
func NewGRPC(s lpnet.OrchestratorServer) *grpc.Server {
	g := grpc.NewServer(grpc.MaxRecvMsgSize(1<<20), grpc.ConnectionTimeout(10*time.Second))
	lpnet.RegisterOrchestratorServer(g, s)
	return g
}

// DefaultBodyReadTimeout is how long a request body may take to arrive
// unless WithBodyReadTimeout says otherwise.
const DefaultBodyReadTimeout = time.Minute

// Option configures Serve.
type Option func(*options)

type options struct{ bodyReadTimeout time.Duration }

// WithBodyReadTimeout bounds the time from a request's headers to the end of
// its body (0: DefaultBodyReadTimeout), on HTTP/1.1 and HTTP/2 alike; a slower body fails its read and
// an HTTP/1.1 connection is closed. Handlers that read a body and then work
// for long (the AI routes) lift it once the body is in.
func WithBodyReadTimeout(d time.Duration) Option {
	return func(o *options) { o.bodyReadTimeout = d }
}

// bodyDeadline gives every non-gRPC request a read deadline. http.Server's
// ReadTimeout would do it for HTTP/1.1, but it also cancels a request's
// context when it fires after the body is read, cutting long jobs.
func bodyDeadline(h http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(d))
		h.ServeHTTP(w, r)
	})
}

// Serve serves gRPC and h on ln until ctx ends. With cert != nil it speaks
// TLS (HTTP/2 and HTTP/1.1); without, plain HTTP/1.1 and h2c.
func Serve(ctx context.Context, ln net.Listener, g *grpc.Server, h http.Handler, cert *tls.Certificate, opts ...Option) error {
	o := options{bodyReadTimeout: DefaultBodyReadTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	if o.bodyReadTimeout <= 0 {
		o.bodyReadTimeout = DefaultBodyReadTimeout
	}
	srv := &http.Server{
		Handler:           Handler(g, bodyDeadline(h, o.bodyReadTimeout)),
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    MaxHeaderBytes,
		IdleTimeout:       2 * time.Minute,
	}
	if cert != nil {
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{*cert}, NextProtos: []string{"h2", "http/1.1"}, MinVersion: tls.VersionTLS12}
		if err := http2.ConfigureServer(srv, &http2.Server{}); err != nil {
			return fmt.Errorf("configure http2: %w", err)
		}
		ln = tls.NewListener(ln, srv.TLSConfig)
	} else {
		srv.Handler = h2c.NewHandler(srv.Handler, &http2.Server{})
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		g.Stop()
		if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
}

// SelfSigned makes a self-signed certificate for hosts (names or IPs), the
// kind go-livepeer orchestrators generate on start.
func SelfSigned(hosts ...string) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "lpgauge orchestrator"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create certificate: %w", err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
