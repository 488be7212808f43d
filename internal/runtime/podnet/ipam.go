package podnet

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ipam hands out addresses of one range to containers, like CNI's
// host-local plugin: one file per address in dir naming its owner, created
// with O_EXCL under a lock, so concurrent hooks never hand out an address
// twice. The range's first address is the gateway's and its last the
// broadcast address; "last" remembers the previous grant so that a
// released address is not reused at once (late packets of the old owner).
type ipam struct {
	dir    string
	prefix netip.Prefix
}

func newIPAM(dir string, prefix netip.Prefix) *ipam { return &ipam{dir: dir, prefix: prefix.Masked()} }

// gateway is the address the bridge carries.
func (m *ipam) gateway() netip.Prefix {
	return netip.PrefixFrom(m.prefix.Addr().Next(), m.prefix.Bits())
}

// lock serializes hooks running at the same time (a pod of many
// containers starts them together).
func (m *ipam) lock() (unlock func(), err error) {
	if err := os.MkdirAll(m.dir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(m.dir, "lock"), os.O_CREATE|os.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil
}

// allocate grants owner an address, or returns the one it already holds
// (a hook retried by the runtime must not take a second one).
func (m *ipam) allocate(owner string) (netip.Prefix, error) {
	unlock, err := m.lock()
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("ipam %s: %w", m.dir, err)
	}
	defer unlock()
	if held, ok, err := m.find(owner); err != nil || ok {
		return netip.PrefixFrom(held, m.prefix.Bits()), err
	}
	start := m.gateway().Addr()
	if b, err := os.ReadFile(filepath.Join(m.dir, "last")); err == nil {
		if last, err := netip.ParseAddr(strings.TrimSpace(string(b))); err == nil && m.usable(last) {
			start = last
		}
	}
	// Every address once, starting after the last grant and ending with it.
	a := start
	for range 1 << (32 - m.prefix.Bits()) {
		a = m.next(a)
		if !m.usable(a) {
			continue
		}
		f, err := os.OpenFile(filepath.Join(m.dir, a.String()), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("ipam %s: %w", m.dir, err)
		}
		_, werr := f.WriteString(owner)
		if err := errors.Join(werr, f.Close()); err != nil {
			os.Remove(f.Name())
			return netip.Prefix{}, fmt.Errorf("ipam %s: %w", m.dir, err)
		}
		_ = os.WriteFile(filepath.Join(m.dir, "last"), []byte(a.String()), 0o600)
		return netip.PrefixFrom(a, m.prefix.Bits()), nil
	}
	return netip.Prefix{}, fmt.Errorf("ipam %s: no free address left in %s", m.dir, m.prefix)
}

// release returns the address owner holds, if any.
func (m *ipam) release(owner string) error {
	unlock, err := m.lock()
	if err != nil {
		return fmt.Errorf("ipam %s: %w", m.dir, err)
	}
	defer unlock()
	a, ok, err := m.find(owner)
	if err != nil || !ok {
		return err
	}
	if err := os.Remove(filepath.Join(m.dir, a.String())); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("ipam %s: %w", m.dir, err)
	}
	return nil
}

// find returns the address owner holds.
func (m *ipam) find(owner string) (netip.Addr, bool, error) {
	entries, err := os.ReadDir(m.dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return netip.Addr{}, false, nil
		}
		return netip.Addr{}, false, fmt.Errorf("ipam %s: %w", m.dir, err)
	}
	for _, e := range entries {
		a, err := netip.ParseAddr(e.Name())
		if err != nil || !m.prefix.Contains(a) {
			continue
		}
		if b, err := os.ReadFile(filepath.Join(m.dir, e.Name())); err == nil && string(b) == owner {
			return a, true, nil
		}
	}
	return netip.Addr{}, false, nil
}

// usable excludes the network, gateway and broadcast addresses.
func (m *ipam) usable(a netip.Addr) bool {
	return m.prefix.Contains(a) && a != m.prefix.Addr() && a != m.gateway().Addr() && m.prefix.Contains(a.Next())
}

// next is the address after a, wrapping around the range.
func (m *ipam) next(a netip.Addr) netip.Addr {
	if n := a.Next(); m.prefix.Contains(n) {
		return n
	}
	return m.prefix.Addr()
}
