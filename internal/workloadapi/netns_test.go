package workloadapi_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// helperSocketEnv tells the test binary, re-executed inside a network
// namespace, to act as a workload client of the socket it names.
const helperSocketEnv = "ZTCN_WAPI_HELPER_SOCKET"

// helperIDPrefix marks the line on which the helper reports its SPIFFE ID,
// apart from the test framework's own output.
const helperIDPrefix = "SPIFFE-ID="

// requireNetnsPrivileges skips a test that needs root and iproute2, unless
// CI promises both, where their absence is a broken runner.
func requireNetnsPrivileges(t *testing.T) {
	t.Helper()
	var missing string
	if os.Geteuid() != 0 {
		missing = "root"
	} else if _, err := exec.LookPath("ip"); err != nil {
		missing = "ip (iproute2)"
	}
	if missing == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is required in CI", missing)
	}
	t.Skipf("needs %s", missing)
}

// newNetns creates a named network namespace, deleted when the test ends.
func newNetns(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("ztcn-wapi-%08x", rand.Uint32())
	out, err := exec.Command("ip", "netns", "add", name).CombinedOutput()
	// Cleanup even after a failed add: ip may have left the mount point.
	t.Cleanup(func() {
		if out, delErr := exec.Command("ip", "netns", "del", name).CombinedOutput(); delErr != nil && err == nil {
			t.Errorf("ip netns del %s: %v: %s", name, delErr, out)
		}
	})
	if err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	return name
}

func TestAttackWorkloadAPIAttestation(t *testing.T) {
	requireNetnsPrivileges(t)
	ns := newNetns(t)
	f := newFixture(t, hourly)
	f.serve(t)
	// Only the new namespace is registered; this process's is nobody's.
	want := f.addPod(t, "pod-in-netns", "/var/run/netns/"+ns, true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	t.Run("a workload in the pod's network namespace gets the pod's SVID", func(t *testing.T) {
		cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, os.Args[0], "-test.run=^TestHelperWorkloadClient$")
		cmd.Env = append(os.Environ(), helperSocketEnv+"="+f.socket)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("client in netns %s: %v\nstdout:\n%s\nstderr:\n%s", ns, err, out, stderr.Bytes())
		}
		got, err := helperID(out)
		if err != nil {
			t.Fatalf("%v\nstdout:\n%s", err, out)
		}
		t.Logf("SECURITY\tWorkload API caller inside a pod's network namespace\tgets exactly that pod's SVID\t%s\t%v", got, got == want.String())
		if got != want.String() {
			t.Fatalf("client in the pod's netns got %s, want %s", got, want)
		}
	})

	t.Run("a workload in another network namespace gets PermissionDenied", func(t *testing.T) {
		_, err := newGoSpiffeClient(ctx, t, f.socket).FetchX509SVID(ctx)
		t.Logf("SECURITY\tWorkload API caller not attested to any pod\tPermissionDenied, no SVID\t%v\t%v", status.Code(err), status.Code(err) == codes.PermissionDenied)
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("FetchX509SVID from the root netns = %v, want PermissionDenied", err)
		}
	})
}

func helperID(out []byte) (string, error) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if id, ok := strings.CutPrefix(sc.Text(), helperIDPrefix); ok {
			return id, nil
		}
	}
	return "", errors.New("helper printed no SPIFFE ID")
}

// TestHelperWorkloadClient is not a test: TestAttestationByNetworkNamespace
// runs it in a subprocess inside a network namespace, as a workload.
func TestHelperWorkloadClient(t *testing.T) {
	socket := os.Getenv(helperSocketEnv)
	if socket == "" {
		t.Skip("helper process of TestAttestationByNetworkNamespace")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	svid, err := newGoSpiffeClient(ctx, t, socket).FetchX509SVID(ctx)
	if err != nil {
		t.Fatalf("FetchX509SVID: %v", err)
	}
	fmt.Printf("%s%s\n", helperIDPrefix, svid.ID)
}
