package hbone

import (
	"net/netip"
	"strings"
)

// formatForwarded is the HBONE Forwarded header (RFC 7239) naming the
// original client: for="ip:port", quoted because the port's colon (and an
// IPv6 address's brackets) are not token characters.
func formatForwarded(src netip.AddrPort) string {
	return `for="` + src.String() + `"`
}

// maxForwardedLen bounds the header parse: one element for an IPv6
// address with port is under 60 bytes; a longer value is not ours.
const maxForwardedLen = 512

// parseForwardedFor extracts the for= address of the first element of a
// Forwarded header (the hop closest to the client). A bare IP gets port 0.
// Obfuscated identifiers, "unknown" and zoned IPv6 addresses (a zone means
// nothing on another node) are not addresses: ok is false.
func parseForwardedFor(v string) (addr netip.AddrPort, ok bool) {
	if len(v) > maxForwardedLen {
		return netip.AddrPort{}, false
	}
	elem, _, _ := strings.Cut(v, ",")
	for pair := range strings.SplitSeq(elem, ";") {
		key, val, found := strings.Cut(strings.TrimSpace(pair), "=")
		if !found || !strings.EqualFold(strings.TrimSpace(key), "for") {
			continue
		}
		val = strings.TrimSpace(val)
		if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
			val = val[1 : len(val)-1]
		}
		if strings.ContainsAny(val, "\"\\") {
			return netip.AddrPort{}, false
		}
		if ap, err := netip.ParseAddrPort(val); err == nil {
			if ap.Addr().Zone() != "" {
				return netip.AddrPort{}, false
			}
			return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
		}
		ip, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(val, "["), "]"))
		if err != nil || ip.Zone() != "" {
			return netip.AddrPort{}, false
		}
		return netip.AddrPortFrom(ip.Unmap(), 0), true
	}
	return netip.AddrPort{}, false
}
