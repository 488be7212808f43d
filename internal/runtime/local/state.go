package local

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"
)

// DefaultRun is the name of a run when none is given: its namespaces are
// ztcn-*, its state lives in StateRoot/ztcn.
const DefaultRun = "ztcn"

// StateRoot holds one directory per run. It is on tmpfs: nothing of a run
// survives a reboot, and neither do its namespaces.
const StateRoot = "/run/ztcn/up"

// State is what a run has created, written after every step so that
// `ztcn down` can remove a run whose supervisor crashed half-way.
type State struct {
	Run string `json:"run"`
	// Dir is the directory the run was started from (pods.yaml, policy).
	Dir        string    `json:"dir"`
	PolicyPath string    `json:"policy_path"`
	Supervisor int       `json:"supervisor_pid"`
	StartedAt  time.Time `json:"started_at"`
	// Ready is set once every pod runs; Error once the run has failed.
	Ready bool   `json:"ready"`
	Error string `json:"error,omitempty"`
	// Namespaces lists every network namespace of the run, in creation
	// order (removed in reverse).
	Namespaces []string    `json:"namespaces"`
	Nodes      []NodeState `json:"nodes"`
	Pods       []PodState  `json:"pods"`
	Externals  []PodState  `json:"externals,omitempty"`
	// ReadyAfter is how long the run took from start to every pod running.
	ReadyAfter time.Duration `json:"ready_after,omitempty"`
}

// NodeState is one node and its agent.
type NodeState struct {
	Name          string       `json:"name"`
	Netns         string       `json:"netns"`
	Subnet        netip.Prefix `json:"subnet"`
	AgentPID      int          `json:"agent_pid,omitempty"`
	ControlSocket string       `json:"control_socket"`
	AdminAddress  string       `json:"admin_address,omitempty"`
	AgentLog      string       `json:"agent_log"`
}

// PodState is one pod (or external workload) and its process.
type PodState struct {
	Name      string     `json:"name"`
	Namespace string     `json:"namespace,omitempty"`
	UID       string     `json:"uid,omitempty"`
	Node      string     `json:"node,omitempty"`
	Netns     string     `json:"netns"`
	IP        netip.Addr `json:"ip"`
	PID       int        `json:"pid,omitempty"`
	Log       string     `json:"log"`
	// AttachTime is how long registration with the agent took (identity
	// issued, redirection attached).
	AttachTime time.Duration `json:"attach_time,omitempty"`
	// Exited and ExitCode describe a command that has ended.
	Exited   bool `json:"exited,omitempty"`
	ExitCode int  `json:"exit_code,omitempty"`
}

// RunDir is the state directory of run.
func RunDir(run string) string { return filepath.Join(StateRoot, run) }

func statePath(run string) string { return filepath.Join(RunDir(run), "state.json") }

// LoadState reads a run's state; os.ErrNotExist when there is no such run.
func LoadState(run string) (*State, error) {
	data, err := os.ReadFile(statePath(run))
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", statePath(run), err)
	}
	return &s, nil
}

// save writes the state atomically (rename), so a reader never sees half.
func (s *State) save() error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	dir := RunDir(s.Run)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".state-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), statePath(s.Run))
}

// Pod returns the pod or external workload named name.
func (s *State) Pod(name string) (PodState, bool) {
	for _, p := range append(append([]PodState(nil), s.Pods...), s.Externals...) {
		if p.Name == name {
			return p, true
		}
	}
	return PodState{}, false
}

// ErrNoRun is returned when a run has no state.
var ErrNoRun = errors.New("no ztcn up run")
