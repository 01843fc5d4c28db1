package tlsid

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// LoadOrCreateSecret returns the size-byte secret stored in path, creating
// it from crypto/rand (mode 0600, parent directories 0700) when the file does
// not exist. It holds node secrets such as the QUIC stateless reset key,
// which must survive restarts.
func LoadOrCreateSecret(path string, size int) ([]byte, error) {
	if size <= 0 {
		return nil, fmt.Errorf("tlsid: secret %s: size %d is not positive", path, size)
	}
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if len(b) != size {
			return nil, fmt.Errorf("tlsid: secret %s holds %d bytes, want %d", path, len(b), size)
		}
		return b, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("tlsid: read secret %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("tlsid: create directory of %s: %w", path, err)
	}
	b = make([]byte, size)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("tlsid: generate secret %s: %w", path, err)
	}
	if err := writeFileAtomic(path, b, 0o600); err != nil {
		return nil, err
	}
	return b, nil
}

// writeFileAtomic replaces path with data durably: a temporary file in the
// same directory (created 0600, so secrets are never readable by others) is
// written, synced, given perm, renamed over path, and the directory synced.
func writeFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	dir, name := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+name+".tmp*")
	if err != nil {
		return fmt.Errorf("tlsid: write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
			err = fmt.Errorf("tlsid: write %s: %w", path, err)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// parseCerts returns every CERTIFICATE block of data; name is the file the
// data came from, for errors.
func parseCerts(data []byte, name string) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("tlsid: parse certificate %d in %s: %w", len(certs)+1, name, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("tlsid: %s holds no PEM certificate", name)
	}
	return certs, nil
}

// parseKey returns the first private key in data (PKCS#8, SEC 1 or PKCS#1).
func parseKey(data []byte, name string) (crypto.Signer, error) {
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, fmt.Errorf("tlsid: %s holds no PEM private key", name)
		}
		var key any
		var err error
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("tlsid: parse private key in %s: %w", name, err)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("tlsid: private key in %s is a %T, which cannot sign", name, key)
		}
		return signer, nil
	}
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func encodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("tlsid: encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
