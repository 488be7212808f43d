package hbone

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseForwardedFor(t *testing.T) {
	cases := []struct {
		in   string
		want string // "" = not an address
	}{
		{`for="10.0.0.1:40000"`, "10.0.0.1:40000"},
		{`for="[2001:db8::1]:443"`, "[2001:db8::1]:443"},
		{`For=10.0.0.1`, "10.0.0.1:0"},
		{`for="[2001:db8::1]"`, "[2001:db8::1]:0"},
		{`proto=https; for="10.0.0.2:1"; by=x`, "10.0.0.2:1"},
		{`for="10.0.0.3:2", for="10.0.0.4:3"`, "10.0.0.3:2"},
		{`for="[::ffff:10.0.0.5]:4"`, "10.0.0.5:4"},
		{`for=unknown`, ""},
		{`for="_hidden"`, ""},
		{`for="[fe80::1%eth0]:80"`, ""},
		{`for="10.0.0.1:40000\"`, ""},
		{`by=10.0.0.1`, ""},
		{``, ""},
		{`for="` + strings.Repeat("1", 600) + `"`, ""},
	}
	for _, tc := range cases {
		got, ok := parseForwardedFor(tc.in)
		if (tc.want == "") == ok || ok && got.String() != tc.want {
			t.Errorf("parseForwardedFor(%q) = %v, %v; want %q", tc.in, got, ok, tc.want)
		}
	}
}

// FuzzParseForwardedFor: the header comes from a remote agent. The parser
// must not panic, and what formatForwarded writes must parse back.
func FuzzParseForwardedFor(f *testing.F) {
	for _, s := range []string{`for="10.0.0.1:40000"`, `for="[2001:db8::1]:443"`, `for=unknown;proto=http`, `,,;;==""`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ap, ok := parseForwardedFor(s)
		if !ok {
			return
		}
		back, ok := parseForwardedFor(formatForwarded(ap))
		if !ok || back != ap {
			t.Fatalf("%q → %v, which formats to %q and parses to %v", s, ap, formatForwarded(ap), back)
		}
	})
}

func TestFormatForwarded(t *testing.T) {
	for _, s := range []string{"10.0.0.1:40000", "[2001:db8::1]:443"} {
		ap := netip.MustParseAddrPort(s)
		if got, ok := parseForwardedFor(formatForwarded(ap)); !ok || got != ap {
			t.Errorf("round trip of %s: %v %v", s, got, ok)
		}
	}
}
