package identity

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// These tests prove interoperability and refusal with a TLS stack that is
// not ours: OpenSSL's s_server and s_client perform the mutual TLS.

// sServer starts `openssl s_server -rev` (it echoes each line reversed)
// with the given SVID, trusting bundlePath for client certificates, and
// returns its address.
func sServer(t *testing.T, openssl, dir string, svid *SVID, bundlePath string) string {
	t.Helper()
	certPath, keyPath, chainPath := writeOpenSSLFiles(t, mkdir(t, dir, "server"), svid)
	port := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, openssl, "s_server", "-rev", "-tls1_3",
		"-accept", fmt.Sprintf("127.0.0.1:%d", port),
		"-cert", certPath, "-key", keyPath, "-cert_chain", chainPath,
		"-CAfile", bundlePath, "-Verify", "3", "-verify_return_error")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		once := false
		for sc.Scan() {
			if !once && strings.Contains(sc.Text(), "ACCEPT") {
				once = true
				close(ready)
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("openssl s_server did not start")
	}
	return fmt.Sprintf("127.0.0.1:%d", port)
}

// sClient connects with the given SVID, trusting bundlePath, sends a line
// and reports whether the server's reversed echo came back: the proof that
// both sides accepted each other.
func sClient(t *testing.T, openssl, dir, addr string, svid *SVID, bundlePath string) (bool, string) {
	t.Helper()
	certPath, keyPath, chainPath := writeOpenSSLFiles(t, mkdir(t, dir, "client"), svid)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, openssl, "s_client", "-tls1_3", "-quiet", "-no_ign_eof", "-verify_return_error",
		"-connect", addr, "-cert", certPath, "-key", keyPath, "-cert_chain", chainPath, "-CAfile", bundlePath)
	cmd.Stdin = &slowReader{data: "ztcn-mtls\n", delay: 300 * time.Millisecond}
	out, _ := cmd.CombinedOutput()
	return strings.Contains(string(out), "sltm-nctz"), string(out)
}

// slowReader feeds s_client its line, then holds stdin open briefly so the
// reply can arrive before s_client sees EOF and exits.
type slowReader struct {
	data  string
	delay time.Duration
	done  bool
}

func (r *slowReader) Read(p []byte) (int, error) {
	if r.done {
		time.Sleep(r.delay)
		return 0, io.EOF
	}
	r.done = true
	return copy(p, r.data), nil
}

func TestOpenSSLMutualTLSWithIssuedSVIDs(t *testing.T) {
	openssl := requireTool(t, "openssl")
	pki := newTestPKI(t, "cluster.local")
	dir := t.TempDir()
	bundlePath := filepath.Join(dir, "bundle.crt")
	if err := os.WriteFile(bundlePath, EncodeCertificates(pki.root.Roots()), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := sServer(t, openssl, dir, pki.issue(t, "/ns/a/sa/server", nil), bundlePath)

	cases := []struct {
		name   string
		client *SVID
		want   bool
	}{
		{"valid SVID completes the handshake", pki.issue(t, "/ns/a/sa/client", nil), true},
		{"expired SVID is refused", pki.expiredLeaf(t, "/ns/a/sa/client"), false},
		{"SVID of a foreign CA is refused", newTestPKI(t, "cluster.local").issue(t, "/ns/a/sa/client", nil), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ok, out := sClient(t, openssl, t.TempDir(), addr, tc.client, bundlePath)
			if ok != tc.want {
				t.Fatalf("handshake ok=%v, want %v; s_client said:\n%s", ok, tc.want, out)
			}
		})
	}
}

// TestOpenSSLClientRefusedByZtcnVerifier has OpenSSL's s_client present
// SVIDs to a Go server that verifies with ztcn's Verifier, which is where
// revocation lives (OpenSSL knows nothing of the agent's revocation set).
func TestOpenSSLClientRefusedByZtcnVerifier(t *testing.T) {
	openssl := requireTool(t, "openssl")
	pki := newTestPKI(t, "cluster.local")
	dir := t.TempDir()
	bundlePath := filepath.Join(dir, "bundle.crt")
	if err := os.WriteFile(bundlePath, EncodeCertificates(pki.root.Roots()), 0o644); err != nil {
		t.Fatal(err)
	}
	server := pki.issue(t, "/ns/a/sa/server", nil)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", ServerTLSConfig(func() *SVID { return server }, pki.verifier(), AuthorizeAny))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go reverseEcho(ln)

	revoked := pki.issue(t, "/ns/a/sa/revoked", nil)
	pki.revoked.Revoke(revoked.Leaf())
	cases := []struct {
		name   string
		client *SVID
		want   bool
	}{
		{"valid SVID completes the handshake", pki.issue(t, "/ns/a/sa/client", nil), true},
		{"revoked SVID is refused", revoked, false},
		{"expired SVID is refused", pki.expiredLeaf(t, "/ns/a/sa/client"), false},
		{"SVID of a foreign CA is refused", newTestPKI(t, "cluster.local").issue(t, "/ns/a/sa/client", nil), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ok, out := sClient(t, openssl, t.TempDir(), ln.Addr().String(), tc.client, bundlePath)
			if ok != tc.want {
				t.Fatalf("handshake ok=%v, want %v; s_client said:\n%s", ok, tc.want, out)
			}
		})
	}
}

// reverseEcho answers each line with the line reversed, like s_server -rev.
func reverseEcho(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			sc := bufio.NewScanner(c)
			for sc.Scan() {
				r := []rune(sc.Text())
				for i, j := 0, len(r)-1; i < j; i, j = i+1, j-1 {
					r[i], r[j] = r[j], r[i]
				}
				fmt.Fprintf(c, "%s\n", string(r))
			}
		}()
	}
}

// writeOpenSSLFiles writes the SVID plus its intermediates alone: OpenSSL
// takes the leaf from -cert and the rest of the chain from -cert_chain.
func writeOpenSSLFiles(t *testing.T, dir string, svid *SVID) (certPath, keyPath, chainPath string) {
	t.Helper()
	certPath, keyPath = writeSVIDFiles(t, dir, svid)
	chainPath = filepath.Join(dir, "chain.crt")
	if err := os.WriteFile(chainPath, EncodeCertificates(svid.Certificates[1:]), 0o644); err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath, chainPath
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func mkdir(t *testing.T, parent, name string) string {
	t.Helper()
	d := filepath.Join(parent, name)
	if err := os.MkdirAll(d, 0o700); err != nil {
		t.Fatal(err)
	}
	return d
}
