package identity

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestRootAndNodeCARoundTripThroughFiles(t *testing.T) {
	pki := newTestPKI(t, "cluster.local")
	rootDir, nodeDir := filepath.Join(t.TempDir(), "root"), filepath.Join(t.TempDir(), "node")
	if err := WriteRootCA(rootDir, pki.root, false); err != nil {
		t.Fatal(err)
	}
	if err := WriteNodeCA(nodeDir, pki.node, false); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{filepath.Join(rootDir, RootKeyFile), filepath.Join(nodeDir, NodeKeyFile)} {
		info, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %04o, want 0600", f, info.Mode().Perm())
		}
	}
	root, err := LoadCA(rootDir)
	if err != nil {
		t.Fatal(err)
	}
	if !root.IsRoot() || !root.Certificate().Equal(pki.root.Certificate()) {
		t.Fatal("loaded root differs")
	}
	node, err := LoadCA(nodeDir)
	if err != nil {
		t.Fatal(err)
	}
	if node.IsRoot() || !node.Certificate().Equal(pki.node.Certificate()) {
		t.Fatal("loaded node CA differs")
	}
	svid, err := node.IssueSVID(SVIDRequest{ID: spiffeid.RequireFromPath(pki.td, "/ns/a/sa/b"), TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pki.verifier().Verify(rawChain(svid.Certificates), 0); err != nil {
		t.Fatalf("leaf of the reloaded node CA refused: %v", err)
	}
}

func TestWriteRefusesToOverwriteWithoutForce(t *testing.T) {
	pki := newTestPKI(t, "cluster.local")
	dir := t.TempDir()
	if err := WriteRootCA(dir, pki.root, false); err != nil {
		t.Fatal(err)
	}
	other := newTestPKI(t, "cluster.local")
	if err := WriteRootCA(dir, other.root, false); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("err = %v", err)
	}
	if err := WriteRootCA(dir, other.root, true); err != nil {
		t.Fatal(err)
	}
	ca, err := LoadCA(dir)
	if err != nil || !ca.Certificate().Equal(other.root.Certificate()) {
		t.Fatalf("forced overwrite did not replace the root: %v", err)
	}
}

// TestLoadCARejectsBadInput: each broken CA directory gives one error that
// names the file and the problem.
func TestLoadCARejectsBadInput(t *testing.T) {
	pki := newTestPKI(t, "cluster.local")
	other := newTestPKI(t, "cluster.local")
	cases := []struct {
		name   string
		damage func(t *testing.T, dir string)
		want   []string
	}{
		{"corrupt certificate PEM", func(t *testing.T, dir string) {
			data, _ := os.ReadFile(filepath.Join(dir, RootCertFile))
			writeFile(t, filepath.Join(dir, RootCertFile), data[:len(data)/2], 0o644)
		}, []string{RootCertFile, "no PEM-encoded certificate"}},
		{"garbage after the certificate", func(t *testing.T, dir string) {
			data, _ := os.ReadFile(filepath.Join(dir, RootCertFile))
			writeFile(t, filepath.Join(dir, RootCertFile), append(data, "-----BEGIN CERT"...), 0o644)
		}, []string{RootCertFile, "corrupt PEM"}},
		{"corrupt key PEM", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, RootKeyFile), []byte("not a key"), 0o600)
		}, []string{RootKeyFile, "no PEM-encoded private key"}},
		{"key of another certificate", func(t *testing.T, dir string) {
			keyPEM, err := encodeKey(other.root.Signer())
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(dir, RootKeyFile), keyPEM, 0o600)
		}, []string{RootCertFile, "private key does not match"}},
		{"world-readable key", func(t *testing.T, dir string) {
			if err := os.Chmod(filepath.Join(dir, RootKeyFile), 0o644); err != nil {
				t.Fatal(err)
			}
		}, []string{RootKeyFile, "group or others", "chmod 600"}},
		{"missing key", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, RootKeyFile))
		}, []string{RootKeyFile, "no such file"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := WriteRootCA(dir, pki.root, false); err != nil {
				t.Fatal(err)
			}
			tc.damage(t, dir)
			_, err := LoadCA(dir)
			if err == nil {
				t.Fatal("loaded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestLoadCARejectsExpiredRoot(t *testing.T) {
	past := func() time.Time { return time.Now().Add(-48 * time.Hour) }
	root, err := NewRootCA(spiffeid.RequireTrustDomainFromString("cluster.local"), time.Hour, WithClock(past))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := WriteRootCA(dir, root, false); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCA(dir); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("err = %v", err)
	}
}

func writeFile(t *testing.T, path string, data []byte, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
}
