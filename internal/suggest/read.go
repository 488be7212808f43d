package suggest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/ztcn/ztcn/internal/telemetry"
)

// Observed is traffic read from flow files, audit logs and the agent: the
// input of Suggest.
type Observed struct {
	Flows []telemetry.Flow
	// Ignored counts audit log events that are not about a flow
	// (certificate issuance, rotation and revocation, policy reloads).
	Ignored int
}

// Add appends flows, e.g. those the agent's control API returned.
func (o *Observed) Add(flows ...telemetry.Flow) { o.Flows = append(o.Flows, flows...) }

// Read appends the flows of one input; name is used in errors. The input
// is either
//
//   - JSON lines, each a telemetry.Flow (what `ztcn flows -o json`
//     prints) or an ECS audit log event (the agent's telemetry.audit_log),
//     mixed freely; or
//   - one JSON array of such objects (what GET /v1/flows answers).
//
// An object is an audit event when it has "@timestamp" or "event" keys.
// Audit events are read as ECS, nested objects and dotted keys
// ("source.ip") alike:
//
//	@timestamp, event.start, event.end   start and end of the flow
//	event.action                         which event: see below
//	event.outcome, event.type            the verdict, if nothing more precise says it
//	source.ip, source.port               the client
//	destination.ip, destination.port     the server
//	network.transport                    tcp (default), udp, sctp, icmp
//	network.direction                    egress|outbound or ingress|inbound
//	ztcn.source.spiffe_id, .labels       the client workload, and optionally
//	  .namespace, .name, .service_account  (else read from the SPIFFE ID, see Suggest)
//	ztcn.destination.…                   the same for the server
//	ztcn.verdict, ztcn.enforced          the verdict, and whether it was enforced
//
// Only flow events are flows. Events whose action names a certificate,
// an SVID or a reload (certificate-issued, policy-reload, …) are counted
// in Ignored; failed handshakes and refused plaintext are read as flows
// of that kind, which Suggest skips as no policy decision. The verdict is
// ztcn.verdict; else "deny" for an action that names a violation or
// denial (policy-violation, policy-violation-audit), "allow" for one that
// names an allowed or closed flow; else event.type (denied, allowed); else
// event.outcome (success allow, failure deny). Enforced is ztcn.enforced;
// else false for a would-be action (…-audit) or a denial whose outcome is success
// (the flow went through: audit mode); else true.
//
// The agent's audit log records violations only (enforced and would-be),
// not allowed flows.
func (o *Observed) Read(name string, r io.Reader) error {
	br := bufio.NewReaderSize(r, 64<<10)
	first, err := firstNonSpace(br)
	if errors.Is(err, io.EOF) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if first == '[' {
		var items []json.RawMessage
		dec := json.NewDecoder(br)
		if err := dec.Decode(&items); err != nil {
			return fmt.Errorf("%s: JSON array: %w", name, err)
		}
		for i, raw := range items {
			if err := o.add(raw); err != nil {
				return fmt.Errorf("%s: item %d: %w", name, i+1, err)
			}
		}
		if _, err := dec.Token(); !errors.Is(err, io.EOF) {
			return fmt.Errorf("%s: content after the JSON array", name)
		}
		return nil
	}
	for line := 1; ; line++ {
		b, err := br.ReadBytes('\n')
		if t := bytes.TrimSpace(b); len(t) > 0 {
			if aerr := o.add(t); aerr != nil {
				if t[0] == '{' && !json.Valid(t) {
					aerr = fmt.Errorf("%w (want one JSON object per line, or one JSON array)", aerr)
				}
				return fmt.Errorf("%s:%d: %w", name, line, aerr)
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s:%d: %w", name, line, err)
		}
	}
}

func firstNonSpace(br *bufio.Reader) (byte, error) {
	for {
		b, err := br.ReadByte()
		if err != nil {
			return 0, err
		}
		switch b {
		case ' ', '\t', '\r', '\n':
			continue
		}
		return b, br.UnreadByte()
	}
}

// add reads one JSON object: a flow or an audit event.
func (o *Observed) add(raw []byte) error {
	var obj map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&obj); err != nil {
		return fmt.Errorf("not a JSON object: %w", err)
	}
	if isECS(obj) {
		f, ok, err := ecsFlow(obj)
		if err != nil {
			return fmt.Errorf("audit event: %w", err)
		}
		if !ok {
			o.Ignored++
			return nil
		}
		o.Flows = append(o.Flows, f)
		return nil
	}
	if _, ok := obj["source"]; !ok {
		return errors.New(`neither a flow (no "source"; want what ztcn flows -o json prints) nor an ECS audit event (no "@timestamp")`)
	}
	var f telemetry.Flow
	if err := json.Unmarshal(raw, &f); err != nil {
		return fmt.Errorf("flow: %w", err)
	}
	o.Flows = append(o.Flows, f)
	return nil
}

func isECS(obj map[string]any) bool {
	for k := range obj {
		if k == "@timestamp" || k == "event" || strings.HasPrefix(k, "event.") {
			return true
		}
	}
	return false
}

// ecsFlow reads an audit event; ok is false for an event that is not
// about a flow.
func ecsFlow(obj map[string]any) (telemetry.Flow, bool, error) {
	e := ecsEvent(obj)
	action := strings.ToLower(e.str("event.action"))
	var f telemetry.Flow
	switch {
	case containsAny(action, "cert", "svid", "reload", "issued", "rotated"),
		action == "revoked":
		return f, false, nil
	case containsAny(action, "handshake"):
		f.Kind = "handshake_failed"
	case containsAny(action, "plaintext"):
		f.Kind = "plaintext_refused"
	}
	_, hasDst := e.get("destination.ip")
	_, hasPort := e.get("destination.port")
	if !hasDst && !hasPort {
		return f, false, nil // not a flow: nothing says where it went
	}

	var err error
	if f.Start, err = e.time("@timestamp", f.Start); err != nil {
		return f, false, err
	}
	if f.Start, err = e.time("event.start", f.Start); err != nil {
		return f, false, err
	}
	if f.End, err = e.time("event.end", f.End); err != nil {
		return f, false, err
	}
	for _, side := range []struct {
		ecs string
		p   *telemetry.Peer
	}{{"source", &f.Source}, {"destination", &f.Dest}} {
		if err := e.peer(side.ecs, side.p); err != nil {
			return f, false, err
		}
	}
	if s := e.str("network.transport"); s != "" {
		f.Protocol = strings.ToUpper(s)
	}
	switch strings.ToLower(e.str("network.direction")) {
	case "outbound", "egress":
		f.Direction = "outbound"
	case "inbound", "ingress":
		f.Direction = "inbound"
	}
	if s := e.str("ztcn.direction"); s != "" {
		f.Direction = s
	}
	for _, k := range []string{"observer.hostname", "host.name", "ztcn.node"} {
		if s := e.str(k); s != "" {
			f.Node = s
		}
	}
	if s := e.str("ztcn.pod"); s != "" {
		f.Pod = s
	}
	if s := e.str("ztcn.rule"); s != "" {
		f.Rule = s
	}
	if s := e.str("event.reason"); s != "" {
		f.Reason = s
	}
	if s := e.str("error.message"); s != "" {
		f.Error = s
	}

	outcome := strings.ToLower(e.str("event.outcome"))
	switch v := strings.ToLower(e.str("ztcn.verdict")); {
	case v == telemetry.VerdictAllow || v == telemetry.VerdictDeny:
		f.Verdict = v
	case containsAny(action, "violation", "denied", "deny"):
		f.Verdict = telemetry.VerdictDeny
	case containsAny(action, "allow", "closed", "opened", "accepted"):
		f.Verdict = telemetry.VerdictAllow
	case e.has("event.type", "denied"):
		f.Verdict = telemetry.VerdictDeny
	case e.has("event.type", "allowed"):
		f.Verdict = telemetry.VerdictAllow
	case outcome == "success":
		f.Verdict = telemetry.VerdictAllow
	case outcome == "failure":
		f.Verdict = telemetry.VerdictDeny
	}
	if b, ok := e.bool("ztcn.enforced"); ok {
		f.Enforced = b
	} else {
		f.Enforced = !(strings.Contains(action, "would") || strings.HasSuffix(action, "-audit") || f.Verdict == telemetry.VerdictDeny && outcome == "success")
	}
	if f.Kind == "" {
		switch f.Verdict {
		case telemetry.VerdictDeny:
			f.Kind = "denied"
		case telemetry.VerdictAllow:
			f.Kind = "flow_closed"
		}
	}
	return f, true, nil
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// ecsEvent looks fields up by their dotted ECS name in an event that may
// nest objects, use dotted keys, or mix both.
type ecsEvent map[string]any

func (e ecsEvent) get(path string) (any, bool) {
	return lookup(e, strings.Split(path, "."))
}

func lookup(m map[string]any, path []string) (any, bool) {
	for i := len(path); i >= 1; i-- {
		v, ok := m[strings.Join(path[:i], ".")]
		if !ok {
			continue
		}
		if i == len(path) {
			return v, true
		}
		if sub, ok := v.(map[string]any); ok {
			if r, ok := lookup(sub, path[i:]); ok {
				return r, true
			}
		}
	}
	return nil, false
}

func (e ecsEvent) str(path string) string {
	v, ok := e.get(path)
	if !ok {
		return ""
	}
	switch v := v.(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	case bool:
		return strconv.FormatBool(v)
	}
	return ""
}

func (e ecsEvent) bool(path string) (bool, bool) {
	v, ok := e.get(path)
	if !ok {
		return false, false
	}
	switch v := v.(type) {
	case bool:
		return v, true
	case string:
		b, err := strconv.ParseBool(v)
		return b, err == nil
	}
	return false, false
}

// has reports whether the field (a string or list of strings) holds want.
func (e ecsEvent) has(path, want string) bool {
	v, ok := e.get(path)
	if !ok {
		return false
	}
	switch v := v.(type) {
	case string:
		return strings.EqualFold(v, want)
	case []any:
		for _, x := range v {
			if s, ok := x.(string); ok && strings.EqualFold(s, want) {
				return true
			}
		}
	}
	return false
}

func (e ecsEvent) time(path string, def time.Time) (time.Time, error) {
	s := e.str(path)
	if s == "" {
		return def, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return def, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// flatLabels collects labels written as top-level dotted keys
// ("ztcn.source.labels.app"), or returns nil.
func (e ecsEvent) flatLabels(prefix string) map[string]any {
	var m map[string]any
	for k, v := range e {
		if name, ok := strings.CutPrefix(k, prefix); ok && name != "" {
			if m == nil {
				m = map[string]any{}
			}
			m[name] = v
		}
	}
	return m
}

// peer fills p from source.* / destination.* and ztcn.source.* /
// ztcn.destination.*.
func (e ecsEvent) peer(side string, p *telemetry.Peer) error {
	if s := e.str(side + ".ip"); s != "" {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return fmt.Errorf("%s.ip: %w", side, err)
		}
		p.IP = ip
	}
	if s := e.str(side + ".port"); s != "" {
		port, err := strconv.ParseUint(s, 10, 16)
		if err != nil {
			return fmt.Errorf("%s.port %q: want 0–65535", side, s)
		}
		p.Port = uint16(port)
	}
	z := "ztcn." + side + "."
	for _, f := range []struct {
		key string
		dst *string
	}{{"spiffe_id", &p.SPIFFEID}, {"namespace", &p.Namespace}, {"name", &p.Name}, {"service_account", &p.ServiceAccount}} {
		if s := e.str(z + f.key); s != "" {
			*f.dst = s
		}
	}
	if v, ok := e.get(z + "labels"); ok || e.flatLabels(z+"labels.") != nil {
		m, isMap := v.(map[string]any)
		switch {
		case !ok:
			m = e.flatLabels(z + "labels.")
		case !isMap:
			return fmt.Errorf("%slabels: want an object of label values", z)
		}
		p.Labels = make(map[string]string, len(m))
		for k, v := range m {
			switch v := v.(type) {
			case string:
				p.Labels[k] = v
			case json.Number:
				p.Labels[k] = v.String()
			case bool:
				p.Labels[k] = strconv.FormatBool(v)
			default:
				return fmt.Errorf("%slabels.%s: want a string", z, k)
			}
		}
	}
	return nil
}
