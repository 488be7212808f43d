package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/ztcn/ztcn/internal/telemetry"
	"github.com/ztcn/ztcn/internal/workload"
)

// Backend is what the control API serves: the agent.
type Backend interface {
	// RunPod registers pod and returns once it is secured.
	RunPod(ctx context.Context, pod workload.Pod) (PodStatus, error)
	// StopPod revokes and detaches the pod; ErrNotFound if unknown.
	StopPod(uid string) error
	// Pod is the status of one registered pod; ErrNotFound if unknown.
	Pod(uid string) (PodStatus, error)
	// SetDirectory replaces the list of remote workloads.
	SetDirectory(d Directory) error
	// Flows lists the open and recent flows that match.
	Flows(f telemetry.FlowFilter) []telemetry.Flow
	// SubscribeFlows delivers every flow recorded from now on.
	SubscribeFlows(ctx context.Context) <-chan telemetry.Flow
	Status() Status
}

// Errors a Backend returns to choose the HTTP status.
var (
	// ErrNotFound: no pod with that UID.
	ErrNotFound = errors.New("no such pod")
	// ErrInvalid wraps a request the backend refuses as malformed.
	ErrInvalid = errors.New("invalid pod")
	// ErrConflict wraps a registration that clashes with another pod.
	ErrConflict = errors.New("conflicting pod")
)

// maxBody bounds a request: a pod record is a few hundred bytes.
const maxBody = 1 << 20

// Server serves the control API on a Unix socket.
type Server struct {
	path    string
	backend Backend
	log     *slog.Logger
}

// NewServer returns a server for backend on the socket at path.
func NewServer(path string, backend Backend, log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	return &Server{path: path, backend: backend, log: log}
}

// Listen creates the socket, mode 0600: only root (the runtime and its
// hooks) may register pods. A stale socket left by a dead agent is
// replaced; a live one is an error, not something to steal.
func (s *Server) Listen() (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(s.path), 0o755); err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	if c, err := net.DialTimeout("unix", s.path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("control: %s is in use by another agent", s.path)
	}
	_ = os.Remove(s.path)
	ln, err := net.Listen("unix", s.path)
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	if err := os.Chmod(s.path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control: %w", err)
	}
	return ln, nil
}

// Serve answers on ln until ctx is done, then removes the socket.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(shutdown)
		case <-done:
		}
	}()
	err := srv.Serve(ln)
	close(done)
	_ = os.Remove(s.path)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Handler is the API's routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /v1/pods/{uid}", s.putPod)
	mux.HandleFunc("DELETE /v1/pods/{uid}", s.deletePod)
	mux.HandleFunc("GET /v1/pods/{uid}", func(w http.ResponseWriter, r *http.Request) {
		st, err := s.backend.Pod(r.PathValue("uid"))
		if err != nil {
			writeError(w, statusOf(err), err)
			return
		}
		writeJSON(w, http.StatusOK, st)
	})
	mux.HandleFunc("GET /v1/pods", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.backend.Status().Pods)
	})
	mux.HandleFunc("PUT /v1/directory", s.putDirectory)
	mux.HandleFunc("GET /v1/flows", s.getFlows)
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.backend.Status())
	})
	return mux
}

func (s *Server) putPod(w http.ResponseWriter, r *http.Request) {
	var pod podRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&pod); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("pod record: %w", err))
		return
	}
	uid := r.PathValue("uid")
	if pod.UID != "" && pod.UID != uid {
		writeError(w, http.StatusBadRequest, fmt.Errorf("pod record: uid %q does not match the path's %q", pod.UID, uid))
		return
	}
	pod.UID = uid
	st, err := s.backend.RunPod(r.Context(), pod)
	if err != nil {
		s.log.Warn("pod registration refused", "uid", uid, "error", err)
		writeError(w, statusOf(err), err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) putDirectory(w http.ResponseWriter, r *http.Request) {
	var d Directory
	// A directory lists a cluster's pods: allow far more than one record.
	dec := json.NewDecoder(io.LimitReader(r.Body, 64*maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("directory: %w", err))
		return
	}
	if err := s.backend.SetDirectory(d); err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"pods": len(d.Pods)})
}

// getFlows answers the flow table as a JSON array, or with follow=true
// streams each new flow as a JSON line until the client goes away.
func (s *Server) getFlows(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	filter := telemetry.FlowFilter{Pod: q.Get("pod"), Namespace: q.Get("namespace"), Verdict: q.Get("verdict")}
	if v := filter.Verdict; v != "" && v != telemetry.VerdictAllow && v != telemetry.VerdictDeny {
		writeError(w, http.StatusBadRequest, fmt.Errorf("verdict %q: want allow or deny", v))
		return
	}
	if q.Get("follow") != "true" {
		flows := s.backend.Flows(filter)
		if flows == nil {
			flows = []telemetry.Flow{}
		}
		writeJSON(w, http.StatusOK, flows)
		return
	}
	ch := s.backend.SubscribeFlows(r.Context())
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	if flusher != nil {
		flusher.Flush()
	}
	enc := json.NewEncoder(w)
	for f := range ch {
		if !filter.Match(f) {
			continue
		}
		if err := enc.Encode(f); err != nil {
			return
		}
		if flusher != nil {
			flusher.Flush()
		}
	}
}

func (s *Server) deletePod(w http.ResponseWriter, r *http.Request) {
	if err := s.backend.StopPod(r.PathValue("uid")); err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, ErrConflict):
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, Error{Error: err.Error()})
}
