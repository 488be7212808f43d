package config

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"
)

// Config is the agent's runtime configuration, as read from runtime.toml.
type Config struct {
	Agent     Agent
	Identity  Identity
	Policy    Policy
	Telemetry Telemetry
	Network   Network
}

// Agent is the [agent] table.
type Agent struct {
	// NodeName is the name this node reports; empty means the hostname (see
	// ResolveNodeName).
	NodeName string
	// ControlSocket is the path of the agent's local control API socket.
	ControlSocket string
	// StateDir holds the records of attached pods, so that a restarted
	// agent re-attaches them without restarting them. It belongs on a
	// tmpfs (/run): pods do not survive a reboot either.
	StateDir string
	// ReconcileInterval is how often every attached pod's redirection is
	// re-verified and repaired.
	ReconcileInterval time.Duration
}

// Identity is the [identity] table: how workload identities are issued.
type Identity struct {
	// TrustDomain is the SPIFFE trust domain, without "spiffe://".
	TrustDomain string
	// CAPath is the directory holding the signing CA material.
	CAPath string
	// CertTTL is the lifetime of issued workload certificates.
	CertTTL time.Duration
	// RenewBefore is how long before expiry certificates are renewed; 0
	// means at half of CertTTL. Use RotationFor rather than reading it
	// directly.
	RenewBefore time.Duration
	// KeyType is the algorithm of workload keys.
	KeyType KeyType
	// TrustDomainPerNamespace gives each namespace a trust domain of its own.
	TrustDomainPerNamespace bool
	// WorkloadAPISocket is the path of the SPIFFE Workload API socket.
	WorkloadAPISocket string
	// BundleRefresh is how often federated bundle files are re-read.
	BundleRefresh time.Duration
	// Namespaces holds per-namespace overrides, keyed by namespace name; nil
	// when there are none.
	Namespaces map[string]NamespaceIdentity
	// Federation lists the foreign trust domains; nil when there are none.
	Federation []Federation
}

// NamespaceIdentity is an [identity.namespaces.<name>] table. A zero field
// inherits the [identity] value.
type NamespaceIdentity struct {
	// CertTTL overrides Identity.CertTTL.
	CertTTL time.Duration
	// RenewBefore overrides Identity.RenewBefore.
	RenewBefore time.Duration
}

// Federation is one [[identity.federation]] entry: a foreign trust domain
// trusted through a bundle file.
type Federation struct {
	// TrustDomain is the foreign SPIFFE trust domain, without "spiffe://".
	TrustDomain string
	// BundlePath is the file holding that domain's trust bundle.
	BundlePath string
}

// Policy is the [policy] table.
type Policy struct {
	// ConfigPath is the file holding the network policy.
	ConfigPath string
	// Mode is how policy is enforced.
	Mode Mode
	// Isolation is which workloads are isolated.
	Isolation Isolation
}

// Telemetry is the [telemetry] table.
type Telemetry struct {
	// AuditLog is the file receiving the audit log.
	AuditLog string
	// AdminAddress is the host:port the admin endpoint listens on.
	AdminAddress string
}

// Network is the [network] table: the network ztcn gives containers that
// come without one, so that it runs with no CNI plugin (OCI hook).
type Network struct {
	// Bridge is the bridge in the node's network namespace that such
	// containers are attached to; it carries the first address of PodCIDR.
	Bridge string
	// PodCIDR is the IPv4 range their addresses come from.
	PodCIDR netip.Prefix
	// KubeletProbes lets the node's own TCP to pods (the kubelet's HTTP
	// and TCP probes) reach their applications in every mode: it leaves
	// the node with the link-local source 169.254.7.127, which the pods'
	// rules let through in plaintext and which no pod may send from.
	KubeletProbes bool
}

// KeyType is the algorithm of workload keys (identity.key_type).
type KeyType string

// The accepted identity.key_type values.
const (
	KeyTypeECDSAP256 KeyType = "ecdsa-p256"
	KeyTypeECDSAP384 KeyType = "ecdsa-p384"
)

// Mode is the policy enforcement mode (policy.mode).
type Mode string

// The accepted policy.mode values.
const (
	// ModeStrict enforces policy: only authenticated (mTLS) peers that
	// policy allows get through; plaintext inbound connections are refused.
	ModeStrict Mode = "strict"
	// ModePermissive also lets unauthenticated (plaintext) peers in where
	// policy allows them, for migrating workloads onto ztcn.
	ModePermissive Mode = "permissive"
	// ModeAudit lets traffic flow and records what strict mode would have
	// denied, to tune a policy before enforcing it.
	ModeAudit Mode = "audit"
)

// Isolation selects which workloads are isolated (policy.isolation).
type Isolation string

// The accepted policy.isolation values.
const (
	// IsolationAll isolates every workload on the node.
	IsolationAll Isolation = "all"
	// IsolationSelected isolates only the workloads selected by policy.
	IsolationSelected Isolation = "selected"
)

// Default returns the configuration of an empty runtime.toml. It is
// deterministic: Agent.NodeName stays empty until ResolveNodeName.
func Default() *Config {
	return &Config{
		Agent: Agent{
			ControlSocket:     "/run/ztcn/control.sock",
			StateDir:          "/run/ztcn",
			ReconcileInterval: 10 * time.Second,
		},
		Identity: Identity{
			TrustDomain:       "cluster.local",
			CAPath:            "/var/lib/ztcn/ca",
			CertTTL:           24 * time.Hour,
			KeyType:           KeyTypeECDSAP256,
			WorkloadAPISocket: "/run/ztcn/workload.sock",
			BundleRefresh:     5 * time.Second,
		},
		Policy: Policy{
			ConfigPath: "/etc/ztcn/policy.yaml",
			Mode:       ModeStrict,
			Isolation:  IsolationAll,
		},
		Telemetry: Telemetry{
			AuditLog:     "/var/log/ztcn/audit.log",
			AdminAddress: "127.0.0.1:15020",
		},
		Network: Network{
			Bridge:  "ztcn0",
			PodCIDR: netip.MustParsePrefix("10.89.0.0/24"),
		},
	}
}

// Load reads and parses the file at path, then resolves an empty node name
// to the hostname. Problems in the file are reported as an *Errors that names
// path; a file that cannot be read gives the plain *fs.PathError.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := Parse(path, data)
	if err != nil {
		return nil, err
	}
	if err := c.ResolveNodeName(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Parse parses the contents of a runtime.toml; name is the file name used in
// error messages. Unlike Load it does not resolve the node name, so its
// result depends on data alone. On failure the error is an *Errors listing
// every problem found.
func Parse(name string, data []byte) (*Config, error) {
	c, errs := parse(name, data)
	if len(errs) > 0 {
		return nil, &errs
	}
	return c, nil
}

// ResolveNodeName sets an empty Agent.NodeName to the host's name.
func (c *Config) ResolveNodeName() error {
	if c.Agent.NodeName != "" {
		return nil
	}
	host, err := os.Hostname()
	if err != nil {
		return fmt.Errorf("agent.node_name is empty and the hostname is unknown: %w", err)
	}
	if host == "" {
		return errors.New("agent.node_name is empty and so is the hostname")
	}
	c.Agent.NodeName = host
	return nil
}

// RotationFor returns the certificate lifetime and renew-before interval
// that apply to workloads in namespace, after its overrides. renewBefore is
// never 0: when no renew_before applies it is half of ttl.
func (c *Config) RotationFor(namespace string) (ttl, renewBefore time.Duration) {
	ttl, renewBefore = c.Identity.CertTTL, c.Identity.RenewBefore
	if ns, ok := c.Identity.Namespaces[namespace]; ok {
		if ns.CertTTL != 0 {
			ttl = ns.CertTTL
		}
		if ns.RenewBefore != 0 {
			renewBefore = ns.RenewBefore
		}
	}
	if renewBefore == 0 {
		renewBefore = ttl / 2
	}
	return ttl, renewBefore
}
