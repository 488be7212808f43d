package workloadapi

import (
	"context"
	"errors"
	"os"
	"testing"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

func TestParseStartTime(t *testing.T) {
	// Fields 3 to 24 of a real /proc/<pid>/stat; field 22 is 987654.
	const rest = " S 1 1234 1234 34816 1234 4194304 1000 0 0 0 1 2 0 0 20 0 1 0 987654 12345 67\n"
	tests := []struct {
		name    string
		stat    string
		want    uint64
		wantErr bool
	}{
		{name: "plain command name", stat: "1234 (bash)" + rest, want: 987654},
		{name: "command name with spaces and parentheses", stat: "1234 (x) S 1 2 3 4)" + rest, want: 987654},
		{name: "command name ending in a parenthesis", stat: "1234 (a))" + rest, want: 987654},
		{name: "command name with digits only", stat: "1234 (42 43 44)" + rest, want: 987654},
		{name: "truncated before the start time", stat: "1234 (bash) S 1 1234 1234", wantErr: true},
		{name: "no closing parenthesis", stat: "1234 bash S 1", wantErr: true},
		{name: "start time not a number", stat: "1234 (bash) S 1 1234 1234 34816 1234 4194304 1000 0 0 0 1 2 0 0 20 0 1 0 soon 1", wantErr: true},
		{name: "empty", stat: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStartTime([]byte(tt.stat))
			if tt.wantErr {
				if err == nil {
					t.Fatalf("parseStartTime = %d, want an error", got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("parseStartTime = %d, %v; want %d", got, err, tt.want)
			}
		})
	}
}

type resolverFunc func(dev, ino uint64) (string, bool)

func (f resolverFunc) ByNetns(dev, ino uint64) (string, bool) { return f(dev, ino) }

func TestAttest(t *testing.T) {
	self := int32(os.Getpid())
	start, err := processStartTime(self)
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &st); err != nil {
		t.Fatal(err)
	}
	ourNetns := resolverFunc(func(dev, ino uint64) (string, bool) {
		return "pod-a", dev == uint64(st.Dev) && ino == st.Ino
	})
	noNetns := resolverFunc(func(uint64, uint64) (string, bool) { return "", false })
	from := func(info peerInfo) context.Context {
		return peer.NewContext(context.Background(), &peer.Peer{AuthInfo: info})
	}

	tests := []struct {
		name     string
		ctx      context.Context
		resolver Resolver
		wantUID  string
		wantCode codes.Code
	}{
		{
			name:     "a live caller in a registered network namespace is that workload",
			ctx:      from(peerInfo{PID: self, startTime: start}),
			resolver: ourNetns,
			wantUID:  "pod-a",
		},
		{
			name:     "a caller in no registered network namespace is refused",
			ctx:      from(peerInfo{PID: self, startTime: start}),
			resolver: noNetns,
			wantCode: codes.PermissionDenied,
		},
		{
			name:     "a pid that names another process than at connect time is refused",
			ctx:      from(peerInfo{PID: self, startTime: start + 1}),
			resolver: ourNetns,
			wantCode: codes.PermissionDenied,
		},
		{
			// Linux caps pid_max at 2^22, so this pid never exists.
			name:     "a caller that has exited is refused",
			ctx:      from(peerInfo{PID: 1<<22 + 1, startTime: start}),
			resolver: ourNetns,
			wantCode: codes.PermissionDenied,
		},
		{
			name:     "a caller whose start time was unreadable at connect time is refused",
			ctx:      from(peerInfo{PID: self, startErr: errors.New("pid 0 is not visible")}),
			resolver: ourNetns,
			wantCode: codes.PermissionDenied,
		},
		{
			name:     "a caller without peer credentials is refused",
			ctx:      peer.NewContext(context.Background(), &peer.Peer{}),
			resolver: ourNetns,
			wantCode: codes.PermissionDenied,
		},
		{
			name:     "a call without a peer is refused",
			ctx:      context.Background(),
			resolver: ourNetns,
			wantCode: codes.PermissionDenied,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			uid, _, err := attest(tt.ctx, tt.resolver)
			if code := status.Code(err); code != tt.wantCode || uid != tt.wantUID {
				t.Fatalf("attest = %q, %v; want %q, code %v", uid, err, tt.wantUID, tt.wantCode)
			}
		})
	}
}
