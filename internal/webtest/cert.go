package webtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Certificate is a self-signed certificate and its key, as PEM files for
// programs and as Go values.
type Certificate struct {
	CertFile string // PEM CERTIFICATE, for nginx's ssl_certificate, curl's --cacert
	KeyFile  string // PEM PRIVATE KEY (PKCS #8), mode 0600

	Leaf *x509.Certificate
	TLS  tls.Certificate // for a Go server's tls.Config.Certificates

	// Pool holds this certificate alone: a Go client's tls.Config.RootCAs.
	Pool *x509.CertPool
}

// Cert makes a self-signed ECDSA P-256 certificate for names, each an IP
// address (an IP SAN) or a DNS name (a DNS SAN; wildcards allowed), valid
// from an hour ago for two days, and writes it and its key to the test's
// directory. The first name is also the subject's common name. It fails
// the test when names is empty.
func Cert(t testing.TB, names ...string) *Certificate {
	t.Helper()
	if len(names) == 0 {
		t.Fatal("webtest: Cert needs at least one name")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("webtest: %v", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatalf("webtest: %v", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: names[0]},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(48 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true, // its own root, so that a pool of it alone verifies it
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("webtest: %v", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("webtest: %v", err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("webtest: %v", err)
	}
	dir := t.TempDir()
	c := &Certificate{
		CertFile: filepath.Join(dir, "cert.pem"),
		KeyFile:  filepath.Join(dir, "key.pem"),
		Leaf:     leaf,
		TLS:      tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf},
		Pool:     x509.NewCertPool(),
	}
	c.Pool.AddCert(leaf)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
	if err := os.WriteFile(c.CertFile, certPEM, 0o644); err != nil {
		t.Fatalf("webtest: %v", err)
	}
	if err := os.WriteFile(c.KeyFile, keyPEM, 0o600); err != nil {
		t.Fatalf("webtest: %v", err)
	}
	return c
}
