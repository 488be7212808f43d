package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"

	"github.com/ztcn/ztcn/internal/telemetry"
	"github.com/ztcn/ztcn/internal/workload"
)

// Client talks to an agent's control socket.
type Client struct {
	path string
	http *http.Client
}

// NewClient returns a client of the agent listening on the socket at path.
func NewClient(path string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}
	return &Client{path: path, http: &http.Client{Transport: tr}}
}

// RunPod registers pod and returns its status once it is secured.
func (c *Client) RunPod(ctx context.Context, pod workload.Pod) (PodStatus, error) {
	var st PodStatus
	err := c.do(ctx, http.MethodPut, "/v1/pods/"+url.PathEscape(pod.UID), pod, &st)
	return st, err
}

// StopPod revokes and detaches the pod uid.
func (c *Client) StopPod(ctx context.Context, uid string) error {
	return c.do(ctx, http.MethodDelete, "/v1/pods/"+url.PathEscape(uid), nil, nil)
}

// Pod is the status of the registered pod uid; an *APIError with Code 404
// (see IsNotFound) if there is none.
func (c *Client) Pod(ctx context.Context, uid string) (PodStatus, error) {
	var st PodStatus
	err := c.do(ctx, http.MethodGet, "/v1/pods/"+url.PathEscape(uid), nil, &st)
	return st, err
}

// IsNotFound reports whether err is the agent answering that the pod is
// not registered.
func IsNotFound(err error) bool {
	var apiErr *APIError
	return errors.As(err, &apiErr) && apiErr.Code == http.StatusNotFound
}

// Pods lists the registered pods.
func (c *Client) Pods(ctx context.Context) ([]PodStatus, error) {
	var pods []PodStatus
	err := c.do(ctx, http.MethodGet, "/v1/pods", nil, &pods)
	return pods, err
}

// SetDirectory replaces the agent's list of remote workloads.
func (c *Client) SetDirectory(ctx context.Context, d Directory) error {
	return c.do(ctx, http.MethodPut, "/v1/directory", d, nil)
}

// Flows reads the agent's flow table.
func (c *Client) Flows(ctx context.Context, f telemetry.FlowFilter) ([]telemetry.Flow, error) {
	var flows []telemetry.Flow
	err := c.do(ctx, http.MethodGet, "/v1/flows?"+flowQuery(f, false), nil, &flows)
	return flows, err
}

// FollowFlows calls fn for every new flow that matches until ctx is done
// or the agent goes away.
func (c *Client) FollowFlows(ctx context.Context, f telemetry.FlowFilter, fn func(telemetry.Flow)) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://ztcn-agent/v1/flows?"+flowQuery(f, true), nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("agent control socket %s: %w", c.path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return &APIError{Code: resp.StatusCode, Message: resp.Status}
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var fl telemetry.Flow
		if err := dec.Decode(&fl); err != nil {
			if ctx.Err() != nil || errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		fn(fl)
	}
}

func flowQuery(f telemetry.FlowFilter, follow bool) string {
	q := url.Values{}
	for k, v := range map[string]string{"pod": f.Pod, "namespace": f.Namespace, "verdict": f.Verdict} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if follow {
		q.Set("follow", "true")
	}
	return q.Encode()
}

// Status reads the agent's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.do(ctx, http.MethodGet, "/v1/status", nil, &st)
	return st, err
}

// APIError is a refusal by the agent.
type APIError struct {
	Code    int
	Message string
}

func (e *APIError) Error() string { return e.Message }

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	// The host part is ignored: the transport always dials the socket.
	req, err := http.NewRequestWithContext(ctx, method, "http://ztcn-agent"+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("agent control socket %s: %w", c.path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e Error
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = resp.Status
		}
		return &APIError{Code: resp.StatusCode, Message: e.Error}
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	return json.Unmarshal(data, out)
}
