package dataplane

import "net/netip"

// Release stops proxying for every pod but leaves their rules in place:
// what the agent does when it stops. The pods' TCP is then refused at the
// now-closed listeners (fail closed) until an agent attaches them again;
// Detach, by contrast, removes the rules because the pod is gone.
func (dp *DataPlane) Release() error {
	dp.mu.Lock()
	pods := dp.pods
	dp.pods = map[string]*podProxy{}
	dp.byIP = map[netip.Addr]*podProxy{}
	dp.mu.Unlock()
	for _, p := range pods {
		p.cancel()
		p.closeListeners()
	}
	for _, p := range pods {
		p.wg.Wait()
	}
	// Open flows end with the agent, as they would if it were killed.
	dp.flowsMu.Lock()
	for f := range dp.flows {
		f.cancel()
	}
	dp.flowsMu.Unlock()
	return dp.pool.Close()
}

// Rotated drains the pooled connections a pod opened with its previous
// SVID: no new stream goes on them, and each closes when its last stream
// ends. New connections use the current SVID. Call it when the pod's
// identity is re-issued or revoked.
func (dp *DataPlane) Rotated(uid string) { dp.pool.Rotate(uid) }
