//lint:file-ignore SA1019 x/net/http2 is this package's HTTP/2 (DESIGN §2): Server.ServeConn on a conn we handshook and Transport.NewClientConn on a conn we dialed. Its successors in net/http change the API, not the protocol.

package hbone

import (
	"io"
	"net"
	"testing"

	"golang.org/x/net/http2"
)

// The window and frame sizes of DESIGN §8 are what each end announces on
// the wire, not just what the structs say.
func TestServerAnnouncesSettings(t *testing.T) {
	serverSide, clientSide := net.Pipe()
	defer clientSide.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		newH2Server().ServeConn(serverSide, nil)
	}()
	go func() { // the client preface, so the server goes on
		io.WriteString(clientSide, http2.ClientPreface)
		http2.NewFramer(clientSide, nil).WriteSettings()
	}()
	settings, window := readSettings(t, clientSide)
	want := map[http2.SettingID]uint32{
		http2.SettingMaxConcurrentStreams: maxStreamsPerConn,
		http2.SettingInitialWindowSize:    streamWindow,
		http2.SettingMaxFrameSize:         maxFrameSize,
	}
	for id, v := range want {
		if settings[id] != v {
			t.Errorf("server %s = %d, want %d", id, settings[id], v)
		}
	}
	if window != connWindow-65535 {
		t.Errorf("server connection window update %d, want %d", window, connWindow-65535)
	}
	clientSide.Close()
	<-done
}

func TestClientAnnouncesSettings(t *testing.T) {
	tr, err := newH2Transport()
	if err != nil {
		t.Fatal(err)
	}
	local, remote := net.Pipe()
	defer remote.Close()
	ccErr := make(chan error, 1)
	var cc *http2.ClientConn
	go func() {
		var err error
		cc, err = tr.NewClientConn(local)
		ccErr <- err
	}()
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(remote, preface); err != nil || string(preface) != http2.ClientPreface {
		t.Fatalf("preface %q, %v", preface, err)
	}
	settings, window := readSettings(t, remote)
	if err := <-ccErr; err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if settings[http2.SettingInitialWindowSize] != streamWindow || settings[http2.SettingMaxFrameSize] != maxFrameSize {
		t.Errorf("client settings %v", settings)
	}
	if window != connWindow {
		t.Errorf("client connection window update %d, want %d", window, connWindow)
	}
}

// readSettings reads the peer's first SETTINGS frame and the connection
// WINDOW_UPDATE that follows it.
func readSettings(t *testing.T, c net.Conn) (map[http2.SettingID]uint32, uint32) {
	t.Helper()
	fr := http2.NewFramer(io.Discard, c)
	settings := map[http2.SettingID]uint32{}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			f.ForeachSetting(func(s http2.Setting) error {
				settings[s.ID] = s.Val
				return nil
			})
		case *http2.WindowUpdateFrame:
			if f.StreamID == 0 {
				return settings, f.Increment
			}
		}
	}
}
