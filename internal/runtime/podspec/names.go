package podspec

import (
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Name checks. The Kubernetes ones use apimachinery's own validation, so a
// pods file accepts exactly the names a cluster would, and says why in the
// words kubectl uses. Each returns why s is invalid, or "" if it is valid.

// dnsLabel checks an RFC 1123 label: pod, namespace and node names.
func dnsLabel(s string) string { return why(validation.IsDNS1123Label(s)) }

// dnsSubdomain checks an RFC 1123 subdomain: service account names.
func dnsSubdomain(s string) string { return why(validation.IsDNS1123Subdomain(s)) }

// labelKey checks a label key: an optional DNS subdomain prefix and '/',
// then a name of at most 63 characters.
func labelKey(s string) string { return why(validation.IsQualifiedName(s)) }

func labelValue(s string) string { return why(validation.IsValidLabelValue(s)) }

// portName checks an IANA service name, as Kubernetes named ports.
func portName(s string) string { return why(validation.IsValidPortName(s)) }

// envName checks a portable environment variable name. Kubernetes allows
// more ('.', '-'), but a shell cannot read such variables, and commands
// here are often shell lines.
func envName(s string) string { return why(validation.IsCIdentifier(s)) }

// why joins apimachinery's reasons, mending the doubled space its
// RegexError leaves between examples ("'a',  or 'b'").
func why(msgs []string) string {
	return strings.ReplaceAll(strings.Join(msgs, "; "), "',  or '", "' or '")
}
