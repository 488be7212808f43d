package config

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// TOML renders c as a runtime.toml with every key set, in the layout of the
// package documentation. Parse of the result yields c again. It fails only
// if a string is not valid UTF-8, which TOML cannot represent.
func (c *Config) TOML() ([]byte, error) {
	w := &writer{}

	w.header("[%s]", "agent")
	w.str("node_name", c.Agent.NodeName)
	w.str("control_socket", c.Agent.ControlSocket)
	w.str("state_dir", c.Agent.StateDir)
	w.duration("reconcile_interval", c.Agent.ReconcileInterval)

	id := &c.Identity
	w.header("[%s]", "identity")
	w.str("trust_domain", id.TrustDomain)
	w.str("ca_path", id.CAPath)
	w.duration("cert_ttl", id.CertTTL)
	if id.RenewBefore == 0 {
		w.str("renew_before", "")
	} else {
		w.duration("renew_before", id.RenewBefore)
	}
	w.str("key_type", string(id.KeyType))
	w.line("trust_domain_per_namespace", strconv.FormatBool(id.TrustDomainPerNamespace))
	w.str("workload_api_socket", id.WorkloadAPISocket)
	w.duration("bundle_refresh", id.BundleRefresh)
	for _, name := range slices.Sorted(maps.Keys(id.Namespaces)) {
		ns := id.Namespaces[name]
		if !utf8.ValidString(name) {
			w.fail(joinKey("identity.namespaces", name))
		}
		w.header("[%s]", joinKey("identity.namespaces", name))
		if ns.CertTTL != 0 {
			w.duration("cert_ttl", ns.CertTTL)
		}
		if ns.RenewBefore != 0 {
			w.duration("renew_before", ns.RenewBefore)
		}
	}
	for _, f := range id.Federation {
		w.header("[[%s]]", "identity.federation")
		w.str("trust_domain", f.TrustDomain)
		w.str("bundle_path", f.BundlePath)
	}

	w.header("[%s]", "policy")
	w.str("config_path", c.Policy.ConfigPath)
	w.str("mode", string(c.Policy.Mode))
	w.str("isolation", string(c.Policy.Isolation))

	w.header("[%s]", "telemetry")
	w.str("audit_log", c.Telemetry.AuditLog)
	w.str("admin_address", c.Telemetry.AdminAddress)

	w.header("[%s]", "network")
	w.str("bridge", c.Network.Bridge)
	w.str("pod_cidr", c.Network.PodCIDR.String())
	w.line("kubelet_probes", strconv.FormatBool(c.Network.KubeletProbes))

	if w.err != nil {
		return nil, w.err
	}
	return w.buf.Bytes(), nil
}

type writer struct {
	buf   bytes.Buffer
	table string
	err   error
}

func (w *writer) header(format, table string) {
	w.table = table
	if w.buf.Len() > 0 {
		w.buf.WriteByte('\n')
	}
	fmt.Fprintf(&w.buf, format+"\n", table)
}

func (w *writer) line(key, value string) {
	fmt.Fprintf(&w.buf, "%s = %s\n", key, value)
}

func (w *writer) str(key, s string) {
	if !utf8.ValidString(s) {
		w.fail(joinKey(w.table, key))
	}
	w.line(key, quote(s))
}

func (w *writer) duration(key string, d time.Duration) {
	w.str(key, formatDuration(d))
}

// fail records the first key whose string TOML cannot represent.
func (w *writer) fail(key string) {
	if w.err == nil {
		w.err = fmt.Errorf("config: %s: not valid UTF-8", key)
	}
}

// quote renders s as a TOML basic string. Unlike strconv.Quote it never
// emits \x or \a, which TOML 1.0 lacks.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\t':
			b.WriteString(`\t`)
		case '\n':
			b.WriteString(`\n`)
		case '\f':
			b.WriteString(`\f`)
		case '\r':
			b.WriteString(`\r`)
		default:
			if r < 0x20 || r == 0x7f {
				fmt.Fprintf(&b, `\u%04X`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

// formatDuration drops the zero minutes and seconds that time.Duration's
// String adds ("24h0m0s" becomes "24h").
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
