package identity

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// File names of CA material in a CA directory.
const (
	RootCertFile   = "root.crt"
	RootKeyFile    = "root.key"
	NodeCertFile   = "node.crt" // node CA, then its issuers short of the root
	NodeKeyFile    = "node.key"
	SVIDCertFile   = "svid.crt" // leaf, then intermediates
	SVIDKeyFile    = "svid.key"
	BundleCertFile = "bundle.crt"
)

// WriteRootCA writes root.crt and root.key (0600) into dir. It refuses to
// replace existing files unless force is set: overwriting a root silently
// would orphan every certificate it signed.
func WriteRootCA(dir string, ca *CA, force bool) error {
	if !ca.IsRoot() {
		return errors.New("identity: not a root CA")
	}
	keyPEM, err := encodeKey(ca.Signer())
	if err != nil {
		return err
	}
	return writeFiles(dir, force, []file{
		{RootCertFile, EncodeCertificates([]*x509.Certificate{ca.Certificate()}), 0o644},
		{RootKeyFile, keyPEM, 0o600},
	})
}

// WriteNodeCA writes a node intermediate: node.crt, node.key (0600) and the
// root bundle as root.crt, so that the directory alone lets an agent sign
// and verify.
func WriteNodeCA(dir string, ca *CA, force bool) error {
	keyPEM, err := encodeKey(ca.Signer())
	if err != nil {
		return err
	}
	return writeFiles(dir, force, []file{
		{NodeCertFile, EncodeCertificates(ca.Chain()), 0o644},
		{NodeKeyFile, keyPEM, 0o600},
		{RootCertFile, EncodeCertificates(ca.Roots()), 0o644},
	})
}

// WriteSVID writes svid.crt, svid.key (0600) and bundle.crt.
func WriteSVID(dir string, svid *SVID, roots []*x509.Certificate, force bool) error {
	certPEM, keyPEM, err := svid.MarshalPEM()
	if err != nil {
		return err
	}
	return writeFiles(dir, force, []file{
		{SVIDCertFile, certPEM, 0o644},
		{SVIDKeyFile, keyPEM, 0o600},
		{BundleCertFile, EncodeCertificates(roots), 0o644},
	})
}

// LoadCA loads the CA in dir: the node intermediate if node.key is there,
// else the root. Each problem is reported with the file it is in.
func LoadCA(dir string, opts ...CAOption) (*CA, error) {
	rootPath := filepath.Join(dir, RootCertFile)
	roots, err := LoadCertificates(rootPath)
	if err != nil {
		return nil, err
	}
	certPath, keyPath := rootPath, filepath.Join(dir, RootKeyFile)
	if _, err := os.Stat(filepath.Join(dir, NodeKeyFile)); err == nil {
		certPath, keyPath = filepath.Join(dir, NodeCertFile), filepath.Join(dir, NodeKeyFile)
	}
	chain, err := LoadCertificates(certPath)
	if err != nil {
		return nil, err
	}
	key, err := LoadPrivateKey(keyPath)
	if err != nil {
		return nil, err
	}
	var parents []*x509.Certificate
	if certPath != rootPath {
		parents = chain[1:]
	}
	ca, err := NewCA(chain[0], key, parents, roots, opts...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certPath, err)
	}
	return ca, nil
}

// LoadCertificates reads every certificate of a PEM file.
func LoadCertificates(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	certs, err := ParseCertificatesPEM(data)
	if err != nil {
		return nil, fmt.Errorf("identity: %s: %w", path, err)
	}
	return certs, nil
}

// ParseCertificatesPEM decodes PEM CERTIFICATE blocks. Anything else in the
// input, including trailing garbage, is an error: a truncated or corrupt
// file must not load as a shorter chain.
func ParseCertificatesPEM(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("unexpected PEM block %q, want CERTIFICATE", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM-encoded certificate found (corrupt or empty file?)")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("corrupt PEM after certificate %d", len(certs))
	}
	return certs, nil
}

// LoadPrivateKey reads a PEM private key (PKCS#8, SEC 1 or PKCS#1). A key
// file that group or others can read is refused: it may already be copied.
func LoadPrivateKey(path string) (crypto.Signer, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("identity: %s: private key is accessible by group or others (mode %04o); run chmod 600 %s", path, perm, path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("identity: %s: no PEM-encoded private key found (corrupt file?)", path)
	}
	var key any
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("identity: %s: unexpected PEM block %q, want a private key", path, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("identity: %s: %w", path, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("identity: %s: key of type %T cannot sign", path, key)
	}
	return signer, nil
}

func encodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("identity: marshal private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

type file struct {
	name string
	data []byte
	perm fs.FileMode
}

// writeFiles writes each file through a temporary file and a rename, so a
// crash never leaves a half-written key or certificate behind.
func writeFiles(dir string, force bool, files []file) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	if !force {
		for _, f := range files {
			p := filepath.Join(dir, f.name)
			if _, err := os.Lstat(p); err == nil {
				return fmt.Errorf("identity: %s already exists; use --force to overwrite", p)
			}
		}
	}
	for _, f := range files {
		tmp, err := os.CreateTemp(dir, "."+f.name+".*")
		if err != nil {
			return fmt.Errorf("identity: %w", err)
		}
		// Chmod before writing: a key must never exist with a wider mode.
		err = tmp.Chmod(f.perm)
		if err == nil {
			_, err = tmp.Write(f.data)
		}
		if err == nil {
			err = tmp.Sync()
		}
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp.Name(), filepath.Join(dir, f.name))
		}
		if err != nil {
			os.Remove(tmp.Name())
			return fmt.Errorf("identity: write %s: %w", filepath.Join(dir, f.name), err)
		}
	}
	return nil
}
