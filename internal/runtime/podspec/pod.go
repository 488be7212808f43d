package podspec

import (
	"net/netip"
	"strings"

	"gopkg.in/yaml.v3"
)

// Fields of each kind of mapping, in the order messages list them.
var (
	podFields      = []string{"name", "namespace", "serviceAccount", "node", "labels", "ports", "command", "env"}
	externalFields = []string{"name", "address", "ports", "command", "env"}
)

// nameAt is where a valid workload name is written, for the check that
// names are unique; node is nil if the name was missing or invalid.
type nameAt struct {
	node *yaml.Node
	path string
}

// pod decodes one entry of pods:.
func (d *decoder) pod(n *yaml.Node, path string) (Pod, nameAt) {
	p := Pod{Pos: pos(n), Namespace: DefaultNamespace, ServiceAccount: DefaultServiceAccount}
	if !d.mapping(n, path, "a pod", "a mapping with name and command") {
		return p, nameAt{}
	}
	f := d.fields(n, path, podFields)
	var name nameAt
	p.Name, name = d.workloadName(n, f, path)
	if v := present(f, "namespace"); v != nil {
		p.Namespace = d.name(v, child(path, "namespace"), "namespace", dnsLabel)
	}
	if v := present(f, "serviceAccount"); v != nil {
		p.ServiceAccount = d.name(v, child(path, "serviceAccount"), "service account", dnsSubdomain)
	}
	// An empty string, like an omitted node, leaves the choice to the runtime.
	if v := present(f, "node"); v != nil && !(v.Kind == yaml.ScalarNode && v.ShortTag() == "!!str" && v.Value == "") {
		p.Node = d.name(v, child(path, "node"), "node name", dnsLabel)
	}
	if v := present(f, "labels"); v != nil {
		p.Labels = d.labels(v, child(path, "labels"))
	}
	if v := present(f, "ports"); v != nil {
		p.Ports = d.ports(v, child(path, "ports"), true)
	}
	p.Command = d.command(n, f, path)
	if v := present(f, "env"); v != nil {
		p.Env = d.env(v, child(path, "env"))
	}
	return p, name
}

// external decodes one entry of externals:.
func (d *decoder) external(n *yaml.Node, path string) (External, nameAt) {
	x := External{Pos: pos(n)}
	if !d.mapping(n, path, "an external", "a mapping with name, address and command") {
		return x, nameAt{}
	}
	f := d.fields(n, path, externalFields)
	var name nameAt
	x.Name, name = d.workloadName(n, f, path)
	if v := d.required(n, f, "address", child(path, "address")); v != nil {
		x.Address = d.address(v, child(path, "address"))
	}
	if v := present(f, "ports"); v != nil {
		// Externals run no agent, so the agent's ports are theirs to use.
		x.Ports = d.ports(v, child(path, "ports"), false)
	}
	x.Command = d.command(n, f, path)
	if v := present(f, "env"); v != nil {
		x.Env = d.env(v, child(path, "env"))
	}
	return x, name
}

// workloadName decodes the required name of a pod or external.
func (d *decoder) workloadName(n *yaml.Node, f map[string]entry, path string) (string, nameAt) {
	path = child(path, "name")
	v := d.required(n, f, "name", path)
	if v == nil {
		return "", nameAt{}
	}
	before := len(d.diags)
	s := d.name(v, path, "name", dnsLabel)
	if len(d.diags) > before {
		return "", nameAt{}
	}
	return s, nameAt{v, path}
}

// name decodes a string that check accepts.
func (d *decoder) name(n *yaml.Node, path, what string, check func(string) string) string {
	s, ok := d.str(n, path, what)
	if !ok {
		return ""
	}
	switch {
	case s == "":
		d.errorf(n, path, "must not be empty")
	default:
		if why := check(s); why != "" {
			d.errorf(n, path, "invalid %s %q: %s", what, s, why)
		}
	}
	return s
}

// address decodes an external's address: a unicast IPv4 address, which the
// runtime gives the external's interface on its external network.
func (d *decoder) address(n *yaml.Node, path string) netip.Addr {
	s, ok := d.str(n, path, "address")
	if !ok {
		return netip.Addr{}
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		d.errorf(n, path, "invalid address %q (want an IPv4 address such as 203.0.113.10)", s)
		return netip.Addr{}
	}
	var why string
	switch {
	case a.IsUnspecified():
		why = "unspecified"
	case a.IsLoopback():
		why = "a loopback address"
	case a.IsMulticast():
		why = "a multicast address"
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		why = "the broadcast address"
	default:
		return a
	}
	d.errorf(n, path, "address %s is %s (want a unicast IPv4 address such as 203.0.113.10)", s, why)
	return netip.Addr{}
}

// command decodes the required command: a list of strings, or one string
// that /bin/sh runs, the short form for a shell line.
func (d *decoder) command(n *yaml.Node, f map[string]entry, path string) []string {
	path = child(path, "command")
	v := d.required(n, f, "command", path)
	if v == nil || d.alias(v, path) {
		return nil
	}
	switch {
	case v.Kind == yaml.ScalarNode && v.ShortTag() == "!!str":
		if v.Value == "" {
			d.errorf(v, path, "must not be empty")
			return nil
		}
		if !d.noNUL(v, path, v.Value) {
			return nil
		}
		return []string{"/bin/sh", "-c", v.Value}
	case v.Kind == yaml.SequenceNode:
		if len(v.Content) == 0 {
			d.errorf(v, path, "must not be empty")
			return nil
		}
		args := make([]string, 0, len(v.Content))
		for i, item := range v.Content {
			ipath := index(path, i)
			s, ok := d.str(item, ipath, "command argument")
			if !ok || !d.noNUL(item, ipath, s) {
				continue
			}
			if i == 0 && s == "" {
				d.errorf(item, ipath, "program must not be empty")
				continue
			}
			args = append(args, s)
		}
		return args
	}
	d.errorf(v, path, "command must be a list of strings or a shell command string, got %s", describe(v))
	return nil
}

// env decodes the environment: a mapping of variable names to values.
func (d *decoder) env(n *yaml.Node, path string) map[string]string {
	if !d.mapping(n, path, "env", "a mapping of variable names to values") {
		return nil
	}
	var env map[string]string
	for _, e := range d.entries(n, path) {
		epath := child(path, e.key.Value)
		name, ok := d.str(e.key, epath, "env name")
		if ok {
			if why := envName(name); why != "" {
				d.errorf(e.key, epath, "invalid env name %q: %s", name, why)
				ok = false
			}
		}
		value, vok := d.str(e.value, epath, "env value")
		if !ok || !vok || !d.noNUL(e.value, epath, value) {
			continue
		}
		if env == nil {
			env = map[string]string{}
		}
		env[name] = value
	}
	return env
}

// labels decodes Kubernetes labels: a mapping of label keys to values.
func (d *decoder) labels(n *yaml.Node, path string) map[string]string {
	if !d.mapping(n, path, "labels", "a mapping of label keys to values") {
		return nil
	}
	var labels map[string]string
	for _, e := range d.entries(n, path) {
		lpath := child(path, e.key.Value)
		key, ok := d.str(e.key, lpath, "label key")
		if ok {
			if why := labelKey(key); why != "" {
				d.errorf(e.key, lpath, "invalid label key %q: %s", key, why)
				ok = false
			}
		}
		value, vok := d.str(e.value, lpath, "label value")
		if vok {
			if why := labelValue(value); why != "" {
				d.errorf(e.value, lpath, "invalid label value %q: %s", value, why)
				vok = false
			}
		}
		if !ok || !vok {
			continue
		}
		if labels == nil {
			labels = map[string]string{}
		}
		labels[key] = value
	}
	return labels
}

// noNUL reports a NUL byte in s, which no argument or environment string
// can carry to exec; YAML can write one ("\0").
func (d *decoder) noNUL(n *yaml.Node, path, s string) bool {
	if strings.IndexByte(s, 0) >= 0 {
		d.errorf(n, path, "must not contain a NUL byte")
		return false
	}
	return true
}
