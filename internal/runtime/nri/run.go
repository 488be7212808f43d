package nri

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/nri/pkg/stub"
)

// Options say where the runtime's NRI socket is and how the plugin is named
// there (containerd sorts plugins by index, and a required-plugins list
// names them).
type Options struct {
	Socket string
	Name   string
	Index  string
}

// Run connects the plugin to the runtime and keeps it connected until ctx
// ends: when the runtime restarts or drops the plugin it reconnects, and
// the runtime's Synchronize on reconnection catches up with what happened
// meanwhile.
func (p *Plugin) Run(ctx context.Context, o Options) error {
	backoff := 100 * time.Millisecond
	for {
		s, err := stub.New(p, stub.WithSocketPath(o.Socket), stub.WithPluginName(o.Name), stub.WithPluginIdx(o.Index))
		if err != nil {
			return fmt.Errorf("nri plugin: %w", err)
		}
		started := time.Now()
		// Run returns when the connection ends, not when ctx does.
		done := make(chan struct{})
		go func() {
			select {
			case <-ctx.Done():
				s.Stop()
			case <-done:
			}
		}()
		err = s.Run(ctx)
		close(done)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(started) > 10*time.Second {
			backoff = 100 * time.Millisecond
		}
		p.Log.Warn("disconnected from the container runtime; reconnecting", "socket", o.Socket, "error", err, "in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}
