package dataplane

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/ztcn/ztcn/internal/dataplane/hbone"
	"github.com/ztcn/ztcn/internal/dataplane/redirect"
	"github.com/ztcn/ztcn/internal/policy"
)

// outbound handles a connection the pod's application opened, redirected
// to 15001: decide, then tunnel to a workload over HBONE or connect to an
// outside address directly.
func (p *podProxy) outbound(c *net.TCPConn) {
	dp := p.dp
	client := addrPortOf(c.RemoteAddr())
	dst, err := redirect.OriginalDst(c)
	if err != nil {
		reset(c)
		return
	}
	snap := dp.cfg.Policy()
	dstEP := dp.endpointAt(dst.Addr())
	srcSub := p.subjectFor(snap.Index)
	v := snap.Index.Decide(srcSub, dp.subjectOf(snap.Index, dstEP), policy.TCP, dst.Port())
	ev := Event{Direction: Outbound, Source: client, Dest: dst, SourceID: p.pod.Endpoint.SPIFFEID, DestID: dstEP.SPIFFEID,
		SourceEP: p.pod.Endpoint, DestEP: dstEP,
		Allowed: v.Allowed, Enforced: dp.cfg.Mode != Audit, Reason: v.Reason.String(), Rule: ruleText(snap.Index, v)}
	p.staged(snap, &ev, p.pod.Endpoint, dstEP, dst.Port(), v)
	if !v.Allowed {
		ev.Kind = EventDenied
		p.emit(ev)
		if dp.cfg.Mode != Audit {
			reset(c)
			return
		}
	}
	connectStart := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), dp.cfg.ConnectTimeout)
	defer cancel()
	if !dstEP.Workload {
		up, err := dial(ctx, p.in, netip.AddrPort{}, dst, dp.cfg.ConnectTimeout)
		ev.Connect = time.Since(connectStart)
		if err != nil {
			p.upstreamFailed(c, ev, err)
			return
		}
		p.track(c, ev, srcSub.Endpoint(), dstEP).pump(up)
		return
	}
	// The stream is opened optimistically: the application's first bytes
	// follow the CONNECT at once instead of a round trip later, and the
	// flow counts as opened only when the destination agrees (its policy
	// allowed the source and the application was reached).
	f := p.track(c, ev, srcSub.Endpoint(), dstEP)
	up, err := dp.pool.Open(ctx, hbone.Source{Key: p.pod.UID, SVID: p.pod.SVID, Dial: p.dialMarked},
		hbone.Destination{Addr: netip.AddrPortFrom(dst.Addr(), redirect.InboundHBONEPort), ID: idOf(dstEP.SPIFFEID)},
		dst, client)
	if err != nil {
		f.untrack()
		ev.Connect = time.Since(connectStart)
		p.upstreamFailed(c, ev, err)
		return
	}
	f.pumpConnecting(up, func() error {
		err := up.Connect(ctx)
		f.answered(err, time.Since(connectStart))
		return err
	})
}

// upstreamFailed reports a flow whose destination could not be reached or
// refused it, and resets the application's connection.
func (p *podProxy) upstreamFailed(c *net.TCPConn, ev Event, err error) {
	ev.Kind, ev.Err = EventUpstreamFailed, err.Error()
	var se *hbone.StatusError
	if errors.As(err, &se) && se.Denied() {
		ev.Kind, ev.Allowed, ev.Reason = EventDenied, false, "denied by the destination's ingress policy"
	}
	p.emit(ev)
	reset(c)
}

// dialMarked opens the TCP connection to a remote HBONE server from inside
// the pod, with the bypass mark: it leaves with the pod's own address.
func (p *podProxy) dialMarked(ctx context.Context, addr netip.AddrPort) (net.Conn, error) {
	return dial(ctx, p.in, netip.AddrPort{}, addr, p.dp.cfg.ConnectTimeout)
}

// authorizeHBONE decides an inbound CONNECT with the verified peer
// identity and dials the application with the peer's address as source.
func (p *podProxy) authorizeHBONE(_ context.Context, req *hbone.Request) (hbone.DialFunc, error) {
	if req.Target.Addr() != p.pod.IP {
		return nil, hbone.ErrForeignTarget
	}
	// The agent's own ports in the pod are not the application's: a
	// CONNECT to them would tunnel into the agent itself.
	if port := req.Target.Port(); port >= redirect.AgentPortsFirst && port <= redirect.AgentPortsLast {
		return nil, hbone.ErrForeignTarget
	}
	src := req.ForwardedFor
	if !src.IsValid() {
		src = req.Remote
	}
	// The peer was verified when its connection was made; the connection
	// may be minutes old and carry many streams. A certificate revoked,
	// expired or distrusted since then gets no new stream.
	if err := p.dp.cfg.Verifier.StillValid(req.Peer); err != nil {
		p.emit(Event{Kind: EventDenied, Direction: Inbound, Source: src, Dest: req.Target, SourceID: req.Peer.ID.String(),
			DestID: p.pod.Endpoint.SPIFFEID, DestEP: p.pod.Endpoint, Enforced: true, Reason: "peer certificate no longer valid", Err: err.Error()})
		return nil, hbone.ErrDenied
	}
	snap := p.dp.cfg.Policy()
	srcEP := p.dp.peerEndpointOf(req.Peer, src.Addr())
	v := snap.Index.Decide(p.dp.subjectOf(snap.Index, srcEP), p.subjectFor(snap.Index), policy.TCP, req.Target.Port())
	sev := Event{Direction: Inbound, Source: src, Dest: req.Target, SourceID: srcEP.SPIFFEID, DestID: p.pod.Endpoint.SPIFFEID,
		SourceEP: p.dp.describe(srcEP), DestEP: p.pod.Endpoint, Allowed: v.Allowed, Enforced: p.dp.cfg.Mode != Audit, Reason: v.Reason.String(), Rule: ruleText(snap.Index, v)}
	p.staged(snap, &sev, srcEP, p.pod.Endpoint, req.Target.Port(), v)
	if !v.Allowed {
		p.emit(Event{Kind: EventDenied, Direction: Inbound, Source: src, Dest: req.Target, SourceID: srcEP.SPIFFEID,
			SourceEP: p.dp.describe(srcEP), DestEP: p.pod.Endpoint,
			DestID: p.pod.Endpoint.SPIFFEID, Enforced: p.dp.cfg.Mode != Audit, Reason: v.Reason.String(), Rule: ruleText(snap.Index, v)})
		if p.dp.cfg.Mode != Audit {
			return nil, hbone.ErrDenied
		}
	}
	return p.appDialer(src.Addr(), req.Target), nil
}

// appDialer connects to the application inside the pod with the client's
// address as source, so the application sees who really called.
func (p *podProxy) appDialer(client netip.Addr, target netip.AddrPort) hbone.DialFunc {
	return func(ctx context.Context) (net.Conn, error) {
		var src netip.AddrPort
		if client.Is4() && client != p.pod.IP && !client.IsLoopback() {
			src = netip.AddrPortFrom(client, 0)
		}
		return dial(ctx, p.in, src, target, p.dp.cfg.ConnectTimeout)
	}
}

// plaintext handles an inbound connection that did not come over HBONE.
func (p *podProxy) plaintext(c *net.TCPConn) {
	dp := p.dp
	client := addrPortOf(c.RemoteAddr())
	dst, err := redirect.OriginalDst(c)
	if err != nil {
		reset(c)
		return
	}
	ev := Event{Direction: Inbound, Source: client, Dest: dst, DestID: p.pod.Endpoint.SPIFFEID, Enforced: dp.cfg.Mode != Audit,
		SourceEP: dp.outsideEndpointOf(client.Addr()), DestEP: p.pod.Endpoint}
	if dp.cfg.Mode == Strict {
		ev.Kind, ev.Reason = EventPlaintextRefused, "plaintext refused in strict mode (peer not authenticated)"
		p.emit(ev)
		reset(c)
		return
	}
	// An unauthenticated peer is judged by its address alone, whatever
	// workload it claims to be.
	snap := dp.cfg.Policy()
	srcEP := dp.outsideEndpointOf(client.Addr())
	v := snap.Index.Decide(dp.subjectOf(snap.Index, srcEP), p.subjectFor(snap.Index), policy.TCP, dst.Port())
	ev.Allowed, ev.Reason, ev.Rule = v.Allowed, v.Reason.String(), ruleText(snap.Index, v)
	p.staged(snap, &ev, srcEP, p.pod.Endpoint, dst.Port(), v)
	if !v.Allowed {
		ev.Kind = EventDenied
		p.emit(ev)
		if dp.cfg.Mode != Audit {
			reset(c)
			return
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), dp.cfg.ConnectTimeout)
	up, err := p.appDialer(client.Addr(), dst)(ctx)
	cancel()
	if err != nil {
		p.upstreamFailed(c, ev, err)
		return
	}
	p.track(c, ev, srcEP, p.pod.Endpoint).pump(up)
}

// flow is a connection the data plane carries, kept so that a new policy
// can be checked against it.
type flow struct {
	pod      *podProxy
	c        *net.TCPConn // the application's end
	ev       Event        // the decision, completed as the flow goes
	src, dst *policy.Endpoint
	port     uint16
	inbound  bool
	ctx      context.Context
	cancel   context.CancelFunc
	done     chan struct{} // closed when the pump has closed both sides
	revoked  bool          // guarded by DataPlane.flowsMu
	refused  error         // why the destination refused it (set by the pump's own goroutine)

	// Set when the pump ended.
	out, in  int64
	duration time.Duration
}

// track registers a flow about to be pumped, so that Recheck sees it from
// its first byte on.
func (p *podProxy) track(c *net.TCPConn, ev Event, src, dst *policy.Endpoint) *flow {
	ctx, cancel := context.WithCancel(context.Background())
	f := &flow{pod: p, c: c, ev: ev, src: src, dst: dst, port: ev.Dest.Port(), inbound: ev.Direction == Inbound,
		ctx: ctx, cancel: cancel, done: make(chan struct{})}
	f.ev.Flow = p.dp.nextFlow.Add(1)
	p.dp.flowsMu.Lock()
	p.dp.flows[f] = struct{}{}
	p.dp.flowsMu.Unlock()
	return f
}

// untrack forgets a flow that never carried a byte.
func (f *flow) untrack() {
	f.pod.dp.flowsMu.Lock()
	delete(f.pod.dp.flows, f)
	f.pod.dp.flowsMu.Unlock()
	f.cancel()
}

// pump reports the flow opened and copies until both sides ended.
func (f *flow) pump(up io.ReadWriteCloser) {
	f.opened()
	f.closed(f.pipe(up))
}

// pumpConnecting copies through a stream whose CONNECT connect sends
// while the application's first bytes already go out behind it. The flow
// is reported opened when the destination agrees; a refusal resets the
// application's connection (its bytes sent meanwhile were dropped at the
// destination) and is reported instead of the flow.
func (f *flow) pumpConnecting(up *hbone.Stream, connect func() error) {
	err := f.pipeAfter(up, connect)
	if f.refused == nil {
		f.closed(err)
		return
	}
	ev := f.ev
	f.pod.dp.flowsMu.Lock()
	revoked := f.revoked
	f.pod.dp.flowsMu.Unlock()
	if revoked {
		ev.Kind, ev.Allowed, ev.Reason = EventDenied, false, "closed before the destination answered: the new policy denies it"
		f.pod.emit(ev)
		return
	}
	f.pod.upstreamFailed(f.c, ev, f.refused)
}

// answered takes the stream's answer, before any byte of the destination
// is copied.
func (f *flow) answered(err error, connect time.Duration) {
	f.ev.Connect = connect
	if err != nil {
		f.refused = err
		reset(f.c) // ends the pipe: the application sees its connection refused
		return
	}
	f.opened()
}

func (f *flow) opened() {
	ev := f.ev
	ev.Kind = EventFlowOpened
	f.pod.emit(ev)
}

// pipe copies between the application and up until both ended, then
// forgets the flow.
func (f *flow) pipe(up io.ReadWriteCloser) error { return f.pipeAfter(up, nil) }

// pipeAfter is pipe with hbone.Pump.PipeAfter's first (nil: none).
func (f *flow) pipeAfter(up io.ReadWriteCloser, first func() error) error {
	start := time.Now()
	var out, in int64
	var err error
	if first == nil {
		out, in, err = hbone.Pipe(f.ctx, f.c, up)
	} else {
		out, in, err = hbone.Pump{}.PipeAfter(f.ctx, f.c, up, first)
	}
	close(f.done)
	f.pod.dp.flowsMu.Lock()
	delete(f.pod.dp.flows, f)
	f.pod.dp.flowsMu.Unlock()
	f.cancel()
	f.out, f.in, f.duration = out, in, time.Since(start)
	return err
}

// closed reports the end of a flow that was opened.
func (f *flow) closed(err error) {
	f.pod.dp.flowsMu.Lock()
	revoked := f.revoked
	f.pod.dp.flowsMu.Unlock()
	ev := f.ev
	ev.Kind, ev.BytesOut, ev.BytesIn, ev.Duration = EventFlowClosed, f.out, f.in, f.duration
	if revoked {
		ev.Kind, ev.Allowed, ev.Reason = EventFlowRevoked, false, "closed: the new policy denies it"
	}
	if err != nil && !revoked {
		ev.Err = err.Error()
	}
	f.pod.emit(ev)
}

// Recheck decides every open flow with a new policy and closes those it
// no longer allows (not in audit mode). It returns how many it closed, once
// they are closed: no byte moves on them after Recheck returns.
func (dp *DataPlane) Recheck(snap *policy.Snapshot) int {
	dp.flowsMu.Lock()
	flows := make([]*flow, 0, len(dp.flows))
	for f := range dp.flows {
		flows = append(flows, f)
	}
	dp.flowsMu.Unlock()
	closed := 0
	for _, f := range flows {
		v := snap.Index.Decide(dp.subjectOf(snap.Index, f.src), dp.subjectOf(snap.Index, f.dst), policy.TCP, f.port)
		if v.Allowed || dp.cfg.Mode == Audit {
			continue
		}
		dp.flowsMu.Lock()
		f.revoked = true
		dp.flowsMu.Unlock()
		f.cancel()
		select {
		case <-f.done:
		case <-time.After(5 * time.Second):
			dp.cfg.Log.Error("flow did not close after revocation", "pod", f.pod.pod.UID)
		}
		closed++
	}
	return closed
}

// staged decides a flow again with the staged (mode: audit) policies, when
// there are any, and when they would decide otherwise records it on ev and
// reports it as an EventStaged: a team sees what a staged tightening would
// break, and traffic follows only the policy in force.
func (p *podProxy) staged(snap *policy.Snapshot, ev *Event, src, dst *policy.Endpoint, port uint16, enforced policy.Verdict) {
	if snap.Staged == nil {
		return
	}
	dp := p.dp
	sv := snap.Staged.Decide(dp.subjectOf(snap.Staged, src), dp.subjectOf(snap.Staged, dst), policy.TCP, port)
	if sv.Allowed == enforced.Allowed {
		return
	}
	ev.StagedVerdict, ev.StagedReason, ev.StagedRule = "deny", sv.Reason.String(), ruleText(snap.Staged, sv)
	if sv.Allowed {
		ev.StagedVerdict = "allow"
	}
	se := *ev
	se.Kind = EventStaged
	p.emit(se)
}
