package transport

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Fingerprint is the SHA-256 of a certificate's DER bytes in OpenSSH's
// spelling, "SHA256:" and unpadded base64: what pinhole server prints for
// its self-signed certificate and --tls-fingerprint pins.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:])
}

// ParseFingerprint checks a --tls-fingerprint value and returns the
// 32-byte hash it names. It takes "SHA256:base64" with or without the
// padding, as Fingerprint and OpenSSH write it.
func ParseFingerprint(s string) ([]byte, error) {
	b64, ok := strings.CutPrefix(s, "SHA256:")
	if !ok {
		return nil, fmt.Errorf("transport: TLS fingerprint %q: want SHA256: and base64, as pinhole server prints it", s)
	}
	sum, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(b64, "="))
	if err != nil || len(sum) != sha256.Size {
		return nil, fmt.Errorf("transport: TLS fingerprint %q: want SHA256: and the 43 base64 characters of a SHA-256 hash, as pinhole server prints it", s)
	}
	return sum, nil
}

// ErrCertificate is in the error of a dial whose server showed a TLS
// certificate that is not trusted: a chain that does not verify, a name
// that does not match, or not the pinned fingerprint. Trying again does
// not help.
var ErrCertificate = errors.New("transport: the server's TLS certificate is not trusted")

// ClientTLS is how a client checks the server's certificate.
type ClientTLS struct {
	// RootCAs verify the certificate's chain; nil means the system's
	// roots.
	RootCAs *x509.CertPool
	// Fingerprint, if set (ParseFingerprint's form), pins the server's
	// certificate: the connection goes on only when the certificate the
	// server shows has this SHA-256 fingerprint, and then its chain and
	// names are not checked. It is how a client trusts a server's
	// self-signed certificate.
	Fingerprint string
}

// config is the tls.Config to reach serverName with, offering alpn.
func (c ClientTLS) config(serverName string, alpn ...string) (*tls.Config, error) {
	cfg := &tls.Config{
		ServerName: serverName,
		RootCAs:    c.RootCAs,
		NextProtos: alpn,
		MinVersion: tls.VersionTLS12,
	}
	if c.Fingerprint == "" {
		return cfg, nil
	}
	want, err := ParseFingerprint(c.Fingerprint)
	if err != nil {
		return nil, err
	}
	// The chain and name checks are skipped only for the pinned
	// certificate: VerifyConnection refuses every other.
	cfg.InsecureSkipVerify = true
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("transport: the server showed no TLS certificate")
		}
		got := sha256.Sum256(cs.PeerCertificates[0].Raw)
		if subtle.ConstantTimeCompare(got[:], want) != 1 {
			return fmt.Errorf("%w: it is %s, not the pinned %s: someone may be in the middle; if the server's certificate changed, pin the new one that pinhole server printed", ErrCertificate, Fingerprint(cs.PeerCertificates[0].Raw), c.Fingerprint)
		}
		return nil
	}
	return cfg, nil
}

// LoadCertPool reads PEM certificates (--tls-ca) into a pool.
func LoadCertPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("transport: --tls-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("transport: --tls-ca %s has no PEM certificate (want -----BEGIN CERTIFICATE-----)", file)
	}
	return pool, nil
}

// SelfSignedFile is the name of the self-signed certificate and key
// pinhole server keeps in its state directory.
const SelfSignedFile = "tls-self-signed.pem"

// LoadOrCreateSelfSigned reads the self-signed certificate and key at
// path (one PEM file, mode 0600), or makes one for names (DNS names and IP
// addresses; "localhost" when none) and writes it there. created says
// which. The certificate is ECDSA P-256, valid for ten years.
func LoadOrCreateSelfSigned(path string, names []string) (cert tls.Certificate, created bool, err error) {
	if b, err := os.ReadFile(path); err == nil {
		cert, err := tls.X509KeyPair(b, b)
		if err != nil {
			return tls.Certificate{}, false, fmt.Errorf("transport: %s: %w (delete it to have a new one made)", path, err)
		}
		return cert, false, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return tls.Certificate{}, false, fmt.Errorf("transport: %w", err)
	}
	pemBytes, err := selfSigned(names, time.Now())
	if err != nil {
		return tls.Certificate{}, false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return tls.Certificate{}, false, fmt.Errorf("transport: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return tls.Certificate{}, false, fmt.Errorf("transport: %w", err)
	}
	if _, err := f.Write(pemBytes); err != nil {
		f.Close()
		os.Remove(path)
		return tls.Certificate{}, false, fmt.Errorf("transport: %w", err)
	}
	if err := f.Close(); err != nil {
		return tls.Certificate{}, false, fmt.Errorf("transport: %w", err)
	}
	cert, err = tls.X509KeyPair(pemBytes, pemBytes)
	return cert, true, err
}

// selfSigned makes a certificate and its key, both PEM, for names.
func selfSigned(names []string, now time.Time) ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("transport: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("transport: %w", err)
	}
	if len(names) == 0 {
		names = []string{"localhost"}
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: names[0], Organization: []string{"pinhole server (self-signed)"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
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
		return nil, fmt.Errorf("transport: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("transport: %w", err)
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return append(out, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})...), nil
}

// LoadKeyPair reads --tls-cert and --tls-key (PEM; the certificate file
// may hold the chain after the leaf).
func LoadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("transport: --tls-cert %s, --tls-key %s: %w", certFile, keyFile, err)
	}
	return cert, nil
}
