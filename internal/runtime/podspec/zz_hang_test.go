package podspec

import (
	"fmt"
	"os"
	"testing"
	"time"
)

func FuzzHang(f *testing.F) {
	f.Add([]byte(fullFile))
	for _, tc := range errorCases {
		f.Add([]byte(tc.src))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		done := make(chan bool)
		go func() {
			select {
			case <-done:
			case <-time.After(3 * time.Second):
				os.WriteFile(fmt.Sprintf("/tmp/hang-%d", time.Now().UnixNano()), data, 0o644)
			}
		}()
		Parse("f.yaml", data)
		close(done)
	})
}
