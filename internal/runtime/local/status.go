package local

import (
	"context"
	"sort"
	"time"

	"github.com/ztcn/ztcn/internal/control"
)

// RunStatus is a run as `ztcn status` reports it under `ztcn up`: the
// run's own record joined with what each node's agent says.
type RunStatus struct {
	Run        string        `json:"run"`
	Dir        string        `json:"dir"`
	Ready      bool          `json:"ready"`
	StartedAt  time.Time     `json:"started_at"`
	ReadyAfter time.Duration `json:"ready_after_ns,omitempty"`
	Error      string        `json:"error,omitempty"`
	// Mode and Policy are those of the first node's agent (every node
	// loads the same policy file).
	Mode      string               `json:"mode"`
	Policy    control.PolicyStatus `json:"policy"`
	Nodes     []NodeStatus         `json:"nodes"`
	Pods      []RunPod             `json:"pods"`
	Externals []RunPod             `json:"externals,omitempty"`
	// Events sums the nodes' event counters.
	Events map[string]uint64 `json:"events"`
	// Recent are the latest events of every node, oldest first.
	Recent []control.Event `json:"recent,omitempty"`
}

// NodeStatus is one node and its agent's health.
type NodeStatus struct {
	Name          string `json:"name"`
	Subnet        string `json:"subnet"`
	AgentPID      int    `json:"agent_pid"`
	AgentRunning  bool   `json:"agent_running"`
	Ready         bool   `json:"ready"`
	AdminAddress  string `json:"admin_address,omitempty"`
	MetricsURL    string `json:"metrics_url,omitempty"`
	ControlSocket string `json:"control_socket"`
	AgentLog      string `json:"agent_log"`
	Error         string `json:"error,omitempty"`
}

// RunPod is one workload: the agent's view (identity, redirection) and the
// runtime's (node, process).
type RunPod struct {
	control.PodStatus
	Node    string `json:"node,omitempty"`
	PID     int    `json:"pid,omitempty"`
	Running bool   `json:"running"`
	// ExitCode is set once the command has ended.
	ExitCode *int   `json:"exit_code,omitempty"`
	Log      string `json:"log"`
}

// Healthy says whether every agent is ready and every pod is secured.
func (s *RunStatus) Healthy() bool {
	if !s.Ready {
		return false
	}
	for _, n := range s.Nodes {
		if !n.Ready {
			return false
		}
	}
	for _, p := range s.Pods {
		if p.Redirection.State != control.RedirectionHealthy {
			return false
		}
	}
	return true
}

// Status reads a run's state and asks each of its agents.
func Status(ctx context.Context, run string) (*RunStatus, error) {
	st, err := LoadState(run)
	if err != nil {
		return nil, err
	}
	rs := &RunStatus{Run: st.Run, Dir: st.Dir, Ready: st.Ready, StartedAt: st.StartedAt, ReadyAfter: st.ReadyAfter,
		Error: st.Error, Events: map[string]uint64{}}
	agentPods := map[string]control.PodStatus{}
	for i, n := range st.Nodes {
		ns := NodeStatus{Name: n.Name, Subnet: n.Subnet.String(), AgentPID: n.AgentPID, AgentRunning: alive(n.AgentPID),
			AdminAddress: n.AdminAddress, ControlSocket: n.ControlSocket, AgentLog: n.AgentLog}
		qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		as, err := control.NewClient(n.ControlSocket).Status(qctx)
		cancel()
		if err != nil {
			ns.Error = err.Error()
		} else {
			ns.Ready = as.Ready
			if as.AdminAddress != "" {
				ns.AdminAddress = as.AdminAddress
			}
			ns.MetricsURL = as.MetricsURL
			if i == 0 {
				rs.Mode, rs.Policy = as.Mode, as.Policy
			}
			for k, v := range as.Events {
				rs.Events[k] += v
			}
			rs.Recent = append(rs.Recent, as.Recent...)
			for _, p := range as.Pods {
				agentPods[p.UID] = p
			}
		}
		rs.Nodes = append(rs.Nodes, ns)
	}
	sort.SliceStable(rs.Recent, func(i, j int) bool { return rs.Recent[i].Time.Before(rs.Recent[j].Time) })
	if len(rs.Recent) > 32 {
		rs.Recent = rs.Recent[len(rs.Recent)-32:]
	}
	for _, p := range st.Pods {
		ps, ok := agentPods[p.UID]
		if !ok {
			ps = control.PodStatus{UID: p.UID, Name: p.Name, Namespace: p.Namespace,
				Redirection: control.Redirection{State: control.RedirectionAbsent, Error: "not registered with its agent"}}
		}
		rs.Pods = append(rs.Pods, runPod(ps, p))
	}
	for _, x := range st.Externals {
		rs.Externals = append(rs.Externals, runPod(control.PodStatus{Name: x.Name, NetnsPath: x.Netns}, x))
	}
	return rs, nil
}

func runPod(ps control.PodStatus, p PodState) RunPod {
	if len(ps.IPs) == 0 && p.IP.IsValid() {
		ps.IPs = append(ps.IPs, p.IP)
	}
	rp := RunPod{PodStatus: ps, Node: p.Node, PID: p.PID, Running: p.PID > 0 && !p.Exited && alive(p.PID), Log: p.Log}
	if p.Exited {
		code := p.ExitCode
		rp.ExitCode = &code
	}
	return rp
}
