package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/ztcn/ztcn/internal/dataplane"
	"github.com/ztcn/ztcn/internal/dataplane/hbone"
	"github.com/ztcn/ztcn/internal/identity"
	"github.com/ztcn/ztcn/internal/netns"
)

// capture records every frame on an interface of a namespace with an
// AF_PACKET socket until stop is called.
func capture(t *testing.T, ns *netns.NS, ifname string) (stop func() []byte) {
	t.Helper()
	var fd int
	if err := netns.Do(ns, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		proto := int(htons(unix.ETH_P_ALL))
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, proto)
		if err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index})
	}); err != nil {
		t.Fatal(err)
	}
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 100000})
	var (
		mu   sync.Mutex
		buf  bytes.Buffer
		done = make(chan struct{})
		quit = make(chan struct{})
	)
	go func() {
		defer close(done)
		frame := make([]byte, 65536)
		for {
			select {
			case <-quit:
				return
			default:
			}
			n, _, err := unix.Recvfrom(fd, frame, 0)
			if err != nil {
				continue
			}
			mu.Lock()
			buf.Write(frame[:n])
			mu.Unlock()
		}
	}()
	return func() []byte {
		close(quit)
		<-done
		unix.Close(fd)
		mu.Lock()
		defer mu.Unlock()
		return buf.Bytes()
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func TestAttackWireSniffing(t *testing.T) {
	m := newMesh(t, shopPolicy)
	frontend := m.addPod("frontend", 2, map[string]string{"app": "frontend"})
	backend := m.addPod("backend", 3, map[string]string{"app": "backend"})
	backend.serveHTTP(t, 8080)

	stop := capture(t, m.node.NS(), frontend.nodeVeth)
	out, err := frontend.curl(t, fmt.Sprintf("http://%s:8080/secret-marker-path", backend.ip))
	time.Sleep(200 * time.Millisecond)
	wire := stop()
	if err != nil || !strings.Contains(out, "hello from backend") {
		t.Fatalf("curl: %v %s", err, out)
	}
	if len(wire) == 0 {
		t.Fatal("captured nothing on the frontend's veth")
	}
	leaked := ""
	for _, marker := range []string{"hello from backend", "secret-marker-path", "GET /"} {
		if bytes.Contains(wire, []byte(marker)) {
			leaked += marker + " "
		}
	}
	// TLS 1.3 application data records: type 23, legacy version 3.3.
	tlsSeen := bytes.Contains(wire, []byte{0x17, 0x03, 0x03})
	secRow(t, "sniffing a pod's veth during an allowed call", "TLS records only, no application byte",
		fmt.Sprintf("%d bytes, TLS records %v, plaintext markers [%s]", len(wire), tlsSeen, strings.TrimSpace(leaked)), tlsSeen && leaked == "")
	t.Logf("captured %d bytes on the frontend's veth: TLS records, no plaintext", len(wire))
}

// TestAttackHBONEListener presents every kind of bad client to a
// pod's HBONE port with OpenSSL, and policy-denied or foreign-target
// CONNECTs with a real HBONE client.
func TestAttackHBONEListener(t *testing.T) {
	requireRoot(t, "openssl")
	m := newMesh(t, shopPolicy)
	m.addPod("frontend", 2, map[string]string{"app": "frontend"})
	backend := m.addPod("backend", 3, map[string]string{"app": "backend"})
	m.addPod("other", 4, map[string]string{"app": "other"})
	backend.serveHTTP(t, 8080)
	hboneAddr := netip.AddrPortFrom(backend.ip, 15008)

	dir := t.TempDir()
	bundle := filepath.Join(dir, "bundle.crt")
	if err := os.WriteFile(bundle, identity.EncodeCertificates(m.bundles.Authorities(m.td)), 0o644); err != nil {
		t.Fatal(err)
	}
	writeSVID := func(name string, s *identity.SVID) []string {
		certPEM, keyPEM, err := s.MarshalPEM()
		if err != nil {
			t.Fatal(err)
		}
		c, k, chain := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key"), filepath.Join(dir, name+".chain")
		_ = os.WriteFile(c, certPEM, 0o644)
		_ = os.WriteFile(k, keyPEM, 0o600)
		args := []string{"-cert", c, "-key", k}
		if len(s.Certificates) > 1 {
			_ = os.WriteFile(chain, identity.EncodeCertificates(s.Certificates[1:]), 0o644)
			args = append(args, "-cert_chain", chain)
		}
		return args
	}
	foreignRoot, _ := identity.NewRootCA(m.td, time.Hour)
	foreign, _ := foreignRoot.IssueSVID(identity.SVIDRequest{ID: spiffeid.RequireFromPath(m.td, "/ns/shop/sa/frontend"), TTL: time.Hour})
	past := func() time.Time { return time.Now().Add(-3 * time.Hour) }
	oldRoot, _ := identity.NewRootCA(m.td, 24*time.Hour, identity.WithClock(past))
	m.bundles.Add(m.td, oldRoot.Certificate())
	expired, _ := oldRoot.IssueSVID(identity.SVIDRequest{ID: spiffeid.RequireFromPath(m.td, "/ns/shop/sa/frontend"), TTL: time.Hour})
	revoked, _ := m.ca.IssueSVID(identity.SVIDRequest{ID: spiffeid.RequireFromPath(m.td, "/ns/shop/sa/frontend"), TTL: time.Hour})
	m.revoked.Revoke(revoked.Leaf())
	valid, _ := m.ca.IssueSVID(identity.SVIDRequest{ID: spiffeid.RequireFromPath(m.td, "/ns/shop/sa/frontend"), TTL: time.Hour, Claims: identity.Claims{Labels: map[string]string{"app": "frontend"}}})

	// s_client runs in the node namespace (outside the mesh: a pod's own
	// rules would send it to its agent first) and sends an HTTP/2 preface
	// after the handshake.
	handshake := func(args []string) string {
		cmdArgs := append([]string{"netns", "exec", m.node.NS().Name(), "openssl", "s_client", "-connect", hboneAddr.String(),
			"-alpn", "h2", "-tls1_3", "-CAfile", bundle, "-quiet", "-no_ign_eof"}, args...)
		cmd := exec.Command("ip", cmdArgs...)
		// Hold stdin open briefly after the preface so that s_client reads
		// the server's answer (an alert, or HTTP/2 SETTINGS) before it
		// sees EOF and exits.
		pr, pw := io.Pipe()
		cmd.Stdin = pr
		go func() {
			_, _ = pw.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
			// Generous: on a loaded machine the alert for a missing
			// certificate can come well after the preface.
			time.Sleep(1500 * time.Millisecond)
			pw.Close()
		}()
		out, _ := cmd.CombinedOutput()
		return string(out)
	}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"no client certificate", nil},
		{"a foreign CA's SVID", writeSVID("foreign", foreign)},
		{"an expired SVID", writeSVID("expired", expired)},
		{"a revoked SVID", writeSVID("revoked", revoked)},
	} {
		t.Run(tc.name+" is refused", func(t *testing.T) {
			before := len(m.eventsOf(dataplane.EventHandshakeFailed))
			out := handshake(tc.args)
			refused := strings.Contains(out, "alert")
			reported := len(m.eventsOf(dataplane.EventHandshakeFailed)) > before
			secRow(t, "HBONE client with "+tc.name, "TLS handshake refused, reported", fmt.Sprintf("alert=%v reported=%v", refused, reported), refused && reported)
		})
	}
	t.Run("a valid SVID completes the handshake (control)", func(t *testing.T) {
		out := handshake(writeSVID("valid", valid))
		// The server's HTTP/2 SETTINGS frame (type 4 on stream 0) proves
		// the handshake was accepted.
		if strings.Contains(out, "alert") || !strings.Contains(out, "\x04\x00\x00\x00\x00\x00") {
			t.Fatalf("valid SVID refused:\n%q", out)
		}
	})

	// A real HBONE client with valid SVIDs, dialing from the node namespace.
	pool, err := hbone.NewPool(hbone.PoolConfig{Verifier: identity.NewVerifier(m.bundles, m.revoked), Dial: func(ctx context.Context, addr netip.AddrPort) (net.Conn, error) {
		var c net.Conn
		err := netns.Do(m.node.NS(), func() error {
			var err error
			c, err = (&net.Dialer{}).DialContext(ctx, "tcp4", addr.String())
			return err
		})
		return c, err
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	otherSVID := m.pods["other"].svid.Load()
	connect := func(svid *identity.SVID, target netip.AddrPort) error {
		s, err := pool.Dial(context.Background(), hbone.Source{Key: svid.ID.String(), SVID: func() *identity.SVID { return svid }},
			hbone.Destination{Addr: hboneAddr}, target, netip.AddrPortFrom(m.pods["other"].ip, 40000))
		if err == nil {
			s.Close()
		}
		return err
	}
	statusOf := func(err error) int {
		var se *hbone.StatusError
		if errors.As(err, &se) {
			return se.Status
		}
		return 0
	}
	t.Run("a valid SVID that policy denies gets a refused CONNECT", func(t *testing.T) {
		err := connect(otherSVID, netip.AddrPortFrom(backend.ip, 8080))
		secRow(t, "valid SVID whose identity policy denies", "CONNECT refused 401", fmt.Sprintf("status %d", statusOf(err)), statusOf(err) == 401)
	})
	t.Run("a CONNECT to an address that is not the pod's is refused", func(t *testing.T) {
		for _, tc := range []struct {
			what   string
			target netip.AddrPort
		}{
			{"CONNECT to another pod's address (SSRF through the tunnel)", netip.AddrPortFrom(m.pods["frontend"].ip, 8080)},
			{"CONNECT to loopback", netip.MustParseAddrPort("127.0.0.1:8080")},
			{"CONNECT to the agent's HBONE port", netip.AddrPortFrom(backend.ip, 15008)},
			{"CONNECT to the agent's outbound port", netip.AddrPortFrom(backend.ip, 15001)},
			{"CONNECT to the agent's plaintext port", netip.AddrPortFrom(backend.ip, 15006)},
		} {
			err := connect(valid, tc.target)
			secRow(t, tc.what, "CONNECT refused 400", fmt.Sprintf("status %d", statusOf(err)), statusOf(err) == 400)
		}
	})
	t.Run("an allowed CONNECT succeeds (control)", func(t *testing.T) {
		if err := connect(valid, netip.AddrPortFrom(backend.ip, 8080)); err != nil {
			t.Fatal(err)
		}
	})
}
