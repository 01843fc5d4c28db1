package tlsid

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func readAll(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, n := range []string{CACertName, CAKeyName, NodeCertName, NodeKeyName} {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		out[n] = b
	}
	return out
}

func TestFirstStartCreatesIdentity(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "tls")
	id, err := Load(Options{Dir: dir, Hosts: []string{"broker.example", "10.9.8.7"}})
	if err != nil {
		t.Fatal(err)
	}
	if !id.Issued || id.Operator {
		t.Fatalf("Issued=%v Operator=%v, want a freshly issued generated identity", id.Issued, id.Operator)
	}
	if m := mode(t, dir); m != 0o700 {
		t.Errorf("dir mode %o, want 700", m)
	}
	for _, n := range []string{CAKeyName, NodeKeyName} {
		if m := mode(t, filepath.Join(dir, n)); m != 0o600 {
			t.Errorf("%s mode %o, want 600", n, m)
		}
	}
	files := readAll(t, dir)
	chain, err := parseCerts(files[NodeCertName], NodeCertName)
	if err != nil {
		t.Fatal(err)
	}
	if len(chain) != 2 || !chain[0].Equal(id.Leaf) || !chain[1].Equal(id.CA) {
		t.Fatalf("node.pem holds %d certificates, want node then CA", len(chain))
	}
	if !bytes.Equal(files[CACertName], id.CAPEM) {
		t.Error("ca.pem differs from Identity.CAPEM")
	}
	ca := id.CA
	if !strings.HasPrefix(ca.Subject.CommonName, "Eddy local CA ") || len(ca.Subject.CommonName) <= len("Eddy local CA ") {
		t.Errorf("CA name %q", ca.Subject.CommonName)
	}
	if _, ok := ca.PublicKey.(*ecdsa.PublicKey); !ok || ca.PublicKey.(*ecdsa.PublicKey).Curve != elliptic.P256() {
		t.Errorf("CA key %T, want ECDSA P-256", ca.PublicKey)
	}
	if !ca.IsCA || ca.NotAfter.Sub(ca.NotBefore) < 9*365*24*time.Hour {
		t.Errorf("CA IsCA=%v lifetime %v", ca.IsCA, ca.NotAfter.Sub(ca.NotBefore))
	}
	if life := id.Leaf.NotAfter.Sub(id.Leaf.NotBefore); life < 89*24*time.Hour || life > 91*24*time.Hour {
		t.Errorf("node lifetime %v, want 90 days", life)
	}
	host, _ := os.Hostname()
	for _, h := range []string{"localhost", "127.0.0.1", "::1", host, "broker.example", "10.9.8.7"} {
		if err := id.Leaf.VerifyHostname(h); err != nil {
			t.Errorf("node certificate does not cover %q: %v", h, err)
		}
	}
	if _, err := id.Leaf.Verify(x509.VerifyOptions{Roots: id.Pool, DNSName: "localhost"}); err != nil {
		t.Errorf("node certificate does not verify against the CA: %v", err)
	}
	if want := id.RenewAt; want.Before(id.Leaf.NotBefore.Add(59*24*time.Hour)) || want.After(id.Leaf.NotBefore.Add(61*24*time.Hour)) {
		t.Errorf("RenewAt %v is not two thirds into the lifetime", want)
	}
}

func TestSecondStartReusesIdentity(t *testing.T) {
	dir := t.TempDir()
	first, err := Load(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	before := readAll(t, dir)
	second, err := Load(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if second.Issued {
		t.Error("second start issued a new node certificate")
	}
	if first.CAFingerprint() != second.CAFingerprint() || first.Fingerprint() != second.Fingerprint() {
		t.Error("second start changed the CA or node key")
	}
	for n, b := range readAll(t, dir) {
		if !bytes.Equal(b, before[n]) {
			t.Errorf("%s was rewritten", n)
		}
	}
}

func TestExpiringNodeCertificateIsRenewed(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Now()
	at := func(d time.Duration) func() time.Time { return func() time.Time { return t0.Add(d) } }
	first, err := Load(Options{Dir: dir, Now: at(0)})
	if err != nil {
		t.Fatal(err)
	}
	day := 24 * time.Hour
	early, err := Load(Options{Dir: dir, Now: at(55 * day)})
	if err != nil {
		t.Fatal(err)
	}
	if early.Issued || early.Leaf.SerialNumber.Cmp(first.Leaf.SerialNumber) != 0 {
		t.Fatal("renewed with more than a third of the lifetime left")
	}
	late, err := Load(Options{Dir: dir, Now: at(61 * day)})
	if err != nil {
		t.Fatal(err)
	}
	if !late.Issued || late.Leaf.SerialNumber.Cmp(first.Leaf.SerialNumber) == 0 {
		t.Fatal("not renewed with less than a third of the lifetime left")
	}
	if late.CAFingerprint() != first.CAFingerprint() {
		t.Error("renewal replaced the CA")
	}
	if !late.Leaf.NotAfter.After(first.Leaf.NotAfter.Add(60 * day)) {
		t.Errorf("renewed certificate ends %v, want about 61 days after the first", late.Leaf.NotAfter)
	}
	// The renewal is on disk: a later start at the same time keeps it.
	again, err := Load(Options{Dir: dir, Now: at(61 * day)})
	if err != nil {
		t.Fatal(err)
	}
	if again.Issued || again.Leaf.SerialNumber.Cmp(late.Leaf.SerialNumber) != 0 {
		t.Error("renewed certificate was not persisted")
	}
	expired, err := Load(Options{Dir: dir, Now: at(400 * day)})
	if err != nil {
		t.Fatal(err)
	}
	if !expired.Issued {
		t.Error("expired certificate not replaced")
	}
}

func TestNewHostsTriggerReissue(t *testing.T) {
	dir := t.TempDir()
	first, err := Load(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if first.Leaf.VerifyHostname("edge-7.example") == nil {
		t.Fatal("precondition: host already covered")
	}
	hosts := []string{"edge-7.example", "[fd00::7]", "192.0.2.7"}
	second, err := Load(Options{Dir: dir, Hosts: hosts})
	if err != nil {
		t.Fatal(err)
	}
	if !second.Issued {
		t.Fatal("new hosts did not trigger a new certificate")
	}
	for _, h := range []string{"edge-7.example", "fd00::7", "192.0.2.7"} {
		if err := second.Leaf.VerifyHostname(h); err != nil {
			t.Errorf("reissued certificate does not cover %s: %v", h, err)
		}
	}
	third, err := Load(Options{Dir: dir, Hosts: []string{"EDGE-7.example"}})
	if err != nil {
		t.Fatal(err)
	}
	if third.Issued {
		t.Error("hosts already covered triggered a new certificate")
	}
	if _, err := Load(Options{Dir: dir, Hosts: []string{"edge:9093"}}); err == nil {
		t.Error("a host:port was accepted as a host name")
	}
}

// operatorFiles writes a CA and a leaf signed by it, as an operator would.
func operatorFiles(t *testing.T, dir string) (certFile, keyFile, caFile string, leaf *x509.Certificate) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Operator CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "broker.corp"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{"broker.corp"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ = x509.ParseCertificate(der)
	keyPEM, err := encodeKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, caFile = filepath.Join(dir, "op.crt"), filepath.Join(dir, "op.key"), filepath.Join(dir, "op-ca.crt")
	for name, data := range map[string][]byte{certFile: encodeCert(der), keyFile: keyPEM, caFile: encodeCert(caDER)} {
		if err := os.WriteFile(name, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return certFile, keyFile, caFile, leaf
}

func TestOperatorFilesOverride(t *testing.T) {
	opDir := t.TempDir()
	certFile, keyFile, caFile, leaf := operatorFiles(t, opDir)
	tlsDir := filepath.Join(t.TempDir(), "tls")
	id, err := Load(Options{Dir: tlsDir, CertFile: certFile, KeyFile: keyFile, CAFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	if !id.Operator || !id.Leaf.Equal(leaf) || id.CA == nil || id.CA.Subject.CommonName != "Operator CA" {
		t.Fatalf("operator identity not used: %+v", id.Leaf.Subject)
	}
	if _, err := os.Stat(tlsDir); !errors.Is(err, os.ErrNotExist) {
		t.Error("operator mode generated a local identity")
	}
	// Without the CA file the identity still loads, with no CA to advertise.
	noCA, err := Load(Options{CertFile: certFile, KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	if noCA.CA != nil || noCA.Pool != nil {
		t.Error("a CA appeared from nowhere")
	}
	// A key that does not belong to the certificate is refused.
	_, otherKey, _, _ := operatorFiles(t, t.TempDir())
	_, err = Load(Options{CertFile: certFile, KeyFile: otherKey})
	if err == nil || !strings.Contains(err.Error(), otherKey) {
		t.Errorf("mismatched key: err = %v, want one naming %s", err, otherKey)
	}
	// A CA that did not sign the certificate is refused.
	_, _, otherCA, _ := operatorFiles(t, t.TempDir())
	_, err = Load(Options{CertFile: certFile, KeyFile: keyFile, CAFile: otherCA})
	if err == nil || !strings.Contains(err.Error(), otherCA) {
		t.Errorf("foreign CA: err = %v, want one naming %s", err, otherCA)
	}
	if _, err := Load(Options{CertFile: certFile}); err == nil {
		t.Error("a certificate without a key was accepted")
	}
}

func TestBadFilesNameTheFile(t *testing.T) {
	for _, name := range []string{CACertName, CAKeyName, NodeCertName, NodeKeyName} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := Load(Options{Dir: dir}); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, name)
			if err := os.WriteFile(path, []byte("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(Options{Dir: dir})
			if err == nil || !strings.Contains(err.Error(), path) {
				t.Fatalf("corrupt %s: err = %v, want one naming the file", name, err)
			}
		})
	}
	t.Run("missing CA key", func(t *testing.T) {
		dir := t.TempDir()
		if _, err := Load(Options{Dir: dir}); err != nil {
			t.Fatal(err)
		}
		keyPath := filepath.Join(dir, CAKeyName)
		os.Remove(keyPath)
		_, err := Load(Options{Dir: dir})
		if err == nil || !strings.Contains(err.Error(), keyPath) {
			t.Fatalf("err = %v, want one naming %s", err, keyPath)
		}
	})
	t.Run("unreadable operator file", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "nope.crt")
		_, err := Load(Options{CertFile: missing, KeyFile: missing + ".key"})
		if err == nil || !strings.Contains(err.Error(), missing) || !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("err = %v, want a not-exist error naming %s", err, missing)
		}
	})
}

// handshake runs one TLS 1.3 handshake over loopback TCP between the
// identity's server config and client, and returns the client's error.
func handshake(t *testing.T, id *Identity, client *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", id.ServerConfig("eddy-kafka/1"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if c.(*tls.Conn).Handshake() == nil {
			c.Write([]byte("k"))
			io.Copy(io.Discard, c)
		}
	}()
	d := tls.Dialer{Config: client, NetDialer: &net.Dialer{Timeout: 10 * time.Second}}
	c, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	// Reading the first byte also processes the session ticket.
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		return tls.ConnectionState{}, err
	}
	return c.(*tls.Conn).ConnectionState(), nil
}

func TestClientConfigHandshakes(t *testing.T) {
	id, err := Load(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	other, err := Load(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, id.CAPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		opts ClientOptions
		ok   bool
	}{
		{"CA PEM", ClientOptions{CAPEM: id.CAPEM}, true},
		{"CA PEM and name", ClientOptions{CAPEM: id.CAPEM, ServerName: "localhost"}, true},
		{"CA file", ClientOptions{CAFile: caFile}, true},
		{"wrong CA", ClientOptions{CAPEM: other.CAPEM}, false},
		{"CA but name not covered", ClientOptions{CAPEM: id.CAPEM, ServerName: "elsewhere.example"}, false},
		{"system roots", ClientOptions{}, false},
		{"leaf pin", ClientOptions{PinSHA256: id.Fingerprint()}, true},
		{"leaf pin ignores names", ClientOptions{PinSHA256: id.Fingerprint(), ServerName: "elsewhere.example"}, true},
		{"CA pin", ClientOptions{PinSHA256: id.CAFingerprint()}, true},
		{"CA pin checks names", ClientOptions{PinSHA256: id.CAFingerprint(), ServerName: "elsewhere.example"}, false},
		{"wrong pin", ClientOptions{PinSHA256: other.Fingerprint()}, false},
		{"wrong CA pin", ClientOptions{PinSHA256: other.CAFingerprint()}, false},
		{"pin and CA", ClientOptions{PinSHA256: id.Fingerprint(), CAPEM: id.CAPEM}, true},
		{"right pin, wrong CA", ClientOptions{PinSHA256: id.Fingerprint(), CAPEM: other.CAPEM}, false},
		{"insecure", ClientOptions{InsecureSkipVerify: true}, true},
		{"insecure but pinned elsewhere", ClientOptions{InsecureSkipVerify: true, PinSHA256: other.Fingerprint()}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.NextProtos = []string{"eddy-kafka/1"}
			conf, err := ClientConfig(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			cs, err := handshake(t, id, conf)
			if tc.ok != (err == nil) {
				t.Fatalf("handshake err = %v, want ok=%v", err, tc.ok)
			}
			if err == nil && (cs.Version != tls.VersionTLS13 || cs.NegotiatedProtocol != "eddy-kafka/1") {
				t.Errorf("version %x protocol %q", cs.Version, cs.NegotiatedProtocol)
			}
		})
	}
}

func TestPinIsCheckedOnResumption(t *testing.T) {
	id, err := Load(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	conf, err := ClientConfig(ClientOptions{PinSHA256: id.Fingerprint()})
	if err != nil {
		t.Fatal(err)
	}
	conf.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	verify := conf.VerifyConnection
	calls := 0
	conf.VerifyConnection = func(cs tls.ConnectionState) error { calls++; return verify(cs) }
	srvConf := id.ServerConfig()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srvConf)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				c.Write([]byte("k"))
				io.Copy(io.Discard, c)
			}()
		}
	}()
	resumed := false
	for range 2 {
		c, err := tls.Dial("tcp", ln.Addr().String(), conf)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		resumed = c.ConnectionState().DidResume
		c.Close()
	}
	if !resumed {
		t.Fatal("second connection did not resume the session")
	}
	if calls != 2 {
		t.Fatalf("pin checked %d times over two handshakes, the second resumed; want 2", calls)
	}
}

func TestFingerprint(t *testing.T) {
	id, err := Load(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	fp := Fingerprint(id.Leaf)
	if !strings.HasPrefix(fp, "sha256:") || len(fp) != len("sha256:")+64 {
		t.Fatalf("fingerprint %q", fp)
	}
	if fp == Fingerprint(id.CA) {
		t.Error("node and CA share a fingerprint")
	}
	for _, s := range []string{fp, strings.ToUpper(fp[7:]), "sha256-" + fp[7:]} {
		if _, err := parsePin(s); err != nil {
			t.Errorf("parsePin(%q): %v", s, err)
		}
	}
	for _, s := range []string{"sha256:abcd", "md5:" + fp[7:], "sha256:" + strings.Repeat("zz", 32)} {
		if _, err := parsePin(s); err == nil {
			t.Errorf("parsePin(%q) accepted a bad pin", s)
		}
	}
	if _, err := ClientConfig(ClientOptions{PinSHA256: "sha256:12"}); err == nil {
		t.Error("ClientConfig accepted a bad pin")
	}
	if _, err := ClientConfig(ClientOptions{CAPEM: []byte("not pem")}); err == nil {
		t.Error("ClientConfig accepted a CA PEM without certificates")
	}
}

func TestFindLocalCA(t *testing.T) {
	data := t.TempDir()
	id, err := Load(Options{Dir: filepath.Join(data, "tls")})
	if err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "absent")
	pemBytes, path, err := FindLocalCA("", missing, data, "/nonexistent-second")
	if err != nil {
		t.Fatal(err)
	}
	if path != filepath.Join(data, "tls", "ca.pem") || !bytes.Equal(pemBytes, id.CAPEM) {
		t.Errorf("found %s, want the CA of %s", path, data)
	}
	_, _, err = FindLocalCA(missing)
	if !errors.Is(err, ErrNoLocalCA) || !strings.Contains(err.Error(), missing) {
		t.Errorf("err = %v, want ErrNoLocalCA naming %s", err, missing)
	}
	bad := t.TempDir()
	os.MkdirAll(filepath.Join(bad, "tls"), 0o700)
	os.WriteFile(filepath.Join(bad, "tls", "ca.pem"), []byte("junk"), 0o644)
	if _, _, err := FindLocalCA(bad, data); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("corrupt first CA: err = %v, want one naming it", err)
	}
}

func TestLoadOrCreateSecret(t *testing.T) {
	path := filepath.Join(t.TempDir(), "quic", "reset.key")
	a, err := LoadOrCreateSecret(path, 32)
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 32 || bytes.Equal(a, make([]byte, 32)) {
		t.Fatalf("secret %x", a)
	}
	if m := mode(t, path); m != 0o600 {
		t.Errorf("mode %o, want 600", m)
	}
	b, err := LoadOrCreateSecret(path, 32)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Error("secret changed on reload")
	}
	if _, err := LoadOrCreateSecret(path, 16); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("wrong size: err = %v, want one naming the file", err)
	}
}
