package telemetry

import (
	"regexp"
	"strings"
	"time"
)

// ecsVersion is the Elastic Common Schema release whose field definitions
// the audit log follows; ELK uses it to pick mappings.
const ecsVersion = "8.11.0"

// ecsDoc is one audit line. Structs, not maps, so that every line has the
// same key order and a reader (or a diff) finds fields in the same place.
// The chain comes last so that the event reads first.
type ecsDoc struct {
	Timestamp   string       `json:"@timestamp"`
	ECS         ecsECS       `json:"ecs"`
	Event       ecsEvent     `json:"event"`
	Observer    ecsObserver  `json:"observer"`
	Source      *ecsEndpoint `json:"source,omitempty"`
	Destination *ecsEndpoint `json:"destination,omitempty"`
	Network     *ecsNetwork  `json:"network,omitempty"`
	Rule        *ecsRule     `json:"rule,omitempty"`
	X509        *ecsX509     `json:"x509,omitempty"`
	Error       *ecsError    `json:"error,omitempty"`
	Ztcn        ztcnFields   `json:"ztcn"`
}

type ecsECS struct {
	Version string `json:"version"`
}

type ecsEvent struct {
	Kind     string   `json:"kind"`
	Category []string `json:"category,omitempty"`
	Type     []string `json:"type,omitempty"`
	Action   string   `json:"action"`
	Outcome  string   `json:"outcome,omitempty"`
	Reason   string   `json:"reason,omitempty"`
	Dataset  string   `json:"dataset"`
}

type ecsObserver struct {
	Hostname string `json:"hostname,omitempty"`
	Type     string `json:"type"`
}

type ecsEndpoint struct {
	IP   string `json:"ip,omitempty"`
	Port uint16 `json:"port,omitempty"`
}

type ecsNetwork struct {
	Transport string `json:"transport,omitempty"`
	Type      string `json:"type,omitempty"`
	Direction string `json:"direction,omitempty"`
}

type ecsRule struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
}

// ecsX509 is ECS's x509 field set. ECS nests it under file.* or
// tls.client/server.*; an issued SVID is neither a file nor one TLS
// session, so it sits at the top level, under the field names ECS defines.
type ecsX509 struct {
	SerialNumber     string   `json:"serial_number,omitempty"`
	NotAfter         string   `json:"not_after,omitempty"`
	AlternativeNames []string `json:"alternative_names,omitempty"`
}

type ecsError struct {
	Message string `json:"message"`
}

// ztcnFields is what ECS has no field for: workload identities, whether
// the verdict was enforced, the policy version, and the hash chain.
type ztcnFields struct {
	FlowID      uint64      `json:"flow_id,omitempty"`
	Source      *ztcnPeer   `json:"source,omitempty"`
	Destination *ztcnPeer   `json:"destination,omitempty"`
	Enforced    *bool       `json:"enforced,omitempty"`
	StagedRule  string      `json:"staged_rule,omitempty"`
	Policy      *ztcnPolicy `json:"policy,omitempty"`
	Chain       auditChain  `json:"chain"`
}

type ztcnPeer struct {
	SPIFFEID string            `json:"spiffe_id,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
}

type ztcnPolicy struct {
	Version uint64 `json:"version"`
	Digest  string `json:"digest,omitempty"`
}

// ecsClass is how ECS categorizes one action. The values are ECS's allowed
// ones: network events may be typed connection/allowed/denied;
// certificates are identity credentials, so they go to iam (which allows
// creation/change/deletion) rather than mixing with policy reloads under
// configuration.
type ecsClass struct {
	kind, category, outcome string
	types                   []string
}

func classify(e AuditEvent) ecsClass {
	switch e.Action {
	case ActionPolicyViolation, ActionHandshakeFailed, ActionPlaintextRefused:
		return ecsClass{"alert", "network", "failure", []string{"connection", "denied"}}
	case ActionWouldBeViolation:
		// The connection went through: typing it "denied" would make SIEM
		// rules that count blocks count connections that were not blocked.
		return ecsClass{"alert", "network", "success", []string{"connection", "allowed"}}
	case ActionCertIssued:
		return ecsClass{"event", "iam", "success", []string{"creation"}}
	case ActionCertRotated:
		return ecsClass{"event", "iam", "success", []string{"change"}}
	case ActionCertRevoked:
		return ecsClass{"event", "iam", "success", []string{"deletion"}}
	case ActionPolicyReload:
		outcome := "success"
		if e.Error != "" {
			outcome = "failure"
		}
		return ecsClass{"event", "configuration", outcome, []string{"change"}}
	}
	// An action this version does not know is still recorded, uncategorized.
	return ecsClass{kind: "event"}
}

// renderECS turns an event into its audit line, without the chain.
func renderECS(e AuditEvent, node string) ecsDoc {
	c := classify(e)
	d := ecsDoc{
		Timestamp: e.Time.UTC().Format(time.RFC3339Nano),
		ECS:       ecsECS{Version: ecsVersion},
		Event: ecsEvent{
			Kind:    c.kind,
			Action:  e.Action,
			Outcome: c.outcome,
			Reason:  e.Reason,
			Dataset: "ztcn.audit",
		},
	}
	if c.category != "" {
		d.Event.Category = []string{c.category}
		d.Event.Type = c.types
	}
	if e.Outcome != "" {
		d.Event.Outcome = e.Outcome
	}
	if e.Flow != nil {
		if e.Flow.Node != "" {
			node = e.Flow.Node
		}
		renderFlow(&d, e)
	}
	if e.Node != "" {
		node = e.Node
	}
	d.Observer = ecsObserver{Hostname: node, Type: "ztcn agent"}
	if e.SPIFFEID != "" || e.Serial != "" || !e.NotAfter.IsZero() {
		x := &ecsX509{SerialNumber: ecsSerial(e.Serial)}
		if !e.NotAfter.IsZero() {
			x.NotAfter = e.NotAfter.UTC().Format(time.RFC3339Nano)
		}
		if e.SPIFFEID != "" {
			x.AlternativeNames = []string{e.SPIFFEID}
		}
		d.X509 = x
	}
	if e.Action == ActionPolicyReload {
		d.Ztcn.Policy = &ztcnPolicy{Version: e.PolicyVersion, Digest: e.PolicyDigest}
	}
	if e.Error != "" {
		d.Error = &ecsError{Message: e.Error}
	}
	return d
}

func renderFlow(d *ecsDoc, e AuditEvent) {
	f := e.Flow
	d.Source, d.Ztcn.Source = renderPeer(f.Source)
	d.Destination, d.Ztcn.Destination = renderPeer(f.Dest)
	d.Network = &ecsNetwork{Transport: strings.ToLower(f.Protocol), Direction: ecsDirection(f.Direction)}
	if d.Network.Transport == "" {
		d.Network.Transport = "tcp"
	}
	if ip := f.Source.IP; ip.IsValid() {
		d.Network.Type = "ipv4"
		if ip.Is6() && !ip.Is4In6() {
			d.Network.Type = "ipv6"
		}
	}
	d.Ztcn.FlowID = f.ID
	d.Ztcn.StagedRule = f.StagedRule

	// The rule that found the violation: the staged policy's when only the
	// staged policy denies, otherwise the one in force.
	rule, reason := f.Rule, f.Reason
	if e.Action == ActionWouldBeViolation && f.Verdict != VerdictDeny && f.StagedVerdict == VerdictDeny {
		rule, reason = f.StagedRule, f.StagedReason
	}
	if rule != "" {
		name, text := splitRule(rule)
		d.Rule = &ecsRule{Name: name, Description: text}
	}
	if d.Event.Reason == "" {
		d.Event.Reason = reason
	}
	enforced := f.Enforced && e.Action != ActionWouldBeViolation
	d.Ztcn.Enforced = &enforced
	if e.Error == "" && f.Error != "" {
		d.Error = &ecsError{Message: f.Error}
	}
}

func renderPeer(p Peer) (*ecsEndpoint, *ztcnPeer) {
	ep := &ecsEndpoint{Port: p.Port}
	if p.IP.IsValid() {
		ep.IP = p.IP.Unmap().String()
	}
	var z *ztcnPeer
	if p.SPIFFEID != "" || len(p.Labels) > 0 {
		z = &ztcnPeer{SPIFFEID: p.SPIFFEID, Labels: p.Labels}
	}
	return ep, z
}

// ecsDirection maps the data plane's direction to ECS's host-centric
// values, which ECS asks for when the observer is on the host.
func ecsDirection(d string) string {
	switch d {
	case "outbound":
		return "egress"
	case "inbound":
		return "ingress"
	}
	return ""
}

// ecsSerial formats a serial as ECS asks: hex without colons, upper case,
// so the same certificate is found whatever tool printed its serial.
func ecsSerial(s string) string {
	return strings.ToUpper(strings.ReplaceAll(s, ":", ""))
}

// ruleRef is a rule position "file:line:col" followed by ": " and the
// rule's text, as the policy engine formats a deciding rule.
var ruleRef = regexp.MustCompile(`^(.+?:\d+:\d+): (.*)$`)

// splitRule splits "file:line:col: text" into rule.name and
// rule.description; a rule in another form is all name.
func splitRule(rule string) (name, text string) {
	if m := ruleRef.FindStringSubmatch(rule); m != nil {
		return m[1], m[2]
	}
	return rule, ""
}
