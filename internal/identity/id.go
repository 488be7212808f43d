package identity

import (
	"fmt"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// WorkloadID returns the default SPIFFE ID of a Kubernetes-style workload:
// spiffe://<td>/ns/<namespace>/sa/<serviceaccount>.
func WorkloadID(td spiffeid.TrustDomain, namespace, serviceAccount string) (spiffeid.ID, error) {
	if namespace == "" {
		return spiffeid.ID{}, fmt.Errorf("identity: workload has no namespace")
	}
	if serviceAccount == "" {
		return spiffeid.ID{}, fmt.Errorf("identity: workload in namespace %q has no service account", namespace)
	}
	id, err := spiffeid.FromSegments(td, "ns", namespace, "sa", serviceAccount)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("identity: invalid SPIFFE ID for namespace %q, service account %q: %w", namespace, serviceAccount, err)
	}
	return id, nil
}

// ParseWorkloadID validates a SPIFFE ID given by an operator. A workload ID
// must have a path: an ID without one names a trust domain, which only CAs
// carry.
func ParseWorkloadID(s string) (spiffeid.ID, error) {
	id, err := spiffeid.FromString(s)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("identity: invalid SPIFFE ID %q: %w", s, err)
	}
	if id.Path() == "" {
		return spiffeid.ID{}, fmt.Errorf("identity: invalid SPIFFE ID %q: a workload ID needs a path (e.g. spiffe://%s/ns/default/sa/app)", s, id.TrustDomain())
	}
	return id, nil
}

// ParseTrustDomain validates a trust domain name such as "cluster.local".
func ParseTrustDomain(s string) (spiffeid.TrustDomain, error) {
	td, err := spiffeid.TrustDomainFromString(s)
	if err != nil {
		return spiffeid.TrustDomain{}, fmt.Errorf("identity: invalid trust domain %q: %w", s, err)
	}
	if td.Name() != s {
		// TrustDomainFromString also accepts a full spiffe:// ID; operators
		// must name the domain itself so a typo cannot widen trust.
		return spiffeid.TrustDomain{}, fmt.Errorf("identity: invalid trust domain %q: give the bare name, e.g. %q", s, td.Name())
	}
	return td, nil
}

// NamespaceTrustDomain is the trust domain of a namespace when every
// namespace is its own tenant: "<namespace>.<base>". Keeping the base as a
// suffix makes the tenant's domain readable and unique per cluster.
func NamespaceTrustDomain(base spiffeid.TrustDomain, namespace string) (spiffeid.TrustDomain, error) {
	return ParseTrustDomain(namespace + "." + base.Name())
}
