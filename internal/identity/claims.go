package identity

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// ClaimsOID identifies the ztcn workload-claims extension:
// 1.3.6.1.4.1.59375.15008.1. The arc is provisional until ztcn holds an IANA
// Private Enterprise Number; a UUID-based OID (2.25.…) would need no
// registration but cannot be expressed in encoding/asn1, whose arcs are ints.
// Verifiers decode the value strictly, so a foreign extension that happened
// to reuse the OID is rejected rather than misread.
var ClaimsOID = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 59375, 15008, 1}

// Bounds on what a workload may carry in its certificate. A label set is
// copied into every leaf and parsed on every inbound handshake, so it must
// stay small; the numbers follow Kubernetes' own label limits.
const (
	maxLabels          = 64
	maxLabelKeyLen     = 253 + 1 + 63 // DNS prefix, '/', name
	maxLabelValueLen   = 63
	maxWorkloadUIDLen  = 128
	maxClaimsEncodeLen = 8 << 10
)

// Claims are the facts about a workload that ride in its leaf certificate:
// the labels policy selects on and the pod/container that holds the key.
type Claims struct {
	// WorkloadUID is the pod UID or container ID the SVID was issued to.
	WorkloadUID string
	// Labels are the workload's labels at issue time.
	Labels map[string]string
}

// claimsASN1 is the DER layout of the extension value:
//
//	WorkloadClaims ::= SEQUENCE {
//	    version     INTEGER,              -- 1
//	    workloadUID UTF8String,
//	    labels      SEQUENCE OF Label }   -- sorted by key
//	Label ::= SEQUENCE { key UTF8String, value UTF8String }
type claimsASN1 struct {
	Version     int
	WorkloadUID string `asn1:"utf8"`
	Labels      []labelASN1
}

type labelASN1 struct {
	Key   string `asn1:"utf8"`
	Value string `asn1:"utf8"`
}

const claimsVersion = 1

// ValidateClaims checks the bounds and the label syntax.
func ValidateClaims(c Claims) error {
	if len(c.WorkloadUID) > maxWorkloadUIDLen {
		return fmt.Errorf("identity: workload UID is %d bytes, at most %d allowed", len(c.WorkloadUID), maxWorkloadUIDLen)
	}
	if len(c.Labels) > maxLabels {
		return fmt.Errorf("identity: %d labels, at most %d allowed", len(c.Labels), maxLabels)
	}
	for k, v := range c.Labels {
		if err := validateLabel(k, v); err != nil {
			return err
		}
	}
	return nil
}

func validateLabel(key, value string) error {
	if key == "" || len(key) > maxLabelKeyLen {
		return fmt.Errorf("identity: label key %q must be 1-%d characters", key, maxLabelKeyLen)
	}
	name := key
	if prefix, rest, ok := strings.Cut(key, "/"); ok {
		if prefix == "" || len(prefix) > 253 || !isLabelChars(prefix, true) {
			return fmt.Errorf("identity: label key %q has an invalid prefix", key)
		}
		name = rest
	}
	if name == "" || len(name) > 63 || !isLabelChars(name, false) {
		return fmt.Errorf("identity: label key %q: name must be 1-63 characters [A-Za-z0-9_.-], starting and ending alphanumeric", key)
	}
	if len(value) > maxLabelValueLen || (value != "" && !isLabelChars(value, false)) {
		return fmt.Errorf("identity: label %q: value %q must be at most 63 characters [A-Za-z0-9_.-], starting and ending alphanumeric", key, value)
	}
	return nil
}

// isLabelChars reports whether s starts and ends alphanumeric with only
// [A-Za-z0-9_.-] between (dnsPrefix: lowercase DNS subdomain characters).
func isLabelChars(s string, dnsPrefix bool) bool {
	alnum := func(c byte) bool {
		return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || (!dnsPrefix && c >= 'A' && c <= 'Z')
	}
	if !alnum(s[0]) || !alnum(s[len(s)-1]) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !alnum(c) && c != '-' && c != '.' && !(c == '_' && !dnsPrefix) {
			return false
		}
	}
	return true
}

func (c Claims) extension() (pkix.Extension, error) {
	if err := ValidateClaims(c); err != nil {
		return pkix.Extension{}, err
	}
	keys := make([]string, 0, len(c.Labels))
	for k := range c.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	v := claimsASN1{Version: claimsVersion, WorkloadUID: c.WorkloadUID, Labels: make([]labelASN1, 0, len(keys))}
	for _, k := range keys {
		v.Labels = append(v.Labels, labelASN1{Key: k, Value: c.Labels[k]})
	}
	der, err := asn1.Marshal(v)
	if err != nil {
		return pkix.Extension{}, fmt.Errorf("identity: encode workload claims: %w", err)
	}
	if len(der) > maxClaimsEncodeLen {
		return pkix.Extension{}, fmt.Errorf("identity: workload claims encode to %d bytes, at most %d allowed", len(der), maxClaimsEncodeLen)
	}
	// Non-critical: a verifier that does not know ztcn (openssl, go-spiffe,
	// another mesh) must still accept the SVID.
	return pkix.Extension{Id: ClaimsOID, Critical: false, Value: der}, nil
}

// claimsFromCert decodes the claims of a leaf. It is unexported on purpose:
// claims mean something only once the chain is verified, so the only public
// way to read them is Verifier.Verify.
func claimsFromCert(cert *x509.Certificate) (Claims, error) {
	for _, ext := range cert.Extensions {
		if !ext.Id.Equal(ClaimsOID) {
			continue
		}
		if len(ext.Value) > maxClaimsEncodeLen {
			return Claims{}, fmt.Errorf("identity: workload claims extension is %d bytes, at most %d allowed", len(ext.Value), maxClaimsEncodeLen)
		}
		var v claimsASN1
		rest, err := asn1.Unmarshal(ext.Value, &v)
		if err != nil {
			return Claims{}, fmt.Errorf("identity: decode workload claims: %w", err)
		}
		if len(rest) != 0 {
			return Claims{}, fmt.Errorf("identity: decode workload claims: %d trailing bytes", len(rest))
		}
		if v.Version != claimsVersion {
			return Claims{}, fmt.Errorf("identity: workload claims version %d not supported", v.Version)
		}
		c := Claims{WorkloadUID: v.WorkloadUID, Labels: make(map[string]string, len(v.Labels))}
		for _, l := range v.Labels {
			if _, dup := c.Labels[l.Key]; dup {
				return Claims{}, fmt.Errorf("identity: workload claims repeat label %q", l.Key)
			}
			c.Labels[l.Key] = l.Value
		}
		if err := ValidateClaims(c); err != nil {
			return Claims{}, err
		}
		// Only the encoding ztcn's CA writes is accepted: asn1.Unmarshal
		// also takes other string types and unsorted labels, so one claims
		// set would have many encodings, some of which the CA itself
		// could never issue (a T61 UID that grows past 8 KiB in UTF-8).
		canonical, err := c.extension()
		if err != nil {
			return Claims{}, fmt.Errorf("identity: decode workload claims: %w", err)
		}
		if !bytes.Equal(canonical.Value, ext.Value) {
			return Claims{}, errors.New("identity: workload claims are not in canonical form (UTF8String, labels sorted)")
		}
		return c, nil
	}
	// A leaf without the extension (issued by another SPIFFE CA) is a
	// workload with no labels: it can match identity selectors only.
	return Claims{Labels: map[string]string{}}, nil
}
