package main

import (
	"crypto/tls"
	"io"
	"net"
	"sync"

	"github.com/ztcn/ztcn/internal/netns"
)

// The naive baseline: what one would write first — a client proxy that
// opens one mutual-TLS connection per accepted TCP connection to a server
// proxy, which connects to the application. Buffers as large as ztcn's
// (256 KiB), TLS 1.3 with AES-GCM like ztcn, so that the comparison is
// about the design (HBONE pooling and HTTP/2) and not about tuning.
type naivePair struct {
	lns []net.Listener
	wg  sync.WaitGroup
}

// startNaive listens in the client pod on 127.0.0.1:clientPort for each
// target and in the server pod on serverIP:tlsPort, mapping
// clientPorts[i] → tlsPorts[i] → 127.0.0.1:appPorts[i].
func startNaive(client, server *netns.NS, serverIP string, clientTLS, serverTLS *tls.Config, clientPorts, tlsPorts, appPorts []int) (*naivePair, error) {
	p := &naivePair{}
	for i := range clientPorts {
		var sln, cln net.Listener
		if err := netns.Do(server, func() (err error) {
			sln, err = net.Listen("tcp4", serverIP+":"+itoa(tlsPorts[i]))
			return err
		}); err != nil {
			p.close()
			return nil, err
		}
		p.lns = append(p.lns, sln)
		app := "127.0.0.1:" + itoa(appPorts[i])
		p.serve(tls.NewListener(sln, serverTLS), func() (net.Conn, error) {
			var c net.Conn
			err := netns.Do(server, func() (err error) { c, err = net.Dial("tcp4", app); return err })
			return c, err
		})
		if err := netns.Do(client, func() (err error) {
			cln, err = net.Listen("tcp4", "127.0.0.1:"+itoa(clientPorts[i]))
			return err
		}); err != nil {
			p.close()
			return nil, err
		}
		p.lns = append(p.lns, cln)
		remote := serverIP + ":" + itoa(tlsPorts[i])
		p.serve(cln, func() (net.Conn, error) {
			var raw net.Conn
			if err := netns.Do(client, func() (err error) { raw, err = net.Dial("tcp4", remote); return err }); err != nil {
				return nil, err
			}
			c := tls.Client(raw, clientTLS)
			if err := c.Handshake(); err != nil {
				raw.Close()
				return nil, err
			}
			return c, nil
		})
	}
	return p, nil
}

func (p *naivePair) serve(ln net.Listener, dial func() (net.Conn, error)) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				up, err := dial()
				if err != nil {
					return
				}
				defer up.Close()
				splice(c, up)
			}()
		}
	}()
}

// splice copies both ways with 256 KiB buffers and passes half-closes on.
func splice(a, b net.Conn) {
	var wg sync.WaitGroup
	wg.Add(2)
	cp := func(dst, src net.Conn) {
		defer wg.Done()
		buf := make([]byte, 256<<10)
		_, _ = io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, buf)
		type closeWriter interface{ CloseWrite() error }
		if cw, ok := dst.(closeWriter); ok {
			_ = cw.CloseWrite()
		} else {
			dst.Close()
		}
	}
	go cp(b, a)
	go cp(a, b)
	wg.Wait()
}

func (p *naivePair) close() {
	for _, ln := range p.lns {
		ln.Close()
	}
	p.wg.Wait()
}
