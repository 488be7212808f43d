package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
)

// KeyType names the algorithm of a newly generated key.
type KeyType string

// Supported key types. P-256 is the default: it is the fastest to sign and
// verify in Go and every TLS stack accepts it.
const (
	KeyECDSAP256 KeyType = "ecdsa-p256"
	KeyECDSAP384 KeyType = "ecdsa-p384"
)

// ParseKeyType validates a key type name from configuration or flags.
func ParseKeyType(s string) (KeyType, error) {
	switch kt := KeyType(s); kt {
	case KeyECDSAP256, KeyECDSAP384:
		return kt, nil
	case "":
		return KeyECDSAP256, nil
	default:
		return "", fmt.Errorf("identity: unknown key type %q (want %s or %s)", s, KeyECDSAP256, KeyECDSAP384)
	}
}

func generateKey(kt KeyType) (crypto.Signer, error) {
	var curve elliptic.Curve
	switch kt {
	case KeyECDSAP256, "":
		curve = elliptic.P256()
	case KeyECDSAP384:
		curve = elliptic.P384()
	default:
		return nil, fmt.Errorf("identity: unknown key type %q", kt)
	}
	key, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("identity: generate %s key: %w", kt, err)
	}
	return key, nil
}
