package workloadapi_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	pb "github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	spiffeapi "github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/ztcn/ztcn/internal/identity"
	"github.com/ztcn/ztcn/internal/workload"
	"github.com/ztcn/ztcn/internal/workloadapi"
)

// selfNetns is the network namespace of the test process. Registering a pod
// with it makes this process, and so the in-process client, that pod.
const selfNetns = "/proc/self/ns/net"

func hourly(string) (time.Duration, time.Duration) { return time.Hour, 0 }

// fixture is one node: a CA, the identity manager, the bundles, the pod
// registry, and a Workload API server over them.
type fixture struct {
	socket   string
	td       spiffeid.TrustDomain
	registry *workload.Registry
	manager  *identity.Manager
	bundles  *identity.Bundles
}

func newFixture(t *testing.T, rotation identity.Rotation) *fixture {
	t.Helper()
	td := spiffeid.RequireTrustDomainFromString("cluster.local")
	root, err := identity.NewRootCA(td, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	node, err := root.NewNodeCA("node-a", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	bundles := identity.NewBundles()
	return &fixture{
		// A directory that does not exist yet: Serve creates it.
		socket:   filepath.Join(t.TempDir(), "run", "api.sock"),
		td:       td,
		registry: workload.NewRegistry(),
		manager: identity.NewManager(identity.ManagerConfig{
			TrustDomain: td,
			Authorities: identity.NewAuthorities(bundles, nil, node),
			Rotation:    rotation,
		}),
		bundles: bundles,
	}
}

// serve runs the server until the test ends, then checks that it stopped
// cleanly and took its socket with it.
func (f *fixture) serve(t *testing.T) {
	t.Helper()
	srv, err := workloadapi.New(f.socket, f.registry, f.manager, f.bundles, workloadapi.WithShutdownGrace(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("Serve after cancel = %v, want nil", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Serve did not return within 5s of cancel")
		}
		if _, err := os.Lstat(f.socket); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("socket %s left behind after Serve returned (lstat: %v)", f.socket, err)
		}
	})
	waitServing(t, f.socket, served)
}

// waitServing returns once the socket accepts connections.
func waitServing(t *testing.T, socket string, served <-chan error) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if c, err := net.Dial("unix", socket); err == nil {
			c.Close()
			return
		}
		select {
		case err := <-served:
			t.Fatalf("Serve returned before serving: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s accepts no connection after 5s", socket)
		}
	}
}

// addPod registers a pod in netns and, if issue, gives it an identity,
// whose SPIFFE ID it returns.
func (f *fixture) addPod(t *testing.T, uid, netns string, issue bool) spiffeid.ID {
	t.Helper()
	pod := workload.Pod{UID: uid, Name: uid, Namespace: "payments", ServiceAccount: "api", NetnsPath: netns}
	if err := f.registry.RunPodSandbox(pod); err != nil {
		t.Fatal(err)
	}
	want, err := identity.WorkloadID(f.td, pod.Namespace, pod.ServiceAccount)
	if err != nil {
		t.Fatal(err)
	}
	if issue {
		if _, err := f.manager.Start(identity.Workload{UID: uid, Namespace: pod.Namespace, ServiceAccount: pod.ServiceAccount}); err != nil {
			t.Fatal(err)
		}
	}
	return want
}

func newGoSpiffeClient(ctx context.Context, t *testing.T, socket string) *spiffeapi.Client {
	t.Helper()
	c, err := spiffeapi.New(ctx, spiffeapi.WithAddr("unix://"+socket))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// newRawClient is a client that sends exactly the metadata it is given.
func newRawClient(t *testing.T, socket string) pb.SpiffeWorkloadAPIClient {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pb.NewSpiffeWorkloadAPIClient(conn)
}

func withSecurityHeader(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "workload.spiffe.io", "true")
}

func concatDER(certs []*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, c.Raw...)
	}
	return out
}

type contextWatcher struct {
	ctx     context.Context
	updates chan<- *spiffeapi.X509Context
}

func (w contextWatcher) OnX509ContextUpdate(c *spiffeapi.X509Context) {
	select {
	case w.updates <- c:
	case <-w.ctx.Done():
	}
}

func (contextWatcher) OnX509ContextWatchError(error) {}

func TestGoSpiffeClientFetchesAVerifiableSVIDAndSeesItRotate(t *testing.T) {
	f := newFixture(t, func(string) (time.Duration, time.Duration) { return 2 * time.Second, time.Second })
	f.serve(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	running := make(chan struct{})
	go func() {
		defer close(running)
		f.manager.Run(ctx)
	}()
	defer func() {
		cancel()
		<-running
	}()
	want := f.addPod(t, "pod-self", selfNetns, true)
	client := newGoSpiffeClient(ctx, t, f.socket)

	svid, err := client.FetchX509SVID(ctx)
	if err != nil {
		t.Fatalf("FetchX509SVID: %v", err)
	}
	if svid.ID != want {
		t.Fatalf("FetchX509SVID ID = %s, want %s", svid.ID, want)
	}
	bundles, err := client.FetchX509Bundles(ctx)
	if err != nil {
		t.Fatalf("FetchX509Bundles: %v", err)
	}
	if _, _, err := x509svid.Verify(svid.Certificates, bundles); err != nil {
		t.Fatalf("fetched SVID does not verify against the fetched bundle: %v", err)
	}

	updates := make(chan *spiffeapi.X509Context)
	go client.WatchX509Context(ctx, contextWatcher{ctx: ctx, updates: updates})
	var first *x509svid.SVID
	for {
		var update *spiffeapi.X509Context
		select {
		case update = <-updates:
		case <-ctx.Done():
			t.Fatalf("watcher saw no rotation (first serial %v)", first)
		}
		cur := update.DefaultSVID()
		if cur.ID != want {
			t.Fatalf("watched SVID ID = %s, want %s", cur.ID, want)
		}
		if _, _, err := x509svid.Verify(cur.Certificates, update.Bundles); err != nil {
			t.Fatalf("watched SVID does not verify against the watched bundles: %v", err)
		}
		if first == nil {
			first = cur
			continue
		}
		if cur.Certificates[0].SerialNumber.Cmp(first.Certificates[0].SerialNumber) != 0 {
			return // rotated
		}
	}
}

func TestStreamsSendFullStateAtOnceAndAgainWhenABundleChanges(t *testing.T) {
	f := newFixture(t, hourly)
	f.serve(t)
	want := f.addPod(t, "pod-self", selfNetns, true)
	client := newRawClient(t, f.socket)
	ctx, cancel := context.WithTimeout(withSecurityHeader(context.Background()), 5*time.Second)
	defer cancel()

	svids, err := client.FetchX509SVID(ctx, &pb.X509SVIDRequest{})
	if err != nil {
		t.Fatal(err)
	}
	bundles, err := client.FetchX509Bundles(ctx, &pb.X509BundlesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	own := concatDER(f.bundles.Authorities(f.td))

	first, err := svids.Recv()
	if err != nil {
		t.Fatalf("FetchX509SVID first message: %v", err)
	}
	if len(first.Svids) != 1 || first.Svids[0].SpiffeId != want.String() {
		t.Fatalf("first message SVIDs = %v, want one for %s", first.Svids, want)
	}
	if !bytes.Equal(first.Svids[0].Bundle, own) {
		t.Fatalf("first message bundle is not the roots of %s", f.td)
	}
	if len(first.FederatedBundles) != 0 {
		t.Fatalf("first message federated bundles = %v, want none", first.FederatedBundles)
	}
	firstBundles, err := bundles.Recv()
	if err != nil {
		t.Fatalf("FetchX509Bundles first message: %v", err)
	}
	if len(firstBundles.Bundles) != 1 || !bytes.Equal(firstBundles.Bundles[f.td.IDString()], own) {
		t.Fatalf("first bundles = %v, want only %s", firstBundles.Bundles, f.td.IDString())
	}

	partner := spiffeid.RequireTrustDomainFromString("partner.example")
	partnerCA, err := identity.NewRootCA(partner, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	f.bundles.Set(partner, partnerCA.Roots())
	partnerDER := concatDER(partnerCA.Roots())

	second, err := svids.Recv()
	if err != nil {
		t.Fatalf("FetchX509SVID after bundle change: %v", err)
	}
	if !bytes.Equal(second.Svids[0].X509Svid, first.Svids[0].X509Svid) || !bytes.Equal(second.Svids[0].Bundle, own) {
		t.Fatalf("bundle change altered the SVID or its own bundle")
	}
	if len(second.FederatedBundles) != 1 || !bytes.Equal(second.FederatedBundles[partner.IDString()], partnerDER) {
		t.Fatalf("federated bundles = %v, want exactly %s", second.FederatedBundles, partner.IDString())
	}
	secondBundles, err := bundles.Recv()
	if err != nil {
		t.Fatalf("FetchX509Bundles after bundle change: %v", err)
	}
	if len(secondBundles.Bundles) != 2 || !bytes.Equal(secondBundles.Bundles[partner.IDString()], partnerDER) || !bytes.Equal(secondBundles.Bundles[f.td.IDString()], own) {
		t.Fatalf("bundles after change = %v, want %s and %s", secondBundles.Bundles, f.td.IDString(), partner.IDString())
	}
}

// firstResponse calls method and returns the error of its first response.
var firstResponse = map[string]func(context.Context, pb.SpiffeWorkloadAPIClient) error{
	"FetchX509SVID": func(ctx context.Context, c pb.SpiffeWorkloadAPIClient) error {
		s, err := c.FetchX509SVID(ctx, &pb.X509SVIDRequest{})
		if err == nil {
			_, err = s.Recv()
		}
		return err
	},
	"FetchX509Bundles": func(ctx context.Context, c pb.SpiffeWorkloadAPIClient) error {
		s, err := c.FetchX509Bundles(ctx, &pb.X509BundlesRequest{})
		if err == nil {
			_, err = s.Recv()
		}
		return err
	},
	"FetchJWTSVID": func(ctx context.Context, c pb.SpiffeWorkloadAPIClient) error {
		_, err := c.FetchJWTSVID(ctx, &pb.JWTSVIDRequest{Audience: []string{"db"}})
		return err
	},
	"FetchJWTBundles": func(ctx context.Context, c pb.SpiffeWorkloadAPIClient) error {
		s, err := c.FetchJWTBundles(ctx, &pb.JWTBundlesRequest{})
		if err == nil {
			_, err = s.Recv()
		}
		return err
	},
	"ValidateJWTSVID": func(ctx context.Context, c pb.SpiffeWorkloadAPIClient) error {
		_, err := c.ValidateJWTSVID(ctx, &pb.ValidateJWTSVIDRequest{Audience: "db", Svid: "e30.e30.sig"})
		return err
	},
}

func TestCallsAnswerTheStatusTheSpecRequires(t *testing.T) {
	type caller int
	const (
		unregistered caller = iota // no pod in the test process's netns
		noIdentity                 // a pod, but no SVID issued to it
		withIdentity
	)
	tests := []struct {
		name   string
		method string
		header []string // values of workload.spiffe.io
		caller caller
		want   codes.Code
	}{
		{"FetchX509SVID without the security header is InvalidArgument", "FetchX509SVID", nil, withIdentity, codes.InvalidArgument},
		{"FetchX509SVID with security header false is InvalidArgument", "FetchX509SVID", []string{"false"}, withIdentity, codes.InvalidArgument},
		{"FetchX509SVID with the security header twice is InvalidArgument", "FetchX509SVID", []string{"true", "true"}, withIdentity, codes.InvalidArgument},
		{"FetchX509Bundles without the security header is InvalidArgument", "FetchX509Bundles", nil, withIdentity, codes.InvalidArgument},
		{"FetchJWTSVID without the security header is InvalidArgument", "FetchJWTSVID", nil, withIdentity, codes.InvalidArgument},
		{"FetchJWTBundles without the security header is InvalidArgument", "FetchJWTBundles", nil, withIdentity, codes.InvalidArgument},
		{"ValidateJWTSVID without the security header is InvalidArgument", "ValidateJWTSVID", nil, withIdentity, codes.InvalidArgument},
		{"security header is checked before the caller", "FetchX509SVID", nil, unregistered, codes.InvalidArgument},
		{"FetchX509SVID from a caller in no registered workload is PermissionDenied", "FetchX509SVID", []string{"true"}, unregistered, codes.PermissionDenied},
		{"FetchX509Bundles from a caller in no registered workload is PermissionDenied", "FetchX509Bundles", []string{"true"}, unregistered, codes.PermissionDenied},
		{"FetchX509SVID from a workload without identity is PermissionDenied", "FetchX509SVID", []string{"true"}, noIdentity, codes.PermissionDenied},
		{"FetchX509Bundles from a workload without identity is PermissionDenied", "FetchX509Bundles", []string{"true"}, noIdentity, codes.PermissionDenied},
		{"FetchJWTSVID is Unimplemented", "FetchJWTSVID", []string{"true"}, withIdentity, codes.Unimplemented},
		{"FetchJWTBundles is Unimplemented", "FetchJWTBundles", []string{"true"}, withIdentity, codes.Unimplemented},
		{"ValidateJWTSVID is Unimplemented", "ValidateJWTSVID", []string{"true"}, withIdentity, codes.Unimplemented},
		{"FetchX509SVID from a workload with identity succeeds", "FetchX509SVID", []string{"true"}, withIdentity, codes.OK},
		{"FetchX509Bundles from a workload with identity succeeds", "FetchX509Bundles", []string{"true"}, withIdentity, codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, hourly)
			f.serve(t)
			if tt.caller != unregistered {
				f.addPod(t, "pod-self", selfNetns, tt.caller == withIdentity)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			for _, v := range tt.header {
				ctx = metadata.AppendToOutgoingContext(ctx, "workload.spiffe.io", v)
			}
			err := firstResponse[tt.method](ctx, newRawClient(t, f.socket))
			if got := status.Code(err); got != tt.want {
				t.Fatalf("%s = %v, want code %v", tt.method, err, tt.want)
			}
		})
	}
}

func TestRevocationEndsTheStreamWithPermissionDenied(t *testing.T) {
	for _, method := range []string{"FetchX509SVID", "FetchX509Bundles"} {
		t.Run(method, func(t *testing.T) {
			f := newFixture(t, hourly)
			f.serve(t)
			f.addPod(t, "pod-self", selfNetns, true)
			client := newRawClient(t, f.socket)
			ctx, cancel := context.WithTimeout(withSecurityHeader(context.Background()), 5*time.Second)
			defer cancel()

			var recv func() error
			if method == "FetchX509SVID" {
				s, err := client.FetchX509SVID(ctx, &pb.X509SVIDRequest{})
				if err != nil {
					t.Fatal(err)
				}
				recv = func() error { _, err := s.Recv(); return err }
			} else {
				s, err := client.FetchX509Bundles(ctx, &pb.X509BundlesRequest{})
				if err != nil {
					t.Fatal(err)
				}
				recv = func() error { _, err := s.Recv(); return err }
			}
			if err := recv(); err != nil {
				t.Fatalf("first message: %v", err)
			}
			if err := f.manager.Stop("pod-self"); err != nil {
				t.Fatal(err)
			}
			if err := recv(); status.Code(err) != codes.PermissionDenied {
				t.Fatalf("after revocation the stream ended with %v, want PermissionDenied", err)
			}
		})
	}
}

func TestShutdownEndsOpenStreamsWithUnavailable(t *testing.T) {
	f := newFixture(t, hourly)
	f.addPod(t, "pod-self", selfNetns, true)
	srv, err := workloadapi.New(f.socket, f.registry, f.manager, f.bundles)
	if err != nil {
		t.Fatal(err)
	}
	serveCtx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(serveCtx) }()
	defer stop()
	waitServing(t, f.socket, served)

	ctx, cancel := context.WithTimeout(withSecurityHeader(context.Background()), 5*time.Second)
	defer cancel()
	s, err := newRawClient(t, f.socket).FetchX509SVID(ctx, &pb.X509SVIDRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err != nil {
		t.Fatal(err)
	}
	stop()
	if _, err := s.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("stream at shutdown ended with %v, want Unavailable", err)
	}
	// Well within DefaultShutdownGrace: open streams did not hold it up.
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve = %v, want nil", err)
		}
	case <-time.After(workloadapi.DefaultShutdownGrace / 2):
		t.Fatalf("Serve did not return promptly after its context ended")
	}
}

func TestServeSetsUpTheSocket(t *testing.T) {
	mkdir := func(t *testing.T, path string) {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name    string
		prepare func(t *testing.T, path string)
		// createsDir: the socket's directory is missing, so Serve makes it.
		createsDir bool
		wantErr    bool
	}{
		{
			name:       "creates the missing directory and a world-writable socket",
			prepare:    func(*testing.T, string) {},
			createsDir: true,
		},
		{
			name: "replaces a stale socket nobody listens on",
			prepare: func(t *testing.T, path string) {
				mkdir(t, path)
				l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
				if err != nil {
					t.Fatal(err)
				}
				l.SetUnlinkOnClose(false) // leave the file, as a crashed agent does
				l.Close()
			},
		},
		{
			name: "refuses a socket another server listens on",
			prepare: func(t *testing.T, path string) {
				mkdir(t, path)
				l, err := net.Listen("unix", path)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { l.Close() })
			},
			wantErr: true,
		},
		{
			name: "refuses to replace a file that is not a socket",
			prepare: func(t *testing.T, path string) {
				mkdir(t, path)
				if err := os.WriteFile(path, []byte("keep me"), 0o600); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, hourly)
			tt.prepare(t, f.socket)
			before, _ := os.ReadFile(f.socket)

			srv, err := workloadapi.New(f.socket, f.registry, f.manager, f.bundles)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			served := make(chan error, 1)
			go func() { served <- srv.Serve(ctx) }()

			if tt.wantErr {
				select {
				case err := <-served:
					if err == nil {
						t.Fatal("Serve = nil, want an error")
					}
				case <-time.After(5 * time.Second):
					t.Fatal("Serve kept serving, want an error")
				}
				if after, _ := os.ReadFile(f.socket); !bytes.Equal(before, after) {
					t.Fatalf("Serve changed %s", f.socket)
				}
				return
			}
			waitServing(t, f.socket, served)
			if perm := permOf(t, f.socket); perm != 0o777 {
				t.Fatalf("socket mode = %04o, want 0777", perm)
			}
			if perm := permOf(t, filepath.Dir(f.socket)); tt.createsDir && perm != 0o755 {
				t.Fatalf("socket directory mode = %04o, want 0755", perm)
			}
			cancel()
			if err := <-served; err != nil {
				t.Fatalf("Serve after cancel = %v, want nil", err)
			}
			if _, err := os.Lstat(f.socket); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("socket still there after Serve returned (lstat: %v)", err)
			}
		})
	}
}

func permOf(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}
