// Command testapp is the workload of the test/k8s end-to-end runs:
//
//	testapp serve [ADDR]                     serve HTTP on ADDR (default :8080)
//	testapp get [-timeout D] [-retry D] [-insecure] URL
//	                                         print the body of URL; exit 1 unless 2xx
//	testapp sleep                            block until SIGTERM or SIGINT
//	testapp env                              print the environment, sorted
//
// The server answers every path with "key=value" lines naming itself
// (hostname, pod, node, its address and the caller's); /healthz answers "ok".
// POD_NAME, POD_NAMESPACE, POD_IP and NODE_NAME come from the environment
// (the downward API) when set.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "get":
		err = get(os.Args[2:])
	case "sleep":
		waitSignal(context.Background())
	case "env":
		env := os.Environ()
		sort.Strings(env)
		fmt.Println(strings.Join(env, "\n"))
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "testapp:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: testapp serve [ADDR] | get [-timeout D] [-retry D] [-insecure] URL | sleep | env")
	os.Exit(2)
}

func waitSignal(ctx context.Context) {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	<-ctx.Done()
}

// identity is what the server says about itself, besides the request.
func identity() map[string]string {
	host, _ := os.Hostname()
	id := map[string]string{"hostname": host}
	for key, env := range map[string]string{"pod": "POD_NAME", "namespace": "POD_NAMESPACE", "pod_ip": "POD_IP", "node": "NODE_NAME"} {
		if v := os.Getenv(env); v != "" {
			id[key] = v
		}
	}
	return id
}

func serve(args []string) error {
	addr := ":8080"
	if len(args) > 1 {
		usage()
	}
	if len(args) == 1 {
		addr = args[0]
	}
	id := identity()
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		lines := make(map[string]string, len(id)+3)
		for k, v := range id {
			lines[k] = v
		}
		lines["remote"] = r.RemoteAddr
		lines["path"] = r.URL.Path
		if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			lines["local"] = la.String()
		}
		keys := make([]string, 0, len(lines))
		for k := range lines {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var b strings.Builder
		for _, k := range keys {
			fmt.Fprintf(&b, "%s=%s\n", k, lines[k])
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, b.String())
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	fmt.Printf("testapp: serving on %s as %s\n", ln.Addr(), id["hostname"])
	go func() {
		waitSignal(context.Background())
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func get(args []string) error {
	fs := flag.NewFlagSet("get", flag.ExitOnError)
	timeout := fs.Duration("timeout", 5*time.Second, "timeout of one attempt")
	retry := fs.Duration("retry", 0, "keep retrying failed attempts for this long")
	insecure := fs.Bool("insecure", false, "do not verify the server's certificate (https)")
	fs.Parse(args)
	if fs.NArg() != 1 {
		usage()
	}
	url := fs.Arg(0)
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = &tls.Config{InsecureSkipVerify: *insecure}
	client := &http.Client{Timeout: *timeout, Transport: transport}
	deadline := time.Now().Add(*retry)
	for {
		body, err := fetch(client, url)
		if err == nil {
			os.Stdout.Write(body)
			return nil
		}
		if time.Now().Add(500 * time.Millisecond).After(deadline) {
			return err
		}
		fmt.Fprintln(os.Stderr, "testapp: retrying:", err)
		time.Sleep(500 * time.Millisecond)
	}
}

func fetch(client *http.Client, url string) ([]byte, error) {
	resp, err := client.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return body, nil
}
