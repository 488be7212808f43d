package dataplane

import (
	"net/http"
	"time"

	"github.com/ztcn/ztcn/internal/dataplane/hbone"
)

func (dp *DataPlane) handshake(side HandshakeSide, took time.Duration, err error) {
	if dp.cfg.OnHandshake != nil {
		dp.cfg.OnHandshake(side, took, err)
	}
}

// inboundStreamEnded reports an inbound HBONE stream that reached the
// application, once it ends; refused CONNECTs were reported when refused.
func (p *podProxy) inboundStreamEnded(e hbone.StreamEvent) {
	if e.Status != http.StatusOK || e.Request.Peer == nil {
		return
	}
	src := e.Request.ForwardedFor
	if !src.IsValid() {
		src = e.Request.Remote
	}
	ev := Event{Kind: EventFlowClosed, Direction: Inbound, Source: src, Dest: e.Request.Target,
		SourceID: e.Request.Peer.ID.String(), DestID: p.pod.Endpoint.SPIFFEID,
		SourceEP: p.dp.describe(p.dp.peerEndpointOf(e.Request.Peer, src.Addr())), DestEP: p.pod.Endpoint,
		Allowed: true, Enforced: p.dp.cfg.Mode != Audit,
		BytesIn: e.ToApp, BytesOut: e.FromApp, Duration: e.Duration}
	if e.Err != nil {
		ev.Err = e.Err.Error()
	}
	p.emit(ev)
}

// Active counts the connections the data plane carries right now: those
// its pods opened (outbound) and those it delivers to them (inbound, over
// HBONE or as admitted plaintext).
func (dp *DataPlane) Active() (outbound, inbound int) {
	dp.flowsMu.Lock()
	for f := range dp.flows {
		if f.inbound {
			inbound++
		} else {
			outbound++
		}
	}
	dp.flowsMu.Unlock()
	dp.mu.Lock()
	defer dp.mu.Unlock()
	for _, p := range dp.pods {
		if p.server != nil {
			inbound += p.server.ActiveStreams()
		}
	}
	return outbound, inbound
}
