package podspec

import (
	"net/netip"
	"slices"
	"strconv"

	"github.com/ztcn/ztcn/internal/dataplane/redirect"
)

// File is a parsed pods file. Every value in it has been validated.
type File struct {
	// Path is the name given to Parse, or the path given to Load.
	Path      string
	Pods      []Pod
	Externals []External
}

// Position is where something is written, counting lines and columns
// from 1 as yaml.v3 does.
type Position struct{ Line, Col int }

// String formats p as "line:col".
func (p Position) String() string {
	return strconv.Itoa(p.Line) + ":" + strconv.Itoa(p.Col)
}

// Defaults of the optional pod fields, as in Kubernetes.
const (
	DefaultNamespace      = "default"
	DefaultServiceAccount = "default"
)

// Pod is one workload in the mesh.
type Pod struct {
	Pos            Position // of the pod's mapping
	Name           string   // DNS-1123 label, unique among pods and externals
	Namespace      string   // DNS-1123 label; DefaultNamespace if omitted
	ServiceAccount string   // DNS-1123 subdomain; DefaultServiceAccount if omitted
	Node           string   // DNS-1123 label, or "" to let the runtime choose
	Labels         map[string]string
	Ports          []Port
	// Command is the program and its arguments, never empty; a string in
	// the file becomes ["/bin/sh", "-c", string].
	Command []string
	Env     map[string]string // names match [A-Za-z_][A-Za-z0-9_]*
}

// External is a workload outside the mesh on a named external network (a
// metrics collector, say): it runs a command in its own namespace with a
// fixed address, and is not registered with the agent, so it has no
// identity and its traffic is not redirected.
type External struct {
	Pos     Position   // of the external's mapping
	Name    string     // as Pod.Name, unique among pods and externals
	Address netip.Addr // unicast IPv4
	Ports   []Port
	Command []string // as Pod.Command
	Env     map[string]string
}

// Port is a port a workload listens on.
type Port struct {
	// Name is an IANA service name, or "" for a port listed without one.
	Name     string
	Port     uint16 // 1–65535
	Protocol string // "TCP", "UDP" or "SCTP"
}

// Protocols a port may use, as Kubernetes spells them.
const (
	TCP  = "TCP"
	UDP  = "UDP"
	SCTP = "SCTP"
)

// The ztcn agent listens inside every pod (15001 outbound, 15006 inbound
// plaintext, 15008 HBONE; see internal/dataplane/redirect), so an
// application port there would be captured or shadowed. The whole block is
// reserved so that the agent can add listeners (15020 is its admin port)
// without breaking existing pods files.
const (
	AgentPortsFirst = redirect.AgentPortsFirst
	AgentPortsLast  = redirect.AgentPortsLast
)

// Nodes returns the distinct nodes pods ask for, sorted.
func (f *File) Nodes() []string {
	var nodes []string
	for _, p := range f.Pods {
		if p.Node != "" && !slices.Contains(nodes, p.Node) {
			nodes = append(nodes, p.Node)
		}
	}
	slices.Sort(nodes)
	return nodes
}

// PortNamed returns the pod's port called name.
func (p *Pod) PortNamed(name string) (Port, bool) { return portNamed(p.Ports, name) }

// PortNamed returns the external's port called name.
func (x *External) PortNamed(name string) (Port, bool) { return portNamed(x.Ports, name) }

func portNamed(ports []Port, name string) (Port, bool) {
	if name == "" {
		return Port{}, false
	}
	for _, p := range ports {
		if p.Name == name {
			return p, true
		}
	}
	return Port{}, false
}
