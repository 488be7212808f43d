package agent

import (
	"fmt"
	"net/netip"
	"sync/atomic"

	"github.com/ztcn/ztcn/internal/control"
	"github.com/ztcn/ztcn/internal/identity"
	"github.com/ztcn/ztcn/internal/policy"
)

// directory is what the agent knows about workloads on other nodes. It is
// replaced whole (PUT /v1/directory) and read per connection without a
// lock, like the policy.
type directory struct {
	byIP map[netip.Addr]*policy.Endpoint
	list []*policy.Endpoint
}

type directoryRef = atomic.Pointer[directory]

// lookup is the data plane's Directory: what is known about ip, or nil.
func (a *Agent) lookup(ip netip.Addr) *policy.Endpoint {
	if d := a.remote.Load(); d != nil {
		return d.byIP[ip]
	}
	return nil
}

// SetDirectory replaces the remote workloads. Each gets the SPIFFE ID its
// own agent issues it (the trust domain of its namespace), which outbound
// HBONE then requires of the destination's certificate. Every attached
// pod's non-TCP allowlist is recompiled with the new peers.
func (a *Agent) SetDirectory(d control.Directory) error {
	next := &directory{byIP: map[netip.Addr]*policy.Endpoint{}}
	for i, rp := range d.Pods {
		if rp.Namespace == "" || rp.ServiceAccount == "" || rp.Name == "" {
			return fmt.Errorf("%w: directory pod %d (%q): name, namespace and service_account are required", control.ErrInvalid, i, rp.UID)
		}
		ip, err := podIPv4(rp.Pod)
		if err != nil {
			return err
		}
		if other, dup := next.byIP[ip]; dup {
			return fmt.Errorf("%w: directory pods %s/%s and %s/%s share the address %s", control.ErrInvalid, other.Namespace, other.Name, rp.Namespace, rp.Name, ip)
		}
		td, err := a.identities.TrustDomainOf(rp.Namespace)
		if err != nil {
			return fmt.Errorf("%w: %v", control.ErrInvalid, err)
		}
		id, err := identity.WorkloadID(td, rp.Namespace, rp.ServiceAccount)
		if err != nil {
			return fmt.Errorf("%w: %v", control.ErrInvalid, err)
		}
		ep := endpointOf(rp.Pod, ip, id.String())
		next.byIP[ip] = ep
		next.list = append(next.list, ep)
	}
	a.podsMu.Lock()
	defer a.podsMu.Unlock()
	a.remote.Store(next)
	if a.dp != nil {
		a.syncNonTCPLocked()
	}
	a.log.Info("directory of remote workloads replaced", "pods", len(next.list))
	return nil
}

func (a *Agent) directorySize() int {
	if d := a.remote.Load(); d != nil {
		return len(d.list)
	}
	return 0
}
