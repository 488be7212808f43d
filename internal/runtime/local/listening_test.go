package local

import (
	"os"
	"path/filepath"
	"testing"
)

func TestListeningPorts(t *testing.T) {
	// Lines as the kernel writes them: 0.0.0.0:80 LISTEN, 127.0.0.1:15001
	// LISTEN, an established connection from port 0x1F90 (8080), and a
	// TIME_WAIT on 0x2328 (9000).
	table := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0100007F:3A99 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 100 0 0 10 0
   2: 0A4D010A:1F90 0A4D020A:C350 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 20 4 30 10 -1
   3: 0A4D010A:2328 0A4D020A:C351 06 00000000:00000000 03:00000000 00000000     0        0 0 3 0000000000000000
`
	path := filepath.Join(t.TempDir(), "tcp")
	if err := os.WriteFile(path, []byte(table), 0o644); err != nil {
		t.Fatal(err)
	}
	got := map[uint16]bool{}
	if err := listeningPorts(path, got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !got[80] || !got[15001] {
		t.Fatalf("listening ports %v, want 80 and 15001 only", got)
	}
	if err := listeningPorts(filepath.Join(t.TempDir(), "absent"), got); err != nil {
		t.Fatalf("a missing table (no IPv6) is not an error: %v", err)
	}
}
