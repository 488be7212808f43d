package workloadapi

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc"
)

// DefaultShutdownGrace is how long Serve lets calls in flight finish after
// its context ends before it closes every connection.
const DefaultShutdownGrace = 2 * time.Second

// Server serves the SPIFFE Workload API on a Unix socket.
type Server struct {
	path     string
	resolver Resolver
	svids    SVIDs
	bundles  Bundles
	log      *slog.Logger
	grace    time.Duration
	// listening is closed when the socket accepts connections. Serve may
	// run once per Server.
	listening chan struct{}
}

// Option adjusts a Server.
type Option func(*Server)

// Listening is closed once Serve has its socket: from then on workloads can
// connect, which is when the agent may call itself ready.
func (s *Server) Listening() <-chan struct{} { return s.listening }

// WithLogger logs refused calls, with the caller's pid, uid and gid and the
// reason, to log: the caller learns the reason too, but the operator should
// see who is knocking. By default nothing is logged.
func WithLogger(log *slog.Logger) Option { return func(s *Server) { s.log = log } }

// WithShutdownGrace sets how long Serve waits for calls in flight when it
// stops; DefaultShutdownGrace by default.
func WithShutdownGrace(d time.Duration) Option { return func(s *Server) { s.grace = d } }

// New returns a server that will listen on socketPath, attest callers through
// resolver, and hand out the SVIDs of svids and the bundles of bundles.
func New(socketPath string, resolver Resolver, svids SVIDs, bundles Bundles, opts ...Option) (*Server, error) {
	switch {
	case socketPath == "":
		return nil, errors.New("workloadapi: socket path is empty")
	case resolver == nil:
		return nil, errors.New("workloadapi: no workload resolver")
	case svids == nil:
		return nil, errors.New("workloadapi: no SVID source")
	case bundles == nil:
		return nil, errors.New("workloadapi: no bundle source")
	}
	s := &Server{
		listening: make(chan struct{}),
		path:      socketPath,
		resolver:  resolver,
		svids:     svids,
		bundles:   bundles,
		log:       slog.New(slog.DiscardHandler),
		grace:     DefaultShutdownGrace,
	}
	for _, o := range opts {
		o(s)
	}
	return s, nil
}

// Serve listens on the socket and serves until ctx ends, then stops: open
// streams end with Unavailable, calls in flight get the shutdown grace
// period, and the socket is removed. It returns nil after a stop caused by
// ctx, and an error if the socket cannot be set up or serving fails.
func (s *Server) Serve(ctx context.Context) error {
	lis, err := listen(s.path)
	if err != nil {
		return err
	}
	close(s.listening)
	stopping := make(chan struct{})
	gs := grpc.NewServer(
		grpc.Creds(peerCredentials{}),
		grpc.ChainUnaryInterceptor(unarySecurityHeader),
		grpc.ChainStreamInterceptor(streamSecurityHeader),
	)
	workload.RegisterSpiffeWorkloadAPIServer(gs, &handler{
		resolver: s.resolver,
		svids:    s.svids,
		bundles:  s.bundles,
		log:      s.log,
		stopping: stopping,
	})
	served := make(chan error, 1)
	// grpc closes lis when it stops, and a net.UnixListener created by
	// Listen unlinks its socket file on close: that removes the socket.
	go func() { served <- gs.Serve(lis) }()

	select {
	case err := <-served:
		gs.Stop()
		return fmt.Errorf("workloadapi: serve on %s: %w", s.path, err)
	case <-ctx.Done():
	}
	close(stopping)
	stopped := make(chan struct{})
	go func() {
		gs.GracefulStop()
		close(stopped)
	}()
	timer := time.NewTimer(s.grace)
	defer timer.Stop()
	select {
	case <-stopped:
	case <-timer.C:
		gs.Stop()
		<-stopped
	}
	<-served // nil or ErrServerStopped: either way, stopped as asked
	return nil
}

// listen creates the socket at path: its directory if missing (0755, so
// that workloads can reach the socket), replacing a stale socket left by an
// agent that died, and world-writable, since callers are told apart by peer
// credentials, not by file permissions.
func listen(path string) (net.Listener, error) {
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("workloadapi: create socket directory: %w", err)
		}
		// MkdirAll's mode is narrowed by the umask; an agent run with
		// umask 077 would otherwise lock every workload out.
		if err := os.Chmod(dir, 0o755); err != nil {
			return nil, fmt.Errorf("workloadapi: socket directory: %w", err)
		}
	}
	switch fi, err := os.Lstat(path); {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("workloadapi: socket: %w", err)
	case fi.Mode()&fs.ModeSocket == 0:
		return nil, fmt.Errorf("workloadapi: %s exists and is not a socket; refusing to replace it", path)
	default:
		// Only a socket the kernel says nobody listens on is stale: taking
		// a live one would cut off the workloads of the agent serving it.
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("workloadapi: %s is in use by another server", path)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("workloadapi: cannot tell whether %s is stale: %w", path, err)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("workloadapi: remove stale socket: %w", err)
		}
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("workloadapi: listen: %w", err)
	}
	if err := os.Chmod(path, 0o777); err != nil {
		lis.Close()
		return nil, fmt.Errorf("workloadapi: make socket world-writable: %w", err)
	}
	return lis, nil
}
