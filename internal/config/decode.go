package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// parse returns the first TOML-level error (syntax, duplicate key) alone,
// since go-toml cannot continue past it, and otherwise every schema error.
func parse(name string, data []byte) (*Config, Errors) {
	l, err := locate(data)
	if err != nil {
		var perr *unstable.ParserError
		if !errors.As(err, &perr) {
			perr = &unstable.ParserError{Message: err.Error()}
		}
		// The highlight is a subslice of data, so capacities give its offset.
		p := l.pos(min(max(cap(data)-cap(perr.Highlight), 0), len(data)))
		return nil, Errors{{File: name, Line: p.line, Col: p.col, Msg: "syntax error: " + perr.Message}}
	}

	// The parser alone accepts duplicate keys and tables; the decoder does
	// not.
	var doc map[string]any
	if err := toml.Unmarshal(data, &doc); err != nil {
		e := Error{File: name, Line: 1, Col: 1, Msg: err.Error()}
		var derr *toml.DecodeError
		if errors.As(err, &derr) {
			e.Line, e.Col = derr.Position()
			e.Msg = strings.TrimPrefix(derr.Error(), "toml: ")
			e.Key = l.exprs[position{e.Line, e.Col}]
			if e.Key == "" {
				for _, part := range derr.Key() {
					e.Key = joinKey(e.Key, part)
				}
			}
		}
		if e.Key == "" {
			e.Msg = "syntax error: " + e.Msg
		}
		return nil, Errors{e}
	}

	d := &decoder{file: name, layout: l, bad: map[string]bool{}, text: map[string]string{}}
	c := Default()
	d.members("", doc, d.schema(c))
	d.check(c)
	slices.SortStableFunc(d.errs, func(a, b Error) int {
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return a.Col - b.Col
	})
	return c, d.errs
}

// field decodes the value of one key, found at path.
type field func(path string, v any)

type decoder struct {
	file   string
	layout *layout
	errs   Errors
	// bad holds the keys already reported, so that checks across keys do
	// not pile a second error on a value that was rejected or defaulted.
	bad map[string]bool
	// text holds durations as written, to quote them back in errors.
	text map[string]string
}

// schema maps the top-level keys to their decoders, which store into c.
func (d *decoder) schema(c *Config) map[string]field {
	a, id, p, t, n := &c.Agent, &c.Identity, &c.Policy, &c.Telemetry, &c.Network
	return map[string]field{
		"agent": d.table(map[string]field{
			"node_name":          d.str(&a.NodeName, nil),
			"control_socket":     d.str(&a.ControlSocket, nil),
			"state_dir":          d.str(&a.StateDir, nil),
			"reconcile_interval": d.duration(&a.ReconcileInterval, false, checkPositive),
		}),
		"identity": d.table(map[string]field{
			"trust_domain":               d.str(&id.TrustDomain, checkTrustDomain),
			"ca_path":                    d.str(&id.CAPath, nil),
			"cert_ttl":                   d.duration(&id.CertTTL, false, checkTTL),
			"renew_before":               d.duration(&id.RenewBefore, true, checkPositive),
			"key_type":                   oneOf(d, &id.KeyType, KeyTypeECDSAP256, KeyTypeECDSAP384),
			"trust_domain_per_namespace": d.boolean(&id.TrustDomainPerNamespace),
			"workload_api_socket":        d.str(&id.WorkloadAPISocket, nil),
			"bundle_refresh":             d.duration(&id.BundleRefresh, false, checkPositive),
			"namespaces":                 d.namespaces(&id.Namespaces),
			"federation":                 d.federation(&id.Federation),
		}),
		"policy": d.table(map[string]field{
			"config_path": d.str(&p.ConfigPath, nil),
			"mode":        oneOf(d, &p.Mode, ModeStrict, ModePermissive, ModeAudit),
			"isolation":   oneOf(d, &p.Isolation, IsolationAll, IsolationSelected),
		}),
		"telemetry": d.table(map[string]field{
			"audit_log":     d.str(&t.AuditLog, nil),
			"admin_address": d.str(&t.AdminAddress, checkAddress),
		}),
		"network": d.table(map[string]field{
			"bridge":         d.str(&n.Bridge, checkInterfaceName),
			"pod_cidr":       d.podCIDR(&n.PodCIDR),
			"kubelet_probes": d.boolean(&n.KubeletProbes),
		}),
	}
}

// report records an error about key at p.
func (d *decoder) report(p position, key, format string, args ...any) {
	d.bad[key] = true
	d.errs = append(d.errs, Error{File: d.file, Line: p.line, Col: p.col, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// errorf reports a problem with the value of key.
func (d *decoder) errorf(key, format string, args ...any) {
	d.report(d.layout.at[key].value, key, format, args...)
}

// ok reports whether none of keys has been reported.
func (d *decoder) ok(keys ...string) bool {
	for _, k := range keys {
		if d.bad[k] {
			return false
		}
	}
	return true
}

func (d *decoder) typeError(key, want string, v any) {
	d.errorf(key, "expected %s, got %s", want, typeName(v))
}

// members decodes the keys of table t at path; keys missing from fields are
// reported, and nothing below them is.
func (d *decoder) members(path string, t map[string]any, fields map[string]field) {
	for k, v := range t {
		key := joinKey(path, k)
		if f, ok := fields[k]; ok {
			f(key, v)
		} else {
			d.report(d.layout.at[key].key, key, "unknown key")
		}
	}
}

func (d *decoder) asTable(key string, v any) (map[string]any, bool) {
	t, ok := v.(map[string]any)
	if !ok {
		d.typeError(key, "a table", v)
	}
	return t, ok
}

func (d *decoder) table(fields map[string]field) field {
	return func(key string, v any) {
		if t, ok := d.asTable(key, v); ok {
			d.members(key, t, fields)
		}
	}
}

func (d *decoder) asString(key string, v any, want string) (string, bool) {
	s, ok := v.(string)
	if !ok {
		d.typeError(key, want, v)
	}
	return s, ok
}

// str decodes a string that check, if not nil, accepts by returning "".
func (d *decoder) str(dst *string, check func(string) string) field {
	return func(key string, v any) {
		s, ok := d.asString(key, v, "a string")
		if !ok {
			return
		}
		if check != nil {
			if msg := check(s); msg != "" {
				d.errorf(key, "%s", msg)
				return
			}
		}
		*dst = s
	}
}

func (d *decoder) boolean(dst *bool) field {
	return func(key string, v any) {
		b, ok := v.(bool)
		if !ok {
			d.typeError(key, "a boolean", v)
			return
		}
		*dst = b
	}
}

func oneOf[T ~string](d *decoder, dst *T, values ...T) field {
	return func(key string, v any) {
		s, ok := d.asString(key, v, "a string")
		if !ok {
			return
		}
		if !slices.Contains(values, T(s)) {
			names := make([]string, len(values))
			for i, v := range values {
				names[i] = string(v)
			}
			d.errorf(key, "must be one of %s, got %q", strings.Join(names, ", "), s)
			return
		}
		*dst = T(s)
	}
}

// duration decodes a duration string that check accepts by returning "";
// when optional, "" decodes as 0.
func (d *decoder) duration(dst *time.Duration, optional bool, check func(time.Duration) string) field {
	return func(key string, v any) {
		s, ok := d.asString(key, v, "a duration string")
		if !ok {
			return
		}
		if s == "" && optional {
			*dst = 0
			return
		}
		dur, ok := parseDuration(s)
		if !ok {
			d.errorf(key, `invalid duration %q (want e.g. "24h", "90m")`, s)
			return
		}
		if msg := check(dur); msg != "" {
			d.errorf(key, "%s, got %q", msg, s)
			return
		}
		*dst = dur
		d.text[key] = s
	}
}

func (d *decoder) namespaces(dst *map[string]NamespaceIdentity) field {
	return func(key string, v any) {
		t, ok := d.asTable(key, v)
		if !ok {
			return
		}
		for name, v := range t {
			nsKey := joinKey(key, name)
			if !isDNSLabel(name) {
				d.report(d.layout.at[nsKey].key, nsKey, "invalid namespace name: want a DNS-1123 label (at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit)")
			}
			var ns NamespaceIdentity
			d.table(map[string]field{
				"cert_ttl":     d.duration(&ns.CertTTL, true, checkTTL),
				"renew_before": d.duration(&ns.RenewBefore, true, checkPositive),
			})(nsKey, v)
			if *dst == nil {
				*dst = map[string]NamespaceIdentity{}
			}
			(*dst)[name] = ns
		}
	}
}

func (d *decoder) federation(dst *[]Federation) field {
	return func(key string, v any) {
		list, ok := v.([]any)
		if !ok {
			d.typeError(key, "an array of tables", v)
			return
		}
		for i, v := range list {
			elemKey := indexKey(key, i)
			// Appended even when invalid, so that index i names entry i in
			// check.
			var f Federation
			if t, ok := d.asTable(elemKey, v); ok {
				d.members(elemKey, t, map[string]field{
					"trust_domain": d.str(&f.TrustDomain, checkTrustDomain),
					"bundle_path":  d.str(&f.BundlePath, checkNonEmpty),
				})
				for _, k := range []string{"trust_domain", "bundle_path"} {
					if _, ok := t[k]; !ok {
						d.report(d.layout.at[elemKey].key, joinKey(elemKey, k), "missing required key")
					}
				}
			}
			*dst = append(*dst, f)
		}
	}
}

// check validates what no single key can: renew_before against the ttl it
// applies to, and federated domains against each other.
func (d *decoder) check(c *Config) {
	id := &c.Identity
	if id.RenewBefore != 0 && id.RenewBefore >= id.CertTTL && d.ok("identity.cert_ttl", "identity.renew_before") {
		d.errorf("identity.renew_before", "must be less than identity.cert_ttl (%s), got %q",
			formatDuration(id.CertTTL), d.text["identity.renew_before"])
	}

	for name, ns := range id.Namespaces {
		nsKey := joinKey("identity.namespaces", name)
		ttl, ttlKey := id.CertTTL, "identity.cert_ttl"
		if ns.CertTTL != 0 {
			ttl, ttlKey = ns.CertTTL, nsKey+".cert_ttl"
		}
		renew, renewKey := id.RenewBefore, "identity.renew_before"
		if ns.RenewBefore != 0 {
			renew, renewKey = ns.RenewBefore, nsKey+".renew_before"
		}
		if renew == 0 || renew < ttl || !d.ok(ttlKey, renewKey) {
			continue
		}
		// The [identity] pair was checked above, so one of the two comes from
		// the namespace; blame that one.
		if ns.RenewBefore != 0 {
			d.errorf(renewKey, "must be less than %s (%s), got %q", ttlKey, formatDuration(ttl), d.text[renewKey])
		} else {
			d.errorf(ttlKey, "must be greater than the inherited %s (%s), got %q", renewKey, formatDuration(renew), d.text[ttlKey])
		}
	}

	first := map[string]int{}
	for i, f := range id.Federation {
		key := indexKey("identity.federation", i) + ".trust_domain"
		if f.TrustDomain == "" || !d.ok(key) {
			continue
		}
		if f.TrustDomain == id.TrustDomain && d.ok("identity.trust_domain") {
			d.errorf(key, "must differ from identity.trust_domain, got %q", f.TrustDomain)
			continue
		}
		if j, dup := first[f.TrustDomain]; dup {
			at := d.layout.at[indexKey("identity.federation", j)+".trust_domain"].value
			d.errorf(key, "duplicate trust domain %q, already federated at line %d", f.TrustDomain, at.line)
			continue
		}
		first[f.TrustDomain] = i
	}
}

// typeName names the TOML type of a value decoded by go-toml.
func typeName(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case bool:
		return "boolean"
	case int64:
		return "integer"
	case float64:
		return "float"
	case time.Time:
		return "offset date-time"
	case toml.LocalDateTime:
		return "local date-time"
	case toml.LocalDate:
		return "local date"
	case toml.LocalTime:
		return "local time"
	case []any:
		return "array"
	case map[string]any:
		return "table"
	}
	return fmt.Sprintf("%T", v)
}

func checkTTL(d time.Duration) string {
	if d < time.Minute || d > 720*time.Hour {
		return "must be between 1m and 720h (30d)"
	}
	return ""
}

func checkPositive(d time.Duration) string {
	if d <= 0 {
		return "must be greater than 0"
	}
	return ""
}

func checkNonEmpty(s string) string {
	if s == "" {
		return "must not be empty"
	}
	return ""
}

// checkTrustDomain applies the SPIFFE trust domain name rules.
func checkTrustDomain(s string) string {
	if s == "" {
		return "must not be empty"
	}
	if len(s) > 255 {
		return fmt.Sprintf("must be at most 255 characters, got %d", len(s))
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			msg := fmt.Sprintf("invalid trust domain %q: only lowercase letters, digits, '.', '-' and '_' are allowed", s)
			if strings.HasPrefix(s, "spiffe://") {
				msg += ` (leave out "spiffe://")`
			}
			return msg
		}
	}
	return ""
}

func checkAddress(s string) string {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Sprintf(`invalid address %q (want host:port, e.g. "127.0.0.1:15020")`, s)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Sprintf("invalid port %q in %q (want 0-65535)", port, s)
	}
	return ""
}

func isDNSLabel(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

// maxDays keeps a day count from overflowing time.Duration.
const maxDays = math.MaxInt64 / int64(24*time.Hour)

// parseDuration extends time.ParseDuration with a leading count of whole
// days ("30d", "1d12h"), the natural unit of certificate lifetimes.
func parseDuration(s string) (time.Duration, bool) {
	days, rest, found := strings.Cut(s, "d")
	if !found {
		d, err := time.ParseDuration(s)
		return d, err == nil
	}
	if days == "" || strings.Trim(days, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseInt(days, 10, 64)
	if err != nil || n > maxDays {
		return 0, false
	}
	total := time.Duration(n) * 24 * time.Hour
	if rest == "" {
		return total, true
	}
	// A sign after the days ("1d-2h") would read as a subtraction.
	if rest[0] == '+' || rest[0] == '-' {
		return 0, false
	}
	r, err := time.ParseDuration(rest)
	if err != nil || r > math.MaxInt64-total {
		return 0, false
	}
	return total + r, true
}

// checkInterfaceName accepts a Linux interface name: 1 to 15 bytes, no '/',
// whitespace or ':' (which would make it an alias).
func checkInterfaceName(s string) string {
	if s == "" || len(s) > 15 || s == "." || s == ".." || strings.ContainsAny(s, "/: \t\n") {
		return fmt.Sprintf("invalid interface name %q (want 1-15 characters, no '/', ':' or whitespace)", s)
	}
	return ""
}

// podCIDR decodes an IPv4 prefix that leaves room for a gateway and pods,
// written with its host bits clear so that it means one thing.
func (d *decoder) podCIDR(dst *netip.Prefix) field {
	return func(key string, v any) {
		s, ok := d.asString(key, v, "a string")
		if !ok {
			return
		}
		p, err := netip.ParsePrefix(s)
		switch {
		case err != nil || !p.Addr().Is4():
			d.errorf(key, "invalid IPv4 range %q (want e.g. \"10.89.0.0/24\")", s)
		case p.Bits() < 16 || p.Bits() > 29:
			d.errorf(key, "range %q must be a /16 to a /29", s)
		case p.Masked() != p:
			d.errorf(key, "range %q has host bits set (did you mean %q?)", s, p.Masked().String())
		default:
			*dst = p
		}
	}
}
