package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// The demo commands are the quickstart's workloads, built into ztcn so that
// a fresh machine needs nothing else: a server that says who called it, a
// client, and a pod that does nothing.
func newDemoCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Tiny workloads for 'ztcn up': an HTTP server that names its caller, an HTTP client, an idle process",
	}
	var port int
	httpCmd := &cobra.Command{
		Use:   "http --port N",
		Short: "Serve HTTP on :N, answering \"hello from $POD_NAME; you are CLIENT_IP:PORT\"",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			name := os.Getenv("POD_NAME")
			if name == "" {
				name, _ = os.Hostname()
			}
			ln, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: serving HTTP on %s\n", name, ln.Addr())
			srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s %s from %s\n", time.Now().Format(time.RFC3339), r.Method, r.URL.Path, r.RemoteAddr)
				fmt.Fprintf(w, "hello from %s; you are %s\n", name, r.RemoteAddr)
			})}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			go func() { <-ctx.Done(); srv.Close() }()
			if err := srv.Serve(ln); err != http.ErrServerClosed {
				return err
			}
			return nil
		},
	}
	httpCmd.Flags().IntVar(&port, "port", 8080, "port to listen on")
	var timeout time.Duration
	getCmd := &cobra.Command{
		Use:   "get URL",
		Short: "GET URL and print the answer (exit 1 with the reason if there is none)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, args[0], nil)
			if err != nil {
				return err
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			_, err = io.Copy(cmd.OutOrStdout(), resp.Body)
			return err
		},
	}
	getCmd.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "give up after this long")
	idleCmd := &cobra.Command{
		Use:   "idle",
		Short: "Do nothing until stopped",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			<-ctx.Done()
			return nil
		},
	}
	var echoPort int
	echoCmd := &cobra.Command{
		Use:   "echo --port N",
		Short: "Echo every byte back on TCP :N (for load tests)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ln, err := net.Listen("tcp", fmt.Sprintf(":%d", echoPort))
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			go func() { <-ctx.Done(); ln.Close() }()
			for {
				c, err := ln.Accept()
				if err != nil {
					if ctx.Err() != nil {
						return nil
					}
					return err
				}
				// A plain copy loop: io.Copy between TCP sockets splices
				// through a pipe, two more descriptors per connection.
				go func() {
					defer c.Close()
					buf := make([]byte, 16<<10)
					for {
						n, err := c.Read(buf)
						if n > 0 {
							if _, werr := c.Write(buf[:n]); werr != nil {
								return
							}
						}
						if err != nil {
							return
						}
					}
				}()
			}
		},
	}
	echoCmd.Flags().IntVar(&echoPort, "port", 7000, "port to listen on")
	cmd.AddCommand(httpCmd, getCmd, idleCmd, echoCmd)
	return cmd
}
