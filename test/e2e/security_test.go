package e2e

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// secRow states one row of the security table (`make security`): what
// was tried, what must happen, what happened. ok false fails the test.
func secRow(t *testing.T, attack, expected, seen string, ok bool) {
	t.Helper()
	clean := func(s string) string { return strings.NewReplacer("\t", " ", "\n", " ").Replace(s) }
	t.Logf("SECURITY\t%s\t%s\t%s\t%v", clean(attack), clean(expected), clean(seen), ok)
	if !ok {
		t.Errorf("%s: expected %s, saw %s", attack, expected, seen)
	}
}

// podProcessRole is the test binary run as an unprivileged process inside
// a pod (ZTCN_E2E_ROLE=bypass, ZTCN_E2E_NETNS=path): it enters the pod's
// namespace, drops to uid/gid 65534 and tries what a hostile application
// would, printing one line per attempt: "name<TAB>error or ok".
func podProcessRole(role string) int {
	if role != "bypass" {
		return 2
	}
	runtime.LockOSThread()
	f, err := os.Open(os.Getenv("ZTCN_E2E_NETNS"))
	if err != nil {
		fmt.Println("setup\t" + err.Error())
		return 1
	}
	if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
		fmt.Println("setup\t" + err.Error())
		return 1
	}
	if err := syscall.Setgid(65534); err != nil {
		fmt.Println("setup\t" + err.Error())
		return 1
	}
	if err := syscall.Setuid(65534); err != nil {
		fmt.Println("setup\t" + err.Error())
		return 1
	}
	try := func(name string, err error) {
		if err == nil {
			fmt.Println(name + "\tok")
		} else {
			fmt.Println(name + "\t" + err.Error())
		}
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		fmt.Println("setup\t" + err.Error())
		return 1
	}
	try("so_mark", unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, 0x539))
	unix.Close(fd)
	for _, port := range []string{"15001", "15006", "15008"} {
		ln, err := net.Listen("tcp4", "0.0.0.0:"+port)
		if ln != nil {
			ln.Close()
		}
		try("bind_"+port, err)
	}
	// Direct plaintext to the other pod, as if redirection did not exist:
	// it goes to the agent anyway, which carries it over mTLS (allowed)
	// or refuses it (denied); it can never leave the pod as plaintext.
	c, err := net.DialTimeout("tcp4", os.Getenv("ZTCN_E2E_TARGET"), 3*time.Second)
	if err == nil {
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		fmt.Fprintf(c, "GET / HTTP/1.0\r\n\r\n")
		buf := make([]byte, 64)
		_, err = c.Read(buf)
		c.Close()
	}
	try("connect_denied_target", err)
	return 0
}

// TestAttackPodProcessCannotBypassRedirection: an unprivileged process in a
// pod cannot set the agent's bypass mark, cannot take the agent's ports,
// and cannot reach a pod its policy denies.
func TestAttackPodProcessCannotBypassRedirection(t *testing.T) {
	m := newMesh(t, shopPolicy)
	m.addPod("frontend", 2, map[string]string{"app": "frontend"})
	backend := m.addPod("backend", 3, map[string]string{"app": "backend"})
	other := m.addPod("other", 4, map[string]string{"app": "other"})
	backend.serveHTTP(t, 8080)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), "ZTCN_E2E_ROLE=bypass", "ZTCN_E2E_NETNS="+other.ns.Path(),
		"ZTCN_E2E_TARGET="+netip.AddrPortFrom(backend.ip, 8080).String())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pod process: %v\n%s", err, out)
	}
	seen := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if k, v, ok := strings.Cut(line, "\t"); ok {
			seen[k] = v
		}
	}
	secRow(t, "pod process sets the bypass mark 0x539 (SO_MARK)", "refused: needs CAP_NET_ADMIN", seen["so_mark"],
		strings.Contains(seen["so_mark"], "operation not permitted"))
	for _, port := range []string{"15001", "15006", "15008"} {
		v := seen["bind_"+port]
		// 15008 is bound on the pod's IP: a wildcard bind collides too.
		secRow(t, "pod process binds the agent's port "+port, "refused: the agent holds it", v,
			strings.Contains(v, "address already in use"))
	}
	v := seen["connect_denied_target"]
	secRow(t, "pod process connects to a pod its policy denies", "reset at once by its agent", v,
		v != "ok" && (strings.Contains(v, "reset") || strings.Contains(v, "EOF") || strings.Contains(v, "refused")))
}
