package main

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"

	"github.com/ztcn/ztcn/internal/netns"
)

// The applications of the server pod: a sink that counts what it receives
// and answers the count once the client half-closes (throughput), and an
// echo (latency).
const (
	sinkPort = 7001
	echoPort = 7002
)

// servers runs the sink and the echo inside ns until closed.
type servers struct {
	lns []net.Listener
	wg  sync.WaitGroup
}

func startServers(ns *netns.NS) (*servers, error) {
	s := &servers{}
	for port, handle := range map[int]func(net.Conn){sinkPort: sink, echoPort: echo} {
		var ln net.Listener
		if err := netns.Do(ns, func() (err error) {
			ln, err = net.Listen("tcp4", "0.0.0.0:"+itoa(port))
			return err
		}); err != nil {
			s.close()
			return nil, err
		}
		s.lns = append(s.lns, ln)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() { defer c.Close(); handle(c) }()
			}
		}()
	}
	return s, nil
}

func (s *servers) close() {
	for _, ln := range s.lns {
		ln.Close()
	}
	s.wg.Wait()
}

func sink(c net.Conn) {
	buf := make([]byte, 256<<10)
	var n int64
	for {
		k, err := c.Read(buf)
		n += int64(k)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				return
			}
			break
		}
	}
	var out [8]byte
	binary.BigEndian.PutUint64(out[:], uint64(n))
	_, _ = c.Write(out[:])
}

func echo(c net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		k, err := c.Read(buf)
		if k > 0 {
			if _, werr := c.Write(buf[:k]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func itoa(i int) string {
	var b [20]byte
	n := len(b)
	for {
		n--
		b[n] = byte('0' + i%10)
		i /= 10
		if i == 0 {
			return string(b[n:])
		}
	}
}
