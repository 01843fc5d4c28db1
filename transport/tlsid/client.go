package tlsid

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ErrNoLocalCA is returned by FindLocalCA when no data directory holds a CA.
var ErrNoLocalCA = errors.New("tlsid: no local Eddy CA found")

// ClientOptions says which servers a client trusts.
type ClientOptions struct {
	// CAPEM and CAFile are CA certificates to trust (both may be given).
	// Without either and without a pin, the system roots are trusted.
	CAPEM  []byte
	CAFile string
	// PinSHA256 pins a public key by its fingerprint ("sha256:<hex>" as
	// Fingerprint prints it; "sha256-" or no prefix also work). A pin of
	// the server's leaf accepts exactly that key, whatever its chain and
	// names. A pin of a CA in the presented chain accepts leaves that chain
	// to it and match ServerName, as trusting that CA would. With CAPEM or
	// CAFile as well, both the chain and the pin must hold.
	PinSHA256 string
	// ServerName is the name to verify; empty means the dialled host.
	ServerName string
	// NextProtos are the ALPN protocols to offer.
	NextProtos []string
	// InsecureSkipVerify accepts any server. For tests only; ignored when a
	// pin is set.
	InsecureSkipVerify bool
}

// ClientConfig returns a client TLS configuration (TLS 1.3 minimum) that
// trusts what opts says.
func ClientConfig(opts ClientOptions) (*tls.Config, error) {
	conf := &tls.Config{
		MinVersion: tls.VersionTLS13,
		ServerName: opts.ServerName,
		NextProtos: append([]string(nil), opts.NextProtos...),
	}
	if len(opts.CAPEM) > 0 || opts.CAFile != "" {
		conf.RootCAs = x509.NewCertPool()
	}
	if len(opts.CAPEM) > 0 {
		if _, err := parseCerts(opts.CAPEM, "the CA PEM"); err != nil {
			return nil, err
		}
		conf.RootCAs.AppendCertsFromPEM(opts.CAPEM)
	}
	if opts.CAFile != "" {
		data, err := os.ReadFile(opts.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tlsid: read CA %s: %w", opts.CAFile, err)
		}
		cas, err := parseCerts(data, opts.CAFile)
		if err != nil {
			return nil, err
		}
		for _, c := range cas {
			conf.RootCAs.AddCert(c)
		}
	}
	switch {
	case opts.PinSHA256 != "":
		pin, err := parsePin(opts.PinSHA256)
		if err != nil {
			return nil, err
		}
		// Without a CA the pin replaces chain verification, which
		// crypto/tls would otherwise do against the system roots.
		conf.InsecureSkipVerify = conf.RootCAs == nil
		// VerifyConnection, unlike VerifyPeerCertificate, also runs on
		// session resumption.
		conf.VerifyConnection = func(cs tls.ConnectionState) error {
			return verifyPin(cs, pin)
		}
	case opts.InsecureSkipVerify:
		conf.InsecureSkipVerify = true
	}
	return conf, nil
}

// Fingerprint returns "sha256:" and the hex SHA-256 of the certificate's
// SubjectPublicKeyInfo. It survives re-issuing a certificate for the same
// key, and is what PinSHA256 takes.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func parsePin(s string) ([]byte, error) {
	h := strings.ToLower(strings.TrimSpace(s))
	h = strings.TrimPrefix(strings.TrimPrefix(h, "sha256:"), "sha256-")
	h = strings.ReplaceAll(h, ":", "")
	pin, err := hex.DecodeString(h)
	if err != nil || len(pin) != sha256.Size {
		return nil, fmt.Errorf("tlsid: pin %q is not a SHA-256 fingerprint (want sha256:<64 hex digits>)", s)
	}
	return pin, nil
}

func verifyPin(cs tls.ConnectionState, pin []byte) error {
	certs := cs.PeerCertificates
	if len(certs) == 0 {
		return errors.New("tlsid: server presented no certificate")
	}
	if spkiHash(certs[0]) == [sha256.Size]byte(pin) {
		return nil
	}
	for i, c := range certs[1:] {
		if spkiHash(c) != [sha256.Size]byte(pin) {
			continue
		}
		roots := x509.NewCertPool()
		roots.AddCert(c)
		inter := x509.NewCertPool()
		for _, m := range certs[1 : i+1] {
			inter.AddCert(m)
		}
		_, err := certs[0].Verify(x509.VerifyOptions{
			Roots:         roots,
			Intermediates: inter,
			DNSName:       cs.ServerName,
			CurrentTime:   time.Now(),
		})
		if err != nil {
			return fmt.Errorf("tlsid: server certificate does not verify against the pinned CA: %w", err)
		}
		return nil
	}
	return fmt.Errorf("tlsid: server key %s does not match the pin sha256:%s", Fingerprint(certs[0]), hex.EncodeToString(pin))
}

func spkiHash(c *x509.Certificate) [sha256.Size]byte {
	return sha256.Sum256(c.RawSubjectPublicKeyInfo)
}

// FindLocalCA returns the CA PEM and its path from the first of
// <dir>/tls/ca.pem that exists, for command-line tools running on the node's
// host. Empty dirs are skipped. A file that exists but cannot be read or
// parsed is an error; when none exists the error wraps ErrNoLocalCA.
func FindLocalCA(dataDirs ...string) ([]byte, string, error) {
	var tried []string
	for _, dir := range dataDirs {
		if dir == "" {
			continue
		}
		path := filepath.Join(dir, "tls", CACertName)
		data, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			tried = append(tried, path)
			continue
		}
		if err != nil {
			return nil, path, fmt.Errorf("tlsid: read local CA %s: %w", path, err)
		}
		if _, err := parseCerts(data, path); err != nil {
			return nil, path, err
		}
		return data, path, nil
	}
	return nil, "", fmt.Errorf("%w (looked for %s)", ErrNoLocalCA, strings.Join(tried, ", "))
}
