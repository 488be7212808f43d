package workloadapi

import (
	"context"
	"errors"
	"fmt"
	"net"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/credentials"
)

// peerCredentials is a server-only gRPC transport credential for Unix
// sockets. It does no cryptography: the kernel has already authenticated the
// peer, and the handshake just records what the kernel says about it.
type peerCredentials struct{}

// peerInfo is the AuthInfo of a connection: who the kernel says connected.
type peerInfo struct {
	// Unix sockets never leave the host, so the transport is as private as
	// the kernel; gRPC's own "local" credentials say the same.
	credentials.CommonAuthInfo
	PID      int32
	UID, GID uint32
	// startTime is the process's start time (clock ticks since boot) read
	// right after the connection was accepted, or startErr if it could not
	// be read. Every call compares against it to detect pid reuse.
	startTime uint64
	startErr  error
}

func (peerInfo) AuthType() string { return "peercred" }

func (peerCredentials) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return nil, nil, fmt.Errorf("workloadapi: connection from %s is %T, not a Unix socket: no peer credentials", conn.RemoteAddr(), conn)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, nil, fmt.Errorf("workloadapi: peer credentials: %w", err)
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, nil, fmt.Errorf("workloadapi: peer credentials: %w", err)
	}
	if credErr != nil {
		return nil, nil, fmt.Errorf("workloadapi: read SO_PEERCRED: %w", credErr)
	}
	info := peerInfo{
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
		PID:            cred.Pid,
		UID:            cred.Uid,
		GID:            cred.Gid,
	}
	// A failure here does not fail the handshake: the caller would only see
	// a broken connection. It is kept and reported as PermissionDenied on
	// the first call, with the reason.
	info.startTime, info.startErr = processStartTime(cred.Pid)
	return conn, info, nil
}

func (peerCredentials) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("workloadapi: peer credentials are for the server side only")
}

func (peerCredentials) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "peercred"}
}

func (c peerCredentials) Clone() credentials.TransportCredentials { return c }

func (peerCredentials) OverrideServerName(string) error { return nil }
