// Package config loads the ztcn node agent's runtime.toml.
//
// Every key is optional: a missing key takes the default shown below, and an
// empty file is a valid configuration. The file below is the complete schema,
// with every key set to its default:
//
//	[agent]
//	# Name this node reports to the control plane. Empty means the host's
//	# hostname, filled in by Load (Parse leaves it empty).
//	node_name = ""
//	# Unix socket of the agent's local control API.
//	control_socket = "/run/ztcn/control.sock"
//	# Records of attached pods: a restarted agent re-attaches them from here
//	# without restarting them. Keep it on a tmpfs such as /run.
//	state_dir = "/run/ztcn"
//	# How often every attached pod's redirection rules are re-verified and
//	# repaired (they are also checked at start).
//	reconcile_interval = "10s"
//
//	[identity]
//	# SPIFFE trust domain of this cluster's workload identities: lowercase
//	# letters, digits, '.', '-' and '_', at most 255 characters, without the
//	# "spiffe://" prefix.
//	trust_domain = "cluster.local"
//	# Directory holding the CA material that signs workload certificates.
//	ca_path = "/var/lib/ztcn/ca"
//	# Lifetime of issued workload certificates, from 1m to 720h (30d).
//	cert_ttl = "24h"
//	# How long before expiry a certificate is renewed. Empty means at half of
//	# cert_ttl; otherwise it must be greater than 0 and less than cert_ttl.
//	renew_before = ""
//	# Key algorithm of workload keys: "ecdsa-p256" or "ecdsa-p384".
//	key_type = "ecdsa-p256"
//	# Give each namespace a trust domain of its own, "<namespace>.<trust_domain>",
//	# with its own CA (loaded from ca_path/<namespace>.<trust_domain>/, or
//	# generated in memory by `ztcn agent --dev`), instead of sharing trust_domain.
//	trust_domain_per_namespace = false
//	# Unix socket serving the SPIFFE Workload API to local workloads.
//	workload_api_socket = "/run/ztcn/workload.sock"
//	# How often federated bundle files are re-read; greater than 0.
//	bundle_refresh = "5s"
//
//	# Per-namespace overrides, one table per namespace (the name must be a
//	# DNS-1123 label). Each key is optional and falls back to the [identity]
//	# key of the same name, then obeys the same rules against the
//	# namespace's own cert_ttl. A namespace that shortens cert_ttl below an
//	# inherited renew_before must set renew_before too.
//	#
//	# [identity.namespaces.payments]
//	# cert_ttl = "1h"
//	# renew_before = "20m"
//
//	# Foreign trust domains, trusted only through their bundle files; one
//	# table per domain. Both keys are required; trust_domain must differ from
//	# identity.trust_domain and from every other federated domain.
//	#
//	# [[identity.federation]]
//	# trust_domain = "other.example"
//	# bundle_path = "/etc/ztcn/bundles/other.json"
//
//	[policy]
//	# File holding the network policy.
//	config_path = "/etc/ztcn/policy.yaml"
//	# How policy is enforced: "strict" (only policy-allowed mTLS peers),
//	# "permissive" (also policy-allowed plaintext peers, for migration) or
//	# "audit" (everything flows; would-be denials are recorded).
//	mode = "strict"
//	# Which workloads are isolated: "all" or only those "selected" by policy.
//	isolation = "all"
//
//	[telemetry]
//	# File receiving the audit log.
//	audit_log = "/var/log/ztcn/audit.log"
//	# host:port the admin endpoint listens on.
//	admin_address = "127.0.0.1:15020"
//
//	[network]
//	# Bridge in the node's network namespace that the OCI hook attaches
//	# containers to when they come without a network of their own (no CNI
//	# plugin): a veth to this bridge and an address from pod_cidr. It is
//	# created on first use, carrying the first address of pod_cidr.
//	bridge = "ztcn0"
//	# IPv4 range those containers are addressed from, a /16 to a /29.
//	pod_cidr = "10.89.0.0/24"
//
// Durations are strings in Go's time.ParseDuration syntax ("90m", "1h30m"),
// which is extended with a leading count of whole days: "30d", "1d12h".
//
// Parse reports every problem in a file at once, as an *Errors whose lines
// name the file, line, column and full dotted key, for example:
//
//	runtime.toml:3:1: identity.trsut_domain: unknown key
//	runtime.toml:7:12: identity.cert_ttl: invalid duration "24x" (want e.g. "24h", "90m")
//
// Only a TOML syntax error or a key defined twice stops parsing, because the
// TOML decoder cannot go past either; such an error is reported alone.
// Positions point at the value when the value is wrong, at the key when the
// key is unknown or duplicated, and at the table header when a required key
// is missing. Keys inside arrays of tables carry their index, as in
// identity.federation[1].bundle_path.
package config
