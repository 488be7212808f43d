package podnet

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestIPAMGrantsEachAddressOnce(t *testing.T) {
	m := newIPAM(t.TempDir(), netip.MustParsePrefix("10.89.0.0/29"))
	if m.gateway().String() != "10.89.0.1/29" {
		t.Fatalf("gateway %s", m.gateway())
	}
	// A /29 has 8 addresses: network, gateway and broadcast leave 5.
	var wg sync.WaitGroup
	got := make([]netip.Prefix, 6)
	errs := make([]error, 6)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = m.allocate(fmt.Sprintf("c%d", i))
		}()
	}
	wg.Wait()
	seen := map[netip.Addr]bool{}
	failed := 0
	for i, p := range got {
		if errs[i] != nil {
			failed++
			if !strings.Contains(errs[i].Error(), "no free address left in 10.89.0.0/29") {
				t.Fatalf("error: %v", errs[i])
			}
			continue
		}
		if seen[p.Addr()] || !m.usable(p.Addr()) || p.Bits() != 29 {
			t.Fatalf("granted %s twice or unusable: %v", p, got)
		}
		seen[p.Addr()] = true
	}
	if failed != 1 || len(seen) != 5 {
		t.Fatalf("%d grants, %d failures: %v %v", len(seen), failed, got, errs)
	}
	// Asking again returns the same grant (to an owner that got one: which
	// of the six lost the race is up to the scheduler).
	for i := range got {
		if errs[i] != nil {
			continue
		}
		again, err := m.allocate(fmt.Sprintf("c%d", i))
		if err != nil || again != got[i] {
			t.Fatalf("repeat allocate of c%d: %v %v (first %v)", i, again, err, got[i])
		}
	}
}

func TestIPAMReleaseAndRoundRobin(t *testing.T) {
	dir := t.TempDir()
	m := newIPAM(dir, netip.MustParsePrefix("10.89.0.0/24"))
	a, _ := m.allocate("a")
	b, _ := m.allocate("b")
	if a.Addr().String() != "10.89.0.2" || b.Addr().String() != "10.89.0.3" {
		t.Fatalf("first grants %s %s", a, b)
	}
	if err := m.release("a"); err != nil {
		t.Fatal(err)
	}
	if err := m.release("a"); err != nil {
		t.Fatalf("second release: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "10.89.0.2")); !os.IsNotExist(err) {
		t.Fatalf("grant file still there: %v", err)
	}
	// A released address is not handed out again at once.
	c, _ := m.allocate("c")
	if c.Addr().String() != "10.89.0.4" {
		t.Fatalf("after release got %s, want the next address 10.89.0.4", c)
	}
}
