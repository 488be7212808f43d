package identity

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Fuzz targets for what peers and operators hand the identity package:
// SPIFFE IDs and trust domain names, certificate chains, and the claims
// extension inside a leaf. The seeds run in the normal suite; fuzz one
// with e.g.
//
//	go test -run '^$' -fuzz '^FuzzVerify$' -fuzztime 60s ./internal/identity/

// FuzzParseWorkloadID: an ID that parses is canonical (String gives the
// input back and parses to the same ID), has a path, and names a trust
// domain that ParseTrustDomain accepts.
func FuzzParseWorkloadID(f *testing.F) {
	for _, s := range fuzzSPIFFEStrings {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseWorkloadID(s)
		if err != nil {
			if !id.IsZero() {
				t.Fatalf("ParseWorkloadID(%q) failed (%v) but returned %v", s, err, id)
			}
			return
		}
		if id.String() != s {
			t.Fatalf("ParseWorkloadID(%q) = %q: not the input", s, id)
		}
		again, err := ParseWorkloadID(id.String())
		if err != nil || again != id {
			t.Fatalf("%q re-parses to %v, %v", id, again, err)
		}
		if id.Path() == "" {
			t.Fatalf("%q has no path", s)
		}
		td, err := ParseTrustDomain(id.TrustDomain().Name())
		if err != nil || td != id.TrustDomain() {
			t.Fatalf("the trust domain of %q does not parse: %v, %v", s, td, err)
		}
		if rest, ok := strings.CutPrefix(id.Path(), "/ns/"); ok {
			if ns, sa, ok := strings.Cut(rest, "/sa/"); ok && !strings.Contains(ns, "/") && !strings.Contains(sa, "/") {
				w, err := WorkloadID(td, ns, sa)
				if err != nil || w != id {
					t.Fatalf("WorkloadID(%s, %q, %q) = %v, %v; want %v", td, ns, sa, w, err, id)
				}
			}
		}
	})
}

// FuzzParseTrustDomain: a name that parses is the bare name (no scheme,
// no path), re-parses to the same trust domain, and makes workload IDs.
func FuzzParseTrustDomain(f *testing.F) {
	for _, s := range fuzzSPIFFEStrings {
		f.Add(s)
		f.Add(strings.TrimPrefix(s, "spiffe://"))
	}
	f.Fuzz(func(t *testing.T, s string) {
		td, err := ParseTrustDomain(s)
		if err != nil {
			if !td.IsZero() {
				t.Fatalf("ParseTrustDomain(%q) failed (%v) but returned %v", s, err, td)
			}
			return
		}
		if td.Name() != s || td.String() != s || td.IDString() != "spiffe://"+s {
			t.Fatalf("ParseTrustDomain(%q) = %q (%s)", s, td.Name(), td.IDString())
		}
		again, err := ParseTrustDomain(td.Name())
		if err != nil || again != td {
			t.Fatalf("%q re-parses to %v, %v", s, again, err)
		}
		id, err := ParseWorkloadID(td.IDString() + "/ns/default/sa/default")
		if err != nil || id.TrustDomain() != td {
			t.Fatalf("a workload ID of %q: %v, %v", s, id, err)
		}
	})
}

var fuzzSPIFFEStrings = []string{
	"spiffe://cluster.local/ns/shop/sa/cart",
	"spiffe://cluster.local/ns/a/sa/b/extra",
	"spiffe://prod.example.org/ns/web-1/sa/default",
	"spiffe://cluster.local",
	"spiffe://cluster.local/",
	"spiffe://Example.org/x",
	"spiffe://",
	"spiffe:///x",
	"spiffe://td/x/",
	"spiffe://td//x",
	"spiffe://td/./x",
	"spiffe://td/%41",
	"spiffe://user@td/x",
	"spiffe://td:8080/x",
	"spiffe://td/x?q=1",
	"spiffe://td/x#f",
	"SPIFFE://td/x",
	"https://td/x",
	"td_under-score.dot/x",
	"cluster.local",
	"a",
}

// fuzzPKIPEM is a test PKI made once by newTestPKI with its clock at
// fuzzPKITime: the root and node CA of cluster.local, leaves they issued
// (cart carries labels in its claims extension, revoked is revoked in
// fuzzVerifier, server-only has the serverAuth EKU alone, root-signed is
// signed by the root directly), a node CA and leaf of another root of the
// same trust domain name (foreign), and a federated domain (other). It is
// fixed so that a failing input found by the fuzzer still reproduces.
const fuzzPKIPEM = `-----BEGIN CERTIFICATE-----
Name: root

MIIBzjCCAXSgAwIBAgIQP9lsEiS4tx+ZNI0dWdThbzAKBggqhkjOPQQDAjA0MQ0w
CwYDVQQKEwR6dGNuMSMwIQYDVQQDExp6dGNuIHJvb3QgQ0EgY2x1c3Rlci5sb2Nh
bDAeFw0yNTEyMzEyMzU5MzBaFw0yNzAxMDEwMDAwMDBaMDQxDTALBgNVBAoTBHp0
Y24xIzAhBgNVBAMTGnp0Y24gcm9vdCBDQSBjbHVzdGVyLmxvY2FsMFkwEwYHKoZI
zj0CAQYIKoZIzj0DAQcDQgAEAMjlwSrm1IIEDxWa4WjYIhx7Ajd/A9OFVqmXJkb4
MdV1HwzBrS0X1dYy2Cz9sQdCpe1bnQczt4nglug2QcqUsKNoMGYwDgYDVR0PAQH/
BAQDAgEGMBIGA1UdEwEB/wQIMAYBAf8CAQEwHQYDVR0OBBYEFNW3Sh+wpWSRLhEI
xhyqUjX5C483MCEGA1UdEQQaMBiGFnNwaWZmZTovL2NsdXN0ZXIubG9jYWwwCgYI
KoZIzj0EAwIDSAAwRQIhAMGz6lRESgPUVGTWbvYhZmSQ7kKMH7FjmjY+rOPYz/Qt
AiBiq1Bi/kxlzHo+5ppDxy550JFZdRU1+dUcjvm2jJUh/w==
-----END CERTIFICATE-----
-----BEGIN CERTIFICATE-----
Name: node

MIIB6TCCAZCgAwIBAgIQP8azKK4ip5HjNVsKdDuT+zAKBggqhkjOPQQDAjA0MQ0w
CwYDVQQKEwR6dGNuMSMwIQYDVQQDExp6dGNuIHJvb3QgQ0EgY2x1c3Rlci5sb2Nh
bDAeFw0yNTEyMzEyMzU5MzBaFw0yNjAxMzEwMDAwMDBaMC0xDTALBgNVBAoTBHp0
Y24xHDAaBgNVBAMTE3p0Y24gbm9kZSBDQSBub2RlLWEwWTATBgcqhkjOPQIBBggq
hkjOPQMBBwNCAAS6bWLDlLXQ/kKouW1lIWgT84SjV539I7jUXCCkb9InxHejM5h9
SGAkERGF3zKHbZ7XCUSQusDhwS8QA2FZJLhGo4GKMIGHMA4GA1UdDwEB/wQEAwIB
BjASBgNVHRMBAf8ECDAGAQH/AgEAMB0GA1UdDgQWBBSqsNRLm4PL3NoWoTS56Xkg
kmKDMDAfBgNVHSMEGDAWgBTVt0ofsKVkkS4RCMYcqlI1+QuPNzAhBgNVHREEGjAY
hhZzcGlmZmU6Ly9jbHVzdGVyLmxvY2FsMAoGCCqGSM49BAMCA0cAMEQCIBj1Jqmh
NYjoA9jhC0hvfNEvuYejivWCJhbgDOQ8VK2vAiAPSEzAaZPrxNYmSrQpnS5WKNeU
9nheZe6QGvbwWY5MZQ==
-----END CERTIFICATE-----
-----BEGIN CERTIFICATE-----
Name: cart

MIICGTCCAb6gAwIBAgIQS81FDw451E2EzcWLGcQY2DAKBggqhkjOPQQDAjAtMQ0w
CwYDVQQKEwR6dGNuMRwwGgYDVQQDExN6dGNuIG5vZGUgQ0Egbm9kZS1hMB4XDTI1
MTIzMTIzNTkzMFoXDTI2MDEwMTAxMDAwMFowADBZMBMGByqGSM49AgEGCCqGSM49
AwEHA0IABCQyC+PNnbesoy4H5LBanYgcaxTL+0xfRT/+o0MC6NQbs74hNFeErZbk
yLwInfpLEr9cgZDEVKbXWGi0F9p+1yCjgewwgekwDgYDVR0PAQH/BAQDAgeAMB0G
A1UdJQQWMBQGCCsGAQUFBwMBBggrBgEFBQcDAjAMBgNVHRMBAf8EAjAAMB8GA1Ud
IwQYMBaAFKqw1Eubg8vc2hahNLnpeSCSYoMwMDQGA1UdEQEB/wQqMCiGJnNwaWZm
ZTovL2NsdXN0ZXIubG9jYWwvbnMvc2hvcC9zYS9jYXJ0MFMGCysGAQQBg89v9SAB
BEQwQgIBAQwIcG9kLWNhcnQwMzALDANhcHAMBGNhcnQwCwwDZW52DARwcm9kMBcM
EGV4YW1wbGUuY29tL3RpZXIMA3dlYjAKBggqhkjOPQQDAgNJADBGAiEArRVYdQdb
aM41gQJlCNWgB2ua08BcVmwNci0LfZXYGEgCIQCEkatuYcigKyI2nIwM9Qs+vgVp
zFHxqRA3vzO4jzRvSw==
-----END CERTIFICATE-----
-----BEGIN CERTIFICATE-----
Name: revoked

MIIB5zCCAY6gAwIBAgIQPieKGZ5GEPyP4BYJ0kVpbTAKBggqhkjOPQQDAjAtMQ0w
CwYDVQQKEwR6dGNuMRwwGgYDVQQDExN6dGNuIG5vZGUgQ0Egbm9kZS1hMB4XDTI1
MTIzMTIzNTkzMFoXDTI2MDEwMTAxMDAwMFowADBZMBMGByqGSM49AgEGCCqGSM49
AwEHA0IABG2BvcUC1sD/RNAkcjoBuLMAvg+Teqsi2swfg5Z4Q17JryBcan4EM/nW
MhuV512KugNtRUfxshAOaloEMuBuvK+jgbwwgbkwDgYDVR0PAQH/BAQDAgeAMB0G
A1UdJQQWMBQGCCsGAQUFBwMBBggrBgEFBQcDAjAMBgNVHRMBAf8EAjAAMB8GA1Ud
IwQYMBaAFKqw1Eubg8vc2hahNLnpeSCSYoMwMDQGA1UdEQEB/wQqMCiGJnNwaWZm
ZTovL2NsdXN0ZXIubG9jYWwvbnMvYS9zYS9yZXZva2VkMCMGCysGAQQBg89v9SAB
BBQwEgIBAQwLcG9kLXJldm9rZWQwADAKBggqhkjOPQQDAgNHADBEAiBO/b2XdNCn
CHs5ZC+MYe0hXCXJVVraOI1jhWj/jFq5fQIgXLXz+JEIXKHYtE0RAW5lZIEyXv3R
C6O236oE7NkeYB4=
-----END CERTIFICATE-----
-----BEGIN CERTIFICATE-----
Name: server-only

MIIBqzCCAVKgAwIBAgICEJIwCgYIKoZIzj0EAwIwLTENMAsGA1UEChMEenRjbjEc
MBoGA1UEAxMTenRjbiBub2RlIENBIG5vZGUtYTAeFw0yNTEyMzEyMzU5MDBaFw0y
NjAxMDEwMTAwMDBaMAAwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAATwECPmNdpd
8JPLgACtBOJ7HRXE1zjSBoffuwl6H2UreSjOeNngBM0L8AaCDEY7G58tkPXmqw7A
dJytYlwKR1bTo4GOMIGLMA4GA1UdDwEB/wQEAwIHgDATBgNVHSUEDDAKBggrBgEF
BQcDATAMBgNVHRMBAf8EAjAAMB8GA1UdIwQYMBaAFKqw1Eubg8vc2hahNLnpeSCS
YoMwMDUGA1UdEQEB/wQrMCmGJ3NwaWZmZTovL2NsdXN0ZXIubG9jYWwvbnMvd2Vi
L3NhL3NlcnZlcjAKBggqhkjOPQQDAgNHADBEAiAQP9bUn3EtuuGybCE1Kb01dP51
m9GsGrmMEGBO84GvowIgV9qFNebNQqaVlRoFSTJ2OZ/cf5jrSQd1L3xDdwEU9cc=
-----END CERTIFICATE-----
-----BEGIN CERTIFICATE-----
Name: root-signed

MIIBtDCCAVqgAwIBAgICEJIwCgYIKoZIzj0EAwIwNDENMAsGA1UEChMEenRjbjEj
MCEGA1UEAxMaenRjbiByb290IENBIGNsdXN0ZXIubG9jYWwwHhcNMjUxMjMxMjM1
OTAwWhcNMjYwMTAxMDEwMDAwWjAAMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE
US95vv7DbcV3aMRl54M+CLaMCrBWwS0gTBHu95VV3FsAL8OqBe01qzukMHfmbH/C
zAFNuZS1F9XQ1BP4AGY9bqOBjzCBjDAOBgNVHQ8BAf8EBAMCB4AwEwYDVR0lBAww
CgYIKwYBBQUHAwIwDAYDVR0TAQH/BAIwADAfBgNVHSMEGDAWgBTVt0ofsKVkkS4R
CMYcqlI1+QuPNzA2BgNVHREBAf8ELDAqhihzcGlmZmU6Ly9jbHVzdGVyLmxvY2Fs
L25zL3Jvb3Qvc2EvZGlyZWN0MAoGCCqGSM49BAMCA0gAMEUCIQDT99xAO6vlIthU
sd3xv1MwVMTZNCyycSTkzc5bCOKuTgIgROIQ7q5SdOMh0/4YQUb95tgRUHw/lORG
Ka+n3vzimHM=
-----END CERTIFICATE-----
-----BEGIN CERTIFICATE-----
Name: foreign-node

MIIB6TCCAZCgAwIBAgIQBQecw8rDYz75m/2WRpemSzAKBggqhkjOPQQDAjA0MQ0w
CwYDVQQKEwR6dGNuMSMwIQYDVQQDExp6dGNuIHJvb3QgQ0EgY2x1c3Rlci5sb2Nh
bDAeFw0yNTEyMzEyMzU5MzBaFw0yNjAxMzEwMDAwMDBaMC0xDTALBgNVBAoTBHp0
Y24xHDAaBgNVBAMTE3p0Y24gbm9kZSBDQSBub2RlLWEwWTATBgcqhkjOPQIBBggq
hkjOPQMBBwNCAAQdW5IlRAhCH8XqTb0FnbfivpeTgjseydxmnXHGaxlT3OE219xG
BN5Vn2H+0B9WkI/JSyAklbiXJbrcw3NSSKVYo4GKMIGHMA4GA1UdDwEB/wQEAwIB
BjASBgNVHRMBAf8ECDAGAQH/AgEAMB0GA1UdDgQWBBTDvH44tvGWLALYPt3+v6Tm
IsE9DjAfBgNVHSMEGDAWgBR72xuCvhqywLv6zxFpsXXiCOr73zAhBgNVHREEGjAY
hhZzcGlmZmU6Ly9jbHVzdGVyLmxvY2FsMAoGCCqGSM49BAMCA0cAMEQCIF5/O2FO
gG74C/UTXCQ2OP4+WCs5NldrSnVcTyjUdVBpAiAwApJA1ZLY+0irzNE81xPQbpIS
5aL6bTQfXMsq3KVPFA==
-----END CERTIFICATE-----
-----BEGIN CERTIFICATE-----
Name: foreign-leaf

MIIB3TCCAYKgAwIBAgIQMEbbTbhEWPJ/JUUyowx6zzAKBggqhkjOPQQDAjAtMQ0w
CwYDVQQKEwR6dGNuMRwwGgYDVQQDExN6dGNuIG5vZGUgQ0Egbm9kZS1hMB4XDTI1
MTIzMTIzNTkzMFoXDTI2MDEwMTAxMDAwMFowADBZMBMGByqGSM49AgEGCCqGSM49
AwEHA0IABFpECvAXo1txvoPcrhsxzVpkyZH3yj0BpE7qJ1f3dl0CJibsdCUxPlEC
It2Gnc8dGopGsGnrhFl4yzjwiMtqUMOjgbAwga0wDgYDVR0PAQH/BAQDAgeAMB0G
A1UdJQQWMBQGCCsGAQUFBwMBBggrBgEFBQcDAjAMBgNVHRMBAf8EAjAAMB8GA1Ud
IwQYMBaAFMO8fji28ZYsAtg+3f6/pOYiwT0OMC4GA1UdEQEB/wQkMCKGIHNwaWZm
ZTovL2NsdXN0ZXIubG9jYWwvbnMvYS9zYS9iMB0GCysGAQQBg89v9SABBA4wDAIB
AQwFcG9kLWIwADAKBggqhkjOPQQDAgNJADBGAiEAkSakd3Q6Rvh0JAH3ER45B20a
gFEtYZvAtu9DLk++j2sCIQCecrJ6gnxOAUieO5OIZ9jjoUoNKgU8iynIS5vHyXL3
JQ==
-----END CERTIFICATE-----
-----BEGIN CERTIFICATE-----
Name: other-root

MIIBwjCCAWigAwIBAgIQYn4xVsAyPRIzIQtrPPMAejAKBggqhkjOPQQDAjAwMQ0w
CwYDVQQKEwR6dGNuMR8wHQYDVQQDExZ6dGNuIHJvb3QgQ0Egb3RoZXIub3JnMB4X
DTI1MTIzMTIzNTkzMFoXDTI3MDEwMTAwMDAwMFowMDENMAsGA1UEChMEenRjbjEf
MB0GA1UEAxMWenRjbiByb290IENBIG90aGVyLm9yZzBZMBMGByqGSM49AgEGCCqG
SM49AwEHA0IABETitwhrGBgSHvT/UlxS7/SKHYmCOwRTn2uf2fwCYC8L/b0LaXDf
8RRLLphcZQqKlSaL1EyMROiq0YHBsatbLhqjZDBiMA4GA1UdDwEB/wQEAwIBBjAS
BgNVHRMBAf8ECDAGAQH/AgEBMB0GA1UdDgQWBBSN02wkRmsg0JRXJHQq+mjRE3KD
kTAdBgNVHREEFjAUhhJzcGlmZmU6Ly9vdGhlci5vcmcwCgYIKoZIzj0EAwIDSAAw
RQIgJT9A69QcKk2TwZCVv3ZJF0DWUWqZkwZhQnTIyzc4isICIQC4tPDJxJLV9aga
ISZMB3HPYDi0js+YwBbI9BDk4AiKDQ==
-----END CERTIFICATE-----
-----BEGIN CERTIFICATE-----
Name: other-node

MIIB4jCCAYigAwIBAgIQULJwGe3yABdsjX+irWyISjAKBggqhkjOPQQDAjAwMQ0w
CwYDVQQKEwR6dGNuMR8wHQYDVQQDExZ6dGNuIHJvb3QgQ0Egb3RoZXIub3JnMB4X
DTI1MTIzMTIzNTkzMFoXDTI2MDEzMTAwMDAwMFowLTENMAsGA1UEChMEenRjbjEc
MBoGA1UEAxMTenRjbiBub2RlIENBIG5vZGUtYTBZMBMGByqGSM49AgEGCCqGSM49
AwEHA0IABCdSNOfW9CCKikEeCM2DuC3bIb/g3w5NrM3Um13f+fw8nzTJ7Qu7rBZM
atsMJIOIoenCFxc5NVBP1V6ONVTGA0ejgYYwgYMwDgYDVR0PAQH/BAQDAgEGMBIG
A1UdEwEB/wQIMAYBAf8CAQAwHQYDVR0OBBYEFKE7YHryo14GJONGaM3tz8CdJYks
MB8GA1UdIwQYMBaAFI3TbCRGayDQlFckdCr6aNETcoORMB0GA1UdEQQWMBSGEnNw
aWZmZTovL290aGVyLm9yZzAKBggqhkjOPQQDAgNIADBFAiEAkt9QQ93o4rCFkaey
DZbb08cQ9Xmf/koHWeafA6Rccr0CIFdrQRsFQ1Mz+77lciDyFpB8HTmx2Hym1ZIr
Td9NRGO/
-----END CERTIFICATE-----
-----BEGIN CERTIFICATE-----
Name: other-leaf

MIIB2TCCAX6gAwIBAgIQAtRb9FuC9zqVOw8KTK3gtTAKBggqhkjOPQQDAjAtMQ0w
CwYDVQQKEwR6dGNuMRwwGgYDVQQDExN6dGNuIG5vZGUgQ0Egbm9kZS1hMB4XDTI1
MTIzMTIzNTkzMFoXDTI2MDEwMTAxMDAwMFowADBZMBMGByqGSM49AgEGCCqGSM49
AwEHA0IABFTraYMf2l4bYv7kqJKrjQLsfRE7rMYqz4GOPIFSp70eQtyuJQysONoi
wuQXwzvScDboIAfauoW0GLHfi8QtkbejgawwgakwDgYDVR0PAQH/BAQDAgeAMB0G
A1UdJQQWMBQGCCsGAQUFBwMBBggrBgEFBQcDAjAMBgNVHRMBAf8EAjAAMB8GA1Ud
IwQYMBaAFKE7YHryo14GJONGaM3tz8CdJYksMCoGA1UdEQEB/wQgMB6GHHNwaWZm
ZTovL290aGVyLm9yZy9ucy94L3NhL3kwHQYLKwYBBAGDz2/1IAEEDjAMAgEBDAVw
b2QteTAAMAoGCCqGSM49BAMCA0kAMEYCIQDZAgSC+ddPwxAFDduRwu874Rhl9hKA
hWw2aD1yNom5wAIhANgsjCF1co5TEc8wX7Z3FaKG5aU9yCwR2WiA6hVn61V0
-----END CERTIFICATE-----
`

// fuzzPKITime is when every certificate of fuzzPKIPEM is valid.
var fuzzPKITime = time.Date(2026, 1, 1, 0, 10, 0, 0, time.UTC)

// fuzzPKI parses fuzzPKIPEM by the Name header of each block.
func fuzzPKI(f *testing.F) map[string]*x509.Certificate {
	f.Helper()
	certs := map[string]*x509.Certificate{}
	rest := []byte(fuzzPKIPEM)
	for {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			f.Fatal(err)
		}
		certs[b.Headers["Name"]] = c
	}
	return certs
}

// fuzzUsages are what the usage byte of FuzzVerify selects.
var fuzzUsages = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageAny}

// FuzzVerify feeds Verifier.Verify chains of up to three DER certificates
// (an empty second or third is left out) and a usage. It must not panic,
// and must accept only what crypto/x509 verifies too, against the root of
// the leaf's own trust domain alone, at the verifier's time, for that
// usage: with a chain that ends at that root, an ID with a path, valid
// claims, and nothing revoked.
func FuzzVerify(f *testing.F) {
	pki := fuzzPKI(f)
	roots := map[string]*x509.Certificate{"cluster.local": pki["root"], "other.org": pki["other-root"]}
	bundles := NewBundles()
	for td, root := range roots {
		bundles.Set(spiffeid.RequireTrustDomainFromString(td), []*x509.Certificate{root})
	}
	revoked := NewRevocations()
	revoked.Revoke(pki["revoked"])
	v := NewVerifier(bundles, revoked, WithVerifyClock(func() time.Time { return fuzzPKITime }))

	for _, ok := range [][]*x509.Certificate{{pki["cart"], pki["node"]}, {pki["other-leaf"], pki["other-node"]}} {
		if _, err := v.Verify(rawChain(ok), x509.ExtKeyUsageClientAuth); err != nil {
			f.Fatalf("a valid seed does not verify: %v", err)
		}
	}
	raw := func(name string) []byte {
		if name == "" {
			return nil
		}
		return pki[name].Raw
	}
	for _, s := range []struct {
		chain [3]string
		usage uint8
	}{
		{[3]string{"cart", "node"}, 0},
		{[3]string{"cart", "node", "root"}, 1},
		{[3]string{"cart"}, 2},
		{[3]string{"revoked", "node"}, 0},
		{[3]string{"server-only", "node"}, 0},
		{[3]string{"server-only", "node"}, 1},
		{[3]string{"root-signed"}, 0},
		{[3]string{"root-signed", "root"}, 2},
		{[3]string{"foreign-leaf", "foreign-node"}, 0},
		{[3]string{"cart", "foreign-node"}, 0},
		{[3]string{"other-leaf", "other-node"}, 0},
		{[3]string{"cart", "other-node"}, 0},
		{[3]string{"node", "root"}, 2},
		{[3]string{"root"}, 2},
	} {
		f.Add(raw(s.chain[0]), raw(s.chain[1]), raw(s.chain[2]), s.usage)
	}
	f.Add([]byte{}, []byte{}, []byte{}, uint8(0))

	f.Fuzz(func(t *testing.T, leafDER, second, third []byte, usageSel uint8) {
		rawCerts := [][]byte{leafDER}
		for _, c := range [][]byte{second, third} {
			if len(c) > 0 {
				rawCerts = append(rawCerts, c)
			}
		}
		usage := fuzzUsages[int(usageSel)%len(fuzzUsages)]
		peer, err := v.Verify(rawCerts, usage)
		if err != nil {
			if peer != nil {
				t.Fatalf("Verify failed (%v) but returned a peer", err)
			}
			return
		}
		certs := make([]*x509.Certificate, len(rawCerts))
		for i, r := range rawCerts {
			if certs[i], err = x509.ParseCertificate(r); err != nil {
				t.Fatalf("Verify accepted a chain whose certificate %d does not parse: %v", i, err)
			}
		}
		leaf := certs[0]
		id, err := x509svid.IDFromCert(leaf)
		if err != nil || id != peer.ID || id.Path() == "" {
			t.Fatalf("peer %v from a leaf naming %v (%v)", peer.ID, id, err)
		}
		root := roots[id.TrustDomain().Name()]
		if root == nil {
			t.Fatalf("accepted %v, of a trust domain without a bundle", id)
		}
		if len(peer.Chain) < 2 || !peer.Chain[0].Equal(leaf) || !peer.Chain[len(peer.Chain)-1].Equal(root) {
			t.Fatalf("the verified chain of %v does not go from its leaf to the root of %s", id, id.TrustDomain())
		}
		intermediates := x509.NewCertPool()
		for _, c := range certs[1:] {
			intermediates.AddCert(c)
		}
		rootPool := x509.NewCertPool()
		rootPool.AddCert(root)
		if _, err := leaf.Verify(x509.VerifyOptions{
			Roots: rootPool, Intermediates: intermediates, CurrentTime: fuzzPKITime, KeyUsages: []x509.ExtKeyUsage{usage},
		}); err != nil {
			t.Fatalf("Verify accepted %v as %d, crypto/x509 does not: %v", id, usage, err)
		}
		if leaf.IsCA || leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
			t.Fatalf("accepted a leaf that is a CA or cannot sign: %v", id)
		}
		for _, c := range peer.Chain {
			if revoked.IsRevoked(c) {
				t.Fatalf("accepted a chain with revoked serial %s", c.SerialNumber.Text(16))
			}
		}
		if err := ValidateClaims(peer.Claims); err != nil {
			t.Fatalf("accepted claims that do not validate: %v", err)
		}
	})
}

// FuzzClaimsExtension feeds the claims decoder (claimsFromCert) the value
// of a leaf's claims extension. What it accepts must be within the bounds
// (64 labels, 8 KiB, valid labels), must encode again, and the encoding
// must decode to the same claims and be canonical: encoding those gives
// the same bytes.
func FuzzClaimsExtension(f *testing.F) {
	for _, c := range pkiLeaves(f) {
		for _, ext := range c.Extensions {
			if ext.Id.Equal(ClaimsOID) {
				f.Add(ext.Value)
			}
		}
	}
	many := map[string]string{}
	for i := range maxLabels {
		many[fmt.Sprintf("example.com/k%02d", i)] = strings.Repeat("v", maxLabelValueLen)
	}
	for _, c := range []Claims{
		{},
		{WorkloadUID: "pod-cart", Labels: map[string]string{"app": "cart", "env": "prod"}},
		{WorkloadUID: strings.Repeat("u", maxWorkloadUIDLen), Labels: many},
		{Labels: map[string]string{"a.b/C_d-e": "", "k": "0"}},
	} {
		ext, err := c.extension()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(ext.Value)
	}
	for _, v := range []claimsASN1{
		{Version: 2},
		{Version: 1, Labels: []labelASN1{{"b", "1"}, {"a", "2"}}},
		{Version: 1, Labels: []labelASN1{{"a", "1"}, {"a", "2"}}},
		{Version: 1, Labels: []labelASN1{{"-bad", "1"}}},
	} {
		der, err := asn1.Marshal(v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(der)
		f.Add(append(der, 0))
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := claimsFromCert(&x509.Certificate{Extensions: []pkix.Extension{{Id: ClaimsOID, Value: data}}})
		if err != nil {
			return
		}
		if len(data) > maxClaimsEncodeLen || len(c.Labels) > maxLabels || len(c.WorkloadUID) > maxWorkloadUIDLen {
			t.Fatalf("accepted %d bytes with %d labels and a %d-byte UID", len(data), len(c.Labels), len(c.WorkloadUID))
		}
		if err := ValidateClaims(c); err != nil {
			t.Fatalf("accepted claims that do not validate: %v", err)
		}
		ext, err := c.extension()
		if err != nil {
			t.Fatalf("accepted %d bytes (%d labels, %d-byte UID %q) that do not encode again: %v", len(data), len(c.Labels), len(c.WorkloadUID), fuzzShort(c.WorkloadUID), err)
		}
		back, err := claimsFromCert(&x509.Certificate{Extensions: []pkix.Extension{ext}})
		if err != nil || !reflect.DeepEqual(back, c) {
			t.Fatalf("claims %+q encode to what decodes to %+q, %v", c, back, err)
		}
		again, err := back.extension()
		if err != nil || !bytes.Equal(again.Value, ext.Value) {
			t.Fatalf("the encoding of %+q is not canonical: %x then %x (%v)", c, ext.Value, again.Value, err)
		}
	})
}

// fuzzShort cuts s for a failure message.
func fuzzShort(s string) string {
	if len(s) > 16 {
		return s[:16] + "…"
	}
	return s
}

// pkiLeaves are the leaves of fuzzPKIPEM.
func pkiLeaves(f *testing.F) []*x509.Certificate {
	var out []*x509.Certificate
	for _, c := range fuzzPKI(f) {
		if !c.IsCA {
			out = append(out, c)
		}
	}
	return out
}
