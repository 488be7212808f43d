package workloadapi

import (
	"context"
	"crypto/x509"
	"log/slog"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/ztcn/ztcn/internal/identity"
)

// SVIDs is the source of workload identities: the current SVID of each
// workload and a feed of changes to them. *identity.Manager satisfies it.
type SVIDs interface {
	// SVID returns the workload's current SVID.
	SVID(uid string) (*identity.SVID, bool)
	// Subscribe returns every identity event from now on, in order, until
	// ctx ends.
	Subscribe(ctx context.Context) <-chan identity.Event
}

// Bundles is the source of trust bundles, one per trust domain.
// *identity.Bundles satisfies it.
type Bundles interface {
	// Authorities returns td's trust anchors, or nil.
	Authorities(td spiffeid.TrustDomain) []*x509.Certificate
	// TrustDomains lists every trusted domain.
	TrustDomains() []spiffeid.TrustDomain
	// Subscribe returns the trust domains whose bundle changed, from now
	// on, until ctx ends.
	Subscribe(ctx context.Context) <-chan spiffeid.TrustDomain
}

// securityHeader is the metadata key the Workload API spec requires on every
// call, with the value "true".
const securityHeader = "workload.spiffe.io"

func checkSecurityHeader(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(securityHeader); len(v) != 1 || v[0] != "true" {
		return status.Errorf(codes.InvalidArgument, "workloadapi: security header missing from request: %s: true is required", securityHeader)
	}
	return nil
}

func unarySecurityHeader(ctx context.Context, req any, _ *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
	if err := checkSecurityHeader(ctx); err != nil {
		return nil, err
	}
	return next(ctx, req)
}

func streamSecurityHeader(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, next grpc.StreamHandler) error {
	if err := checkSecurityHeader(ss.Context()); err != nil {
		return err
	}
	return next(srv, ss)
}

// handler implements the Workload API service for one run of Serve. The
// embedded Unimplemented server answers the JWT and WIT methods.
type handler struct {
	workload.UnimplementedSpiffeWorkloadAPIServer
	resolver Resolver
	svids    SVIDs
	bundles  Bundles
	log      *slog.Logger
	// stopping is closed when the server shuts down, ending open streams so
	// that GracefulStop need not wait for clients to hang up.
	stopping <-chan struct{}
}

func (h *handler) FetchX509SVID(_ *workload.X509SVIDRequest, stream grpc.ServerStreamingServer[workload.X509SVIDResponse]) error {
	return watch(stream.Context(), h, "FetchX509SVID", h.x509SVIDResponse, stream.Send)
}

func (h *handler) FetchX509Bundles(_ *workload.X509BundlesRequest, stream grpc.ServerStreamingServer[workload.X509BundlesResponse]) error {
	return watch(stream.Context(), h, "FetchX509Bundles", func(*identity.SVID) (*workload.X509BundlesResponse, error) {
		return &workload.X509BundlesResponse{Bundles: h.bundleMap(spiffeid.TrustDomain{})}, nil
	}, stream.Send)
}

// watch attests the caller, then sends build's message for the caller's
// SVID at once and again after every identity or bundle change, until the
// caller's identity is revoked, the client goes away or the server stops.
func watch[M proto.Message](ctx context.Context, h *handler, method string, build func(*identity.SVID) (M, error), send func(M) error) error {
	uid, who, err := attest(ctx, h.resolver)
	if err != nil {
		h.log.Warn("workload API call refused", "method", method, "pid", who.PID, "uid", who.UID, "gid", who.GID, "err", err)
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Subscribe before reading the current state: a change made between the
	// read and a later subscription would never be sent.
	events := h.svids.Subscribe(ctx)
	changes := h.bundles.Subscribe(ctx)
	svid, ok := h.svids.SVID(uid)
	if !ok {
		h.log.Warn("workload API call refused", "method", method, "pid", who.PID, "uid", who.UID, "gid", who.GID, "workload", uid, "err", "no identity")
		return status.Errorf(codes.PermissionDenied, "workloadapi: workload %s has no identity", uid)
	}
	var last M // a nil message, which no built message equals
	for {
		msg, err := build(svid)
		if err != nil {
			return err
		}
		// Events queued before the first read repeat what was just read;
		// a message equal to the last one tells the client nothing.
		if !proto.Equal(msg, last) {
			if err := send(msg); err != nil {
				return err
			}
			last = msg
		}
		if svid, err = h.next(ctx, uid, svid, events, changes); err != nil {
			return err
		}
	}
}

// next waits for a change that concerns the stream of workload uid and
// returns the SVID to send from then on, or the status that ends the stream.
func (h *handler) next(ctx context.Context, uid string, svid *identity.SVID, events <-chan identity.Event, changes <-chan spiffeid.TrustDomain) (*identity.SVID, error) {
	for {
		select {
		case <-h.stopping:
			return nil, status.Error(codes.Unavailable, "workloadapi: the Workload API is shutting down")
		case ev, ok := <-events:
			if !ok {
				return nil, status.FromContextError(ctx.Err()).Err()
			}
			if ev.UID != uid {
				continue
			}
			if ev.Kind == identity.EventRevoked {
				return nil, status.Errorf(codes.PermissionDenied, "workloadapi: the identity of workload %s was revoked", uid)
			}
			return ev.SVID, nil
		case _, ok := <-changes:
			if !ok {
				return nil, status.FromContextError(ctx.Err()).Err()
			}
			return svid, nil
		}
	}
}

func (h *handler) x509SVIDResponse(svid *identity.SVID) (*workload.X509SVIDResponse, error) {
	key, err := x509.MarshalPKCS8PrivateKey(svid.PrivateKey)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "workloadapi: marshal the private key of %s: %v", svid.ID, err)
	}
	td := svid.ID.TrustDomain()
	return &workload.X509SVIDResponse{
		Svids: []*workload.X509SVID{{
			SpiffeId:    svid.ID.String(),
			X509Svid:    concatDER(svid.Certificates),
			X509SvidKey: key,
			Bundle:      concatDER(h.bundles.Authorities(td)),
		}},
		FederatedBundles: h.bundleMap(td),
	}, nil
}

// bundleMap returns the bundle of every trust domain except skip, keyed by
// trust domain ID ("spiffe://example.org") as the Workload API wants it.
func (h *handler) bundleMap(skip spiffeid.TrustDomain) map[string][]byte {
	out := make(map[string][]byte)
	for _, td := range h.bundles.TrustDomains() {
		if td == skip {
			continue
		}
		// A domain removed since TrustDomains was read has no authorities
		// and is left out, as if it had been removed a moment earlier.
		if authorities := h.bundles.Authorities(td); len(authorities) > 0 {
			out[td.IDString()] = concatDER(authorities)
		}
	}
	return out
}

// concatDER concatenates the DER of certs: the encoding the Workload API
// uses for chains and bundles.
func concatDER(certs []*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, c.Raw...)
	}
	return out
}
