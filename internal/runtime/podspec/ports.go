package podspec

import (
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

var portFields = []string{"name", "port", "protocol"}

// portAt is a valid port with where its parts are written, for the clash
// checks.
type portAt struct {
	Port
	name, number *yaml.Node // name is nil for an unnamed port
	namePath     string
	numberPath   string
}

// ports decodes ports: in either form, `{http: 8080}` (named TCP ports, the
// common case in one line) or a list of {name, port, protocol}. reserve
// refuses the agent's ports, for pods.
func (d *decoder) ports(n *yaml.Node, path string, reserve bool) []Port {
	if d.alias(n, path) {
		return nil
	}
	var ports []portAt
	switch n.Kind {
	case yaml.MappingNode:
		for _, e := range d.entries(n, path) {
			ppath := child(path, e.key.Value)
			name, ok := d.portName(e.key, ppath, true)
			number, nok := d.portNumber(e.value, ppath)
			if ok && nok {
				ports = append(ports, portAt{Port{name, number, TCP}, e.key, e.value, ppath, ppath})
			}
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			if p, ok := d.portItem(item, index(path, i)); ok {
				ports = append(ports, p)
			}
		}
	default:
		d.errorf(n, path, "ports must be a mapping of names to port numbers or a list of ports, got %s", describe(n))
		return nil
	}

	d.portClashes(ports, reserve)
	var out []Port
	for _, p := range ports {
		out = append(out, p.Port)
	}
	return out
}

// portItem decodes one entry of the list form; the name is optional there,
// as in Kubernetes.
func (d *decoder) portItem(n *yaml.Node, path string) (portAt, bool) {
	if !d.mapping(n, path, "a port", "a mapping with port and optional name and protocol") {
		return portAt{}, false
	}
	f := d.fields(n, path, portFields)
	p := portAt{Port: Port{Protocol: TCP}, namePath: child(path, "name"), numberPath: child(path, "port")}
	ok := true
	if v := present(f, "name"); v != nil {
		p.Name, ok = d.portName(v, p.namePath, false)
		p.name = v
	}
	if v := d.required(n, f, "port", p.numberPath); v == nil {
		ok = false
	} else {
		var nok bool
		p.Port.Port, nok = d.portNumber(v, p.numberPath)
		p.number = v
		ok = ok && nok
	}
	if v := present(f, "protocol"); v != nil {
		ppath := child(path, "protocol")
		s, sok := d.str(v, ppath, "protocol")
		switch up := strings.ToUpper(s); {
		case !sok:
			ok = false
		case up == TCP, up == UDP, up == SCTP:
			p.Protocol = up
		default:
			d.errorf(v, ppath, "unknown protocol %q (want TCP, UDP or SCTP)", s)
			ok = false
		}
	}
	return p, ok
}

// portName decodes a port's name; asKey says it is a key of the mapping
// form, where `8080: 8080` is a likely slip for an unnamed port.
func (d *decoder) portName(n *yaml.Node, path string, asKey bool) (string, bool) {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!int" {
		hint := ""
		if asKey {
			hint = " (list a port without a name as - port: " + n.Value + ")"
		}
		d.errorf(n, path, "port name must be a name such as \"http\", got a number%s", hint)
		return "", false
	}
	s, ok := d.str(n, path, "port name")
	if !ok {
		return "", false
	}
	if s == "" {
		d.errorf(n, path, "must not be empty (leave name out for an unnamed port)")
		return "", false
	}
	if why := portName(s); why != "" {
		d.errorf(n, path, "invalid port name %q: %s", s, why)
		return "", false
	}
	return s, true
}

func (d *decoder) portNumber(n *yaml.Node, path string) (uint16, bool) {
	if d.alias(n, path) {
		return 0, false
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		d.errorf(n, path, "port must be a number 1–65535, got %s", describe(n))
		return 0, false
	}
	var v int64
	if err := n.Decode(&v); err != nil || v < 1 || v > 65535 {
		d.errorf(n, path, "port %s is outside 1–65535", n.Value)
		return 0, false
	}
	return uint16(v), true
}

// portClashes reports a port name used twice, a number used twice with one
// protocol (two listeners cannot share it), and, if reserve, the agent's
// ports.
func (d *decoder) portClashes(ports []portAt, reserve bool) {
	names := map[string]portAt{}
	numbers := map[string]portAt{}
	for _, p := range ports {
		if p.name != nil {
			if first, dup := names[p.Name]; dup {
				d.errorf(p.name, p.namePath, "duplicate port name %q (first at line %d)", p.Name, first.name.Line)
			} else {
				names[p.Name] = p
			}
		}
		key := fmt.Sprintf("%d/%s", p.Port.Port, p.Protocol)
		if first, dup := numbers[key]; dup {
			d.errorf(p.number, p.numberPath, "duplicate port %s (first at line %d)", key, first.number.Line)
		} else {
			numbers[key] = p
		}
		if reserve && p.Port.Port >= AgentPortsFirst && p.Port.Port <= AgentPortsLast {
			d.errorf(p.number, p.numberPath, "port %d is reserved for the ztcn agent (%d–%d)", p.Port.Port, AgentPortsFirst, AgentPortsLast)
		}
	}
}
