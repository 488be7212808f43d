package redirect

// The special numbers of in-pod redirection, defined once (ztunnel keeps
// them in inpod/config.rs). The listeners, the socket options of the agent
// and the nftables rules all read them from here, so a port or a mark can
// never disagree between the proxy and the rules that feed it.
const (
	// OutboundPort is where the pod's outbound TCP is redirected: the agent
	// listens on 127.0.0.1:15001 inside the pod.
	OutboundPort = 15001
	// InboundPlaintextPort is where inbound TCP that is not HBONE lands:
	// the agent listens on :15006 inside the pod.
	InboundPlaintextPort = 15006
	// AgentPortsFirst and AgentPortsLast bound the ports the agent may use
	// inside a pod; workloads must not listen there (ztcn up refuses pod
	// ports in this range), and HBONE never tunnels to them.
	AgentPortsFirst = 15000
	AgentPortsLast  = 15099
	// InboundHBONEPort is the HBONE (mTLS + HTTP/2 CONNECT) listener on the
	// pod's IP. It is the only inbound port not redirected.
	InboundHBONEPort = 15008

	// BypassMark is the SO_MARK the agent sets on its own sockets inside a
	// pod so the rules never redirect them. Setting SO_MARK needs
	// CAP_NET_ADMIN, so the application cannot forge it.
	BypassMark = 0x539
	// ConnMark is stored in the conntrack mark of connections the agent
	// opens to the application and copied back onto the application's
	// replies, which the policy route then delivers to the agent's
	// transparent socket instead of sending them out of the pod.
	ConnMark = 0x111
	// MarkMask is the part of the packet and conntrack marks ztcn owns; the
	// bits above it are left to whoever else uses marks in the pod.
	MarkMask = 0xfff

	// RouteTable holds the single route "local 0.0.0.0/0 dev lo".
	RouteTable = 100
	// RulePriority is the priority of "ip rule fwmark 0x111/0xfff lookup
	// 100": just before the main table (32766), like ztunnel.
	RulePriority = 32764

	// TableName is the nftables table (family ip) that redirects TCP to the
	// agent and filters non-TCP traffic.
	TableName = "ztcn"
	// GuardTableName is the independent backstop table (family inet): it
	// refuses whatever TCP the main table should have redirected and did
	// not, and everything IPv6, so losing the main table alone never lets
	// plaintext leave or enter the pod.
	GuardTableName = "ztcn-guard"
)
