package oci

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/ztcn/ztcn/internal/control"
	"github.com/ztcn/ztcn/internal/netns"
	"github.com/ztcn/ztcn/internal/runtime/podnet"
)

// Stage is an OCI hook point the hook handles.
type Stage string

// The hook points.
const (
	StageCreateRuntime Stage = "createRuntime"
	StagePoststop      Stage = "poststop"
)

// maxStateSize bounds what is read from stdin: a state is a few KiB.
const maxStateSize = 1 << 20

// ReadState decodes the container state the runtime writes to a hook's
// stdin.
func ReadState(r io.Reader) (*specs.State, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxStateSize+1))
	if err != nil {
		return nil, fmt.Errorf("container state on stdin: %w", err)
	}
	if len(data) > maxStateSize {
		return nil, fmt.Errorf("container state on stdin: larger than %d bytes", maxStateSize)
	}
	var st specs.State
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("container state on stdin: %w", err)
	}
	if st.ID == "" {
		return nil, errors.New(`container state on stdin: no "id"`)
	}
	return &st, nil
}

// StageOf infers the hook point from the state's status, for a hook
// configured once for both points (as a hooks.d file with two stages is).
func StageOf(st *specs.State) (Stage, error) {
	switch st.Status {
	case specs.StateCreating, specs.StateCreated:
		return StageCreateRuntime, nil
	case specs.StateStopped:
		return StagePoststop, nil
	}
	return "", fmt.Errorf("container %s: status %q is neither creating nor stopped: name the stage (createRuntime or poststop)", st.ID, st.Status)
}

// Hook brings containers into the mesh and takes them out.
type Hook struct {
	// Control is the agent's control API.
	Control *control.Client
	// Network gives containers without a network one.
	Network *podnet.Attacher
}

// Result says what CreateRuntime did.
type Result struct {
	// Pod is the registered workload; empty when Skipped.
	Pod control.PodStatus
	// Connected is true when the hook gave the container its network.
	Connected bool
	// Skipped explains why the container was left alone: it uses the
	// node's network, or joins a pod already registered.
	Skipped string
}

// CreateRuntime registers the container and returns once it is secured.
// On error nothing it did is left behind.
func (h *Hook) CreateRuntime(ctx context.Context, st *specs.State) (Result, error) {
	if SharesSandbox(st) {
		return Result{Skipped: "it joins its pod sandbox's network namespace, registered by the sandbox"}, nil
	}
	pod, err := PodFromState(st)
	if err != nil {
		return Result{}, err
	}
	if st.Pid <= 0 {
		return Result{}, fmt.Errorf("container %s: state has no pid: is the hook configured for createRuntime?", st.ID)
	}
	pod.NetnsPath = "/proc/" + strconv.Itoa(st.Pid) + "/ns/net"
	ns, err := netns.Open(pod.NetnsPath)
	if err != nil {
		return Result{}, err
	}
	defer ns.Close()
	host, err := netns.Open("/proc/self/ns/net")
	if err != nil {
		return Result{}, err
	}
	defer host.Close()

	if same, err := sameFile(ns.File(), host.File()); err != nil || same {
		return Result{Skipped: "it uses the node's network namespace (host network): ztcn cannot intercept its traffic"}, err
	}
	if owner, err := h.registeredOwner(ctx, ns); err != nil || owner != "" {
		return Result{Skipped: "it shares the network namespace of workload " + owner}, err
	}

	var res Result
	if pod.IPs, res.Connected, err = h.Network.Ensure(ns, st.ID); err != nil {
		return Result{}, fmt.Errorf("container %s: %w", st.ID, err)
	}
	if res.Pod, err = h.Control.RunPod(ctx, pod); err != nil {
		err = fmt.Errorf("container %s: the ztcn agent did not secure it: %w", st.ID, err)
		if res.Connected {
			err = errors.Join(err, h.Network.Disconnect(st.ID))
		}
		return Result{}, err
	}
	return res, nil
}

// Poststop deregisters the container (the agent revokes its SVID) and
// removes its network. A container the hook skipped or never registered
// is not an error, so the hook can run for every container.
func (h *Hook) Poststop(ctx context.Context, st *specs.State) error {
	var err error
	if !SharesSandbox(st) {
		err = h.Control.StopPod(ctx, st.ID)
		if control.IsNotFound(err) {
			err = nil
		}
		if err != nil {
			err = fmt.Errorf("container %s: deregister: %w", st.ID, err)
		}
	}
	return errors.Join(err, h.Network.Disconnect(st.ID))
}

// registeredOwner returns the UID of a registered workload whose network
// namespace is ns, if any (containers of one podman pod share it).
func (h *Hook) registeredOwner(ctx context.Context, ns *netns.NS) (string, error) {
	pods, err := h.Control.Pods(ctx)
	if err != nil {
		return "", fmt.Errorf("the ztcn agent: %w", err)
	}
	for _, p := range pods {
		f, err := os.Open(p.NetnsPath)
		if err != nil {
			continue // its process is gone; the agent will notice
		}
		same, err := sameFile(f, ns.File())
		f.Close()
		if err == nil && same {
			return p.UID, nil
		}
	}
	return "", nil
}

// sameFile compares by device and inode, how the kernel tells namespaces
// apart.
func sameFile(a, b *os.File) (bool, error) {
	var sa, sb unix.Stat_t
	if err := unix.Fstat(int(a.Fd()), &sa); err != nil {
		return false, err
	}
	if err := unix.Fstat(int(b.Fd()), &sb); err != nil {
		return false, err
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino, nil
}
