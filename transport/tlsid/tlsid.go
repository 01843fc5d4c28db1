// Package tlsid holds an Eddy node's TLS identity.
//
// On first start Load generates a local certificate authority (ECDSA P-256,
// ten years) and a node certificate signed by it (90 days) into the node's
// TLS directory, normally <data>/tls:
//
//	ca.pem    the local CA certificate (give it to clients, or pin it)
//	ca.key    the CA's private key (0600)
//	node.pem  the node certificate followed by the CA certificate
//	node.key  the node's private key (0600)
//
// Later starts load these files. The node certificate is issued again, by
// the same CA, when less than a third of its lifetime is left or when it
// does not cover every requested host name. The CA itself is never replaced
// automatically: clients trust it.
//
// Operators may instead provide a certificate, key and optionally a CA file;
// those are used as given.
//
// ClientConfig builds the client side: it trusts a CA (PEM bytes or a file)
// or pins a public key by its SHA-256 fingerprint (see Fingerprint). Every
// configuration requires TLS 1.3, which QUIC mandates.
package tlsid

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// File names inside Options.Dir.
const (
	CACertName   = "ca.pem"
	CAKeyName    = "ca.key"
	NodeCertName = "node.pem"
	NodeKeyName  = "node.key"
)

const (
	caYears      = 10
	nodeLifetime = 90 * 24 * time.Hour
	// backdate covers small clock differences between a node and its peers.
	backdate = 5 * time.Minute
)

// Options says where the identity lives and what it must cover.
type Options struct {
	// Dir is the directory of the generated identity, normally <data>/tls.
	// It is created with mode 0700.
	Dir string
	// Hosts are extra names the node certificate must cover, DNS names or
	// IP addresses, beyond "localhost", 127.0.0.1, ::1 and os.Hostname().
	Hosts []string
	// CertFile and KeyFile, when set, name an operator-provided certificate
	// chain and key that are used instead of the generated identity. CAFile
	// optionally names the CA to advertise and trust.
	CertFile, KeyFile, CAFile string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Identity is a node's certificate, key and certificate authority.
type Identity struct {
	// Certificate is the node's chain (leaf first) with its private key and
	// Leaf set.
	Certificate tls.Certificate
	// Leaf is the parsed node certificate.
	Leaf *x509.Certificate
	// CA is the certificate authority clients should trust. It is nil for an
	// operator certificate given without a CA file whose chain does not end
	// in a self-signed CA.
	CA *x509.Certificate
	// CAPEM is CA in PEM form (nil when CA is nil).
	CAPEM []byte
	// Pool holds CA (nil when CA is nil).
	Pool *x509.CertPool
	// Operator is true when the identity comes from operator-provided files.
	Operator bool
	// Issued is true when this Load generated or renewed the node
	// certificate.
	Issued bool
	// RenewAt is when the node certificate enters the last third of its
	// lifetime; a long-running node calls Load again after it.
	RenewAt time.Time
}

// Fingerprint is the SPKI fingerprint of the node certificate.
func (id *Identity) Fingerprint() string { return Fingerprint(id.Leaf) }

// CAFingerprint is the SPKI fingerprint of the CA, or "" without a CA.
func (id *Identity) CAFingerprint() string {
	if id.CA == nil {
		return ""
	}
	return Fingerprint(id.CA)
}

// ServerConfig returns a server TLS configuration presenting the node
// certificate, requiring TLS 1.3 and offering nextProtos for ALPN.
func (id *Identity) ServerConfig(nextProtos ...string) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{id.Certificate},
		NextProtos:   append([]string(nil), nextProtos...),
	}
}

// Load returns the node's identity, generating or renewing it as needed.
func Load(opts Options) (*Identity, error) {
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	hosts, err := requiredHosts(opts.Hosts)
	if err != nil {
		return nil, err
	}
	if opts.CertFile != "" || opts.KeyFile != "" {
		if opts.CertFile == "" || opts.KeyFile == "" {
			return nil, errors.New("tlsid: a certificate file and a key file must be given together")
		}
		return loadOperator(opts, now())
	}
	if opts.Dir == "" {
		return nil, errors.New("tlsid: no TLS directory given")
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("tlsid: create %s: %w", opts.Dir, err)
	}
	if err := os.Chmod(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("tlsid: restrict %s: %w", opts.Dir, err)
	}
	return loadGenerated(opts.Dir, hosts, now())
}

func loadGenerated(dir string, hosts []string, now time.Time) (*Identity, error) {
	ca, caKey, err := loadOrCreateCA(dir, now)
	if err != nil {
		return nil, err
	}
	id := &Identity{CA: ca, CAPEM: encodeCert(ca.Raw), Pool: x509.NewCertPool()}
	id.Pool.AddCert(ca)

	leaf, key, err := loadNode(dir, ca)
	if err != nil {
		return nil, err
	}
	if leaf == nil || needsRenewal(leaf, now) || !covers(leaf, hosts) {
		leaf, key, err = issueNode(dir, ca, caKey, hosts, now)
		if err != nil {
			return nil, err
		}
		id.Issued = true
	}
	id.Leaf = leaf
	id.Certificate = tls.Certificate{
		Certificate: [][]byte{leaf.Raw, ca.Raw},
		PrivateKey:  key,
		Leaf:        leaf,
	}
	id.RenewAt = renewAt(leaf)
	return id, nil
}

// loadOrCreateCA loads ca.pem and ca.key, or creates both when ca.pem does
// not exist. The key is written before the certificate, so a crash between
// the two leaves no certificate and the next start begins again.
func loadOrCreateCA(dir string, now time.Time) (*x509.Certificate, crypto.Signer, error) {
	certPath, keyPath := filepath.Join(dir, CACertName), filepath.Join(dir, CAKeyName)
	certPEM, err := os.ReadFile(certPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return createCA(dir, now)
	case err != nil:
		return nil, nil, fmt.Errorf("tlsid: read %s: %w", certPath, err)
	}
	certs, err := parseCerts(certPEM, certPath)
	if err != nil {
		return nil, nil, err
	}
	ca := certs[0]
	if !ca.IsCA {
		return nil, nil, fmt.Errorf("tlsid: %s is not a CA certificate", certPath)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsid: read %s (the key of %s): %w", keyPath, certPath, err)
	}
	key, err := parseKey(keyPEM, keyPath)
	if err != nil {
		return nil, nil, err
	}
	if !samePublicKey(key.Public(), ca.PublicKey) {
		return nil, nil, fmt.Errorf("tlsid: %s does not match %s", keyPath, certPath)
	}
	if now.After(ca.NotAfter) {
		return nil, nil, fmt.Errorf("tlsid: local CA %s expired on %s; remove %s and %s to create a new one (clients must then trust the new CA)",
			certPath, ca.NotAfter.Format(time.DateOnly), certPath, keyPath)
	}
	return ca, key, nil
}

func createCA(dir string, now time.Time) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsid: generate CA key: %w", err)
	}
	suffix := make([]byte, 4)
	if _, err := rand.Read(suffix); err != nil {
		return nil, nil, fmt.Errorf("tlsid: CA name suffix: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	notBefore := now.Add(-backdate)
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "Eddy local CA " + hex.EncodeToString(suffix), Organization: []string{"Eddy"}},
		NotBefore:             notBefore,
		NotAfter:              notBefore.AddDate(caYears, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsid: create CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsid: parse new CA certificate: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	if err := writeFileAtomic(filepath.Join(dir, CAKeyName), keyPEM, 0o600); err != nil {
		return nil, nil, err
	}
	if err := writeFileAtomic(filepath.Join(dir, CACertName), encodeCert(der), 0o644); err != nil {
		return nil, nil, err
	}
	return ca, key, nil
}

// loadNode loads node.pem and node.key. It returns a nil certificate when
// the files are missing, do not belong together or were not issued by ca:
// the caller issues a new certificate then. Unreadable or corrupt files are
// errors.
func loadNode(dir string, ca *x509.Certificate) (*x509.Certificate, crypto.Signer, error) {
	certPath, keyPath := filepath.Join(dir, NodeCertName), filepath.Join(dir, NodeKeyName)
	certPEM, err := os.ReadFile(certPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("tlsid: read %s: %w", certPath, err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("tlsid: read %s: %w", keyPath, err)
	}
	certs, err := parseCerts(certPEM, certPath)
	if err != nil {
		return nil, nil, err
	}
	key, err := parseKey(keyPEM, keyPath)
	if err != nil {
		return nil, nil, err
	}
	leaf := certs[0]
	if !samePublicKey(key.Public(), leaf.PublicKey) || leaf.CheckSignatureFrom(ca) != nil {
		return nil, nil, nil
	}
	return leaf, key, nil
}

func issueNode(dir string, ca *x509.Certificate, caKey crypto.Signer, hosts []string, now time.Time) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsid: generate node key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	notBefore := now.Add(-backdate)
	notAfter := notBefore.Add(nodeLifetime)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	cn := "eddy node"
	var dnsNames []string
	var ips []net.IP
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			ips = append(ips, ip)
			continue
		}
		dnsNames = append(dnsNames, h)
		if cn == "eddy node" && h != "localhost" {
			cn = h
		}
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"Eddy"}},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     dnsNames,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsid: create node certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsid: parse new node certificate: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	if err := writeFileAtomic(filepath.Join(dir, NodeKeyName), keyPEM, 0o600); err != nil {
		return nil, nil, err
	}
	chain := append(encodeCert(der), encodeCert(ca.Raw)...)
	if err := writeFileAtomic(filepath.Join(dir, NodeCertName), chain, 0o644); err != nil {
		return nil, nil, err
	}
	return leaf, key, nil
}

func loadOperator(opts Options, now time.Time) (*Identity, error) {
	certPEM, err := os.ReadFile(opts.CertFile)
	if err != nil {
		return nil, fmt.Errorf("tlsid: read certificate %s: %w", opts.CertFile, err)
	}
	keyPEM, err := os.ReadFile(opts.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tlsid: read key %s: %w", opts.KeyFile, err)
	}
	chain, err := parseCerts(certPEM, opts.CertFile)
	if err != nil {
		return nil, err
	}
	key, err := parseKey(keyPEM, opts.KeyFile)
	if err != nil {
		return nil, err
	}
	leaf := chain[0]
	if !samePublicKey(key.Public(), leaf.PublicKey) {
		return nil, fmt.Errorf("tlsid: key %s does not match certificate %s", opts.KeyFile, opts.CertFile)
	}
	if now.After(leaf.NotAfter) {
		return nil, fmt.Errorf("tlsid: certificate %s expired on %s", opts.CertFile, leaf.NotAfter.Format(time.RFC3339))
	}
	id := &Identity{Leaf: leaf, Operator: true, RenewAt: renewAt(leaf)}
	for _, c := range chain {
		id.Certificate.Certificate = append(id.Certificate.Certificate, c.Raw)
	}
	id.Certificate.PrivateKey = key
	id.Certificate.Leaf = leaf

	var cas []*x509.Certificate
	switch last := chain[len(chain)-1]; {
	case opts.CAFile != "":
		caPEM, err := os.ReadFile(opts.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tlsid: read CA %s: %w", opts.CAFile, err)
		}
		if cas, err = parseCerts(caPEM, opts.CAFile); err != nil {
			return nil, err
		}
	case len(chain) > 1 && last.IsCA && last.CheckSignatureFrom(last) == nil:
		cas = []*x509.Certificate{last}
	}
	if len(cas) == 0 {
		return id, nil
	}
	id.CA = cas[0]
	id.Pool = x509.NewCertPool()
	for _, c := range cas {
		id.Pool.AddCert(c)
		id.CAPEM = append(id.CAPEM, encodeCert(c.Raw)...)
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:         id.Pool,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		src := opts.CAFile
		if src == "" {
			src = opts.CertFile
		}
		return nil, fmt.Errorf("tlsid: certificate %s does not chain to the CA in %s: %w", opts.CertFile, src, err)
	}
	return id, nil
}

// requiredHosts returns the names every generated node certificate covers
// plus extra, normalised and without duplicates.
func requiredHosts(extra []string) ([]string, error) {
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if h, err := os.Hostname(); err == nil && h != "" {
		hosts = append(hosts, h)
	}
	for _, h := range extra {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
		if net.ParseIP(h) == nil && strings.ContainsAny(h, ":/ \t") {
			return nil, fmt.Errorf("tlsid: host %q is neither a DNS name nor an IP address", h)
		}
		hosts = append(hosts, h)
	}
	seen := make(map[string]bool, len(hosts))
	out := hosts[:0]
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			h = ip.String()
		} else {
			h = strings.ToLower(strings.TrimSuffix(h, "."))
		}
		if !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	return out, nil
}

func covers(leaf *x509.Certificate, hosts []string) bool {
	for _, h := range hosts {
		if leaf.VerifyHostname(h) != nil {
			return false
		}
	}
	return true
}

func needsRenewal(leaf *x509.Certificate, now time.Time) bool {
	return now.Before(leaf.NotBefore) || !now.Before(renewAt(leaf))
}

// renewAt is when two thirds of the certificate's lifetime have passed.
func renewAt(leaf *x509.Certificate) time.Time {
	return leaf.NotAfter.Add(-leaf.NotAfter.Sub(leaf.NotBefore) / 3)
}

func randomSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("tlsid: certificate serial: %w", err)
	}
	return serial, nil
}

func samePublicKey(a, b crypto.PublicKey) bool {
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(b)
}
