// Package certs gets the server's TLS certificates from an ACME CA (Let's
// Encrypt, or Pebble in the tests) for the names it serves, through
// golang.org/x/crypto/acme/autocert: TLS-ALPN-01 on the TLS port and
// HTTP-01 on plain HTTP, certificates cached in a directory and renewed
// ahead of expiry (a third of their lifetime before it, at most 30 days).
//
// A certificate is asked for only for a name Config.Allow admits (the
// server's own domain, and names that have a tunnel): a client cannot make
// the server ask the CA for any name it likes by sending that name. Every
// other handshake (no server name, an IP address, a name outside the
// domain, an admitted name whose certificate could not be obtained) gets
// Config.Fallback.
package certs

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// LetsEncrypt is the directory URL of Let's Encrypt's production CA, the
// default of Config.Directory.
const LetsEncrypt = autocert.DefaultACMEDirectory

// ChallengePath is where HTTP-01 asks for its answer on port 80.
const ChallengePath = "/.well-known/acme-challenge/"

// Config is what a Manager gets certificates with. Dir, Allow, Domain and
// Fallback are required.
type Config struct {
	// Dir holds the cache: the ACME account key, each name's certificate
	// and key, pending challenge answers (mode 0700, files 0600).
	Dir string
	// Directory is the ACME directory URL; "" means LetsEncrypt.
	// Giving it accepts that CA's terms of service.
	Directory string
	// Email is the contact the CA is given for the account (expiry and
	// problem notices); "" gives none.
	Email string
	// RootCAs checks the ACME server's own HTTPS certificate; nil means
	// the system's roots.
	RootCAs *x509.CertPool
	// Allow reports whether a certificate may be asked for host (lower
	// case, no port, no trailing dot). It is called for each handshake
	// with a name under Domain that has no certificate yet, and for each
	// HTTP-01 request.
	Allow func(host string) bool
	// Domain: names are Domain itself and one label under it
	// (myapp.Domain), and custom domains outside it (shop.example.org)
	// that Allow admits; names deeper under Domain, addresses and names
	// without a dot get Fallback without a look at the cache.
	Domain string
	// Fallback is the certificate of every handshake ACME does not
	// answer.
	Fallback *tls.Certificate
	// FallbackWins makes Fallback win over ACME for the names it covers
	// (a --tls-cert file: a wildcard covers every name). false: ACME
	// serves every name Allow admits (Fallback is self-signed).
	FallbackWins bool
	// Logger gets a line per certificate obtained or renewed and per name
	// that failed. nil discards.
	Logger *slog.Logger
}

// Manager answers TLS handshakes and HTTP-01 requests for the names of its
// Config. Make it with New.
type Manager struct {
	cfg     Config
	m       *autocert.Manager
	http01  http.Handler
	domain  string
	log     *slog.Logger
	fileFor func(name string) bool // the fallback covers name

	said *caSaid // what the CA said about failed challenges

	mu     sync.Mutex
	failed map[string]time.Time // name → when its failure was last logged
}

// errNotAllowed is the host policy's refusal.
var errNotAllowed = errors.New("certs: no tunnel has this name, so no certificate is asked for")

// failLogEvery is how often one name's failure is logged again while it
// keeps failing; autocert itself tries a failed name again after a
// minute at the earliest.
const failLogEvery = time.Minute

// New makes the Manager of cfg. It contacts no one until the first
// handshake or Prefetch.
func New(cfg Config) (*Manager, error) {
	if cfg.Dir == "" || cfg.Allow == nil || cfg.Fallback == nil || cfg.Domain == "" {
		return nil, errors.New("certs: Config needs Dir, Allow, Domain and Fallback")
	}
	dir := cfg.Directory
	if dir == "" {
		dir = LetsEncrypt
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // library code reads no environment
	tr.TLSClientConfig = &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12}
	said := &caSaid{next: tr, last: map[string]map[string]string{}}
	cm := &Manager{
		said:   said,
		cfg:    cfg,
		domain: strings.ToLower(strings.Trim(cfg.Domain, ".")),
		log:    log,
		failed: map[string]time.Time{},
	}
	cm.fileFor = func(string) bool { return false }
	if leaf := fallbackLeaf(cfg.Fallback); leaf != nil && cfg.FallbackWins {
		cm.fileFor = func(name string) bool { return leaf.VerifyHostname(name) == nil }
	}
	cm.m = &autocert.Manager{
		Prompt: autocert.AcceptTOS,
		Cache:  &loggingCache{DirCache: autocert.DirCache(cfg.Dir), log: log},
		HostPolicy: func(_ context.Context, host string) error {
			if !cm.allowed(host) {
				return errNotAllowed
			}
			return nil
		},
		Email:  cfg.Email,
		Client: &acme.Client{DirectoryURL: dir, UserAgent: "pinhole", HTTPClient: &http.Client{Transport: said, Timeout: time.Minute}},
	}
	// Calling HTTPHandler is what turns HTTP-01 on, after TLS-ALPN-01.
	cm.http01 = cm.m.HTTPHandler(http.NotFoundHandler())
	return cm, nil
}

func fallbackLeaf(c *tls.Certificate) *x509.Certificate {
	if c.Leaf != nil {
		return c.Leaf
	}
	if len(c.Certificate) == 0 {
		return nil
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return nil
	}
	return leaf
}

// ours reports whether host may be a name ACME serves: Domain, one label
// under it, or a custom domain (a name with a dot outside Domain, not an
// address), for Allow to decide.
func (cm *Manager) ours(host string) bool {
	if host == cm.domain {
		return true
	}
	if label, ok := strings.CutSuffix(host, "."+cm.domain); ok {
		return label != "" && !strings.Contains(label, ".")
	}
	return strings.Contains(host, ".") && net.ParseIP(host) == nil
}

// allowed is the host policy: host (a port and trailing dot taken off)
// is ours, Allow admits it, and no --tls-cert file covers it.
func (cm *Manager) allowed(host string) bool {
	host = normalize(host)
	return cm.ours(host) && !cm.fileFor(host) && cm.cfg.Allow(host)
}

func normalize(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return strings.TrimSuffix(strings.ToLower(host), ".")
}

// TLSConfig is the tls.Config of the server's TLS ports: its
// GetCertificate, and the ALPN protocol "acme-tls/1" that TLS-ALPN-01
// validation offers (transport.Dispatcher adds its own protocols before
// it).
func (cm *Manager) TLSConfig() *tls.Config {
	return &tls.Config{
		GetCertificate: cm.GetCertificate,
		NextProtos:     []string{acme.ALPNProto},
		MinVersion:     tls.VersionTLS12,
	}
}

// GetCertificate is the tls.Config hook: TLS-ALPN-01's challenge
// certificate, the name's ACME certificate (obtained now, within the
// handshake, when it has none yet and Allow admits the name), or
// Fallback.
func (cm *Manager) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := normalize(hello.ServerName)
	if !cm.ours(name) || cm.fileFor(name) {
		return cm.cfg.Fallback, nil
	}
	if len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == acme.ALPNProto {
		return cm.m.GetCertificate(hello) // the CA validating: the challenge certificate, or an error
	}
	cert, err := cm.m.GetCertificate(hello)
	if err == nil {
		cm.succeeded(name)
		return cert, nil
	}
	if !errors.Is(err, errNotAllowed) {
		cm.logFailure(name, err)
	}
	return cm.cfg.Fallback, nil
}

// Prefetch gets host's certificate now, in the background, if Allow
// admits it and it has none yet: the name's first visitor then need not
// wait for the CA. It returns at once.
func (cm *Manager) Prefetch(host string) {
	name := normalize(host)
	if !cm.ours(name) || cm.fileFor(name) {
		return
	}
	go func() {
		// The ClientHello of a modern client: an ECDSA certificate.
		hello := &tls.ClientHelloInfo{
			ServerName:        name,
			CipherSuites:      []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
			SignatureSchemes:  []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256},
			SupportedCurves:   []tls.CurveID{tls.CurveP256},
			SupportedVersions: []uint16{tls.VersionTLS13, tls.VersionTLS12},
		}
		cm.GetCertificate(hello)
	}()
}

// logFailure says which name failed, why, and what to check; once a
// minute at most per name.
func (cm *Manager) logFailure(name string, err error) {
	cm.mu.Lock()
	last, seen := cm.failed[name]
	now := time.Now()
	if seen && now.Sub(last) < failLogEvery {
		cm.mu.Unlock()
		return
	}
	cm.failed[name] = now
	cm.mu.Unlock()
	why := cm.said.take(name)
	if why == "" {
		why = "nothing about a challenge"
	}
	cm.log.Error("no certificate from ACME; serving the fallback certificate, asked again at a connection for the name a minute from now at the earliest",
		"name", name, "err", err, "ca_said", why,
		"check", fmt.Sprintf("that %s's DNS (A/AAAA records) points at this server, and that TCP ports 443 (TLS-ALPN-01) and 80 (HTTP-01) of this server reach it from the internet", name))
}

func (cm *Manager) succeeded(name string) {
	cm.mu.Lock()
	delete(cm.failed, name)
	cm.mu.Unlock()
}

// HTTPHandler answers HTTP-01's requests on plain HTTP (GET
// /.well-known/acme-challenge/TOKEN for a token pending now) and passes
// every other request to next, a tunnel's /.well-known/acme-challenge/
// paths included: only a pending token's exact path is the server's. It
// keeps next's Owns method (transport.Dispatcher asks it).
func (cm *Manager) HTTPHandler(next http.Handler) http.Handler {
	h := &challengeHandler{cm: cm, next: next}
	if o, ok := next.(owner); ok {
		return &owningHandler{challengeHandler: h, owner: o}
	}
	return h
}

type owner interface{ Owns(host string) bool }

type challengeHandler struct {
	cm   *Manager
	next http.Handler
}

type owningHandler struct {
	*challengeHandler
	owner
}

func (h *challengeHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.TLS != nil || r.Method != http.MethodGet || !strings.HasPrefix(r.URL.Path, ChallengePath) || !h.cm.allowed(r.Host) {
		h.next.ServeHTTP(w, r)
		return
	}
	// autocert answers 200 with the key authorization for a pending
	// token, an error otherwise: then the request is the tunnel's.
	var rec bufferedResponse
	h.cm.http01.ServeHTTP(&rec, r)
	if rec.code != http.StatusOK {
		h.next.ServeHTTP(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Write(rec.body.Bytes())
}

// bufferedResponse keeps an answer to look at before sending it.
type bufferedResponse struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header {
	if b.header == nil {
		b.header = http.Header{}
	}
	return b.header
}

func (b *bufferedResponse) WriteHeader(code int) {
	if b.code == 0 {
		b.code = code
	}
}

func (b *bufferedResponse) Write(p []byte) (int, error) {
	b.WriteHeader(http.StatusOK)
	return b.body.Write(p)
}

// loggingCache is the directory cache, with a line for each certificate
// stored: obtained or renewed.
type loggingCache struct {
	autocert.DirCache
	log *slog.Logger
}

func (c *loggingCache) Put(ctx context.Context, key string, data []byte) error {
	if err := c.DirCache.Put(ctx, key, data); err != nil {
		c.log.Error("cannot store a certificate; it is obtained again at the next start", "key", key, "err", err)
		return err
	}
	// Certificates are stored under the name (+rsa for an RSA one); the
	// account key and challenge answers under other keys.
	if strings.Contains(key, "+") && !strings.HasSuffix(key, "+rsa") {
		return nil
	}
	rest := data
	for {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return nil
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		if leaf, err := x509.ParseCertificate(b.Bytes); err == nil {
			c.log.Info("certificate obtained", "name", strings.TrimSuffix(key, "+rsa"), "serial", leaf.SerialNumber.Text(16),
				"issuer", leaf.Issuer.CommonName, "not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
		}
		return nil
	}
}

// caSaid is the ACME client's transport, noting for each name what the CA
// said about its failed challenges, one line per challenge type (autocert
// tries each type in an order of its own; the CA's answer about the
// authorization has the challenge's error: "http-01: ... connection
// refused"), which autocert's error leaves out.
type caSaid struct {
	next http.RoundTripper
	mu   sync.Mutex
	last map[string]map[string]string // name → challenge type → the CA's last words on it
}

// maxPeek is the largest answer whose JSON caSaid reads; an
// authorization is a few hundred bytes.
const maxPeek = 64 << 10

func (c *caSaid) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(req)
	if err != nil || !strings.Contains(resp.Header.Get("Content-Type"), "json") {
		return resp, err
	}
	buf, err := io.ReadAll(io.LimitReader(resp.Body, maxPeek+1))
	if err != nil {
		resp.Body.Close()
		return nil, err
	}
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(buf), resp.Body), resp.Body}
	if len(buf) > maxPeek {
		return resp, nil
	}
	var authz struct {
		Identifier struct {
			Value string `json:"value"`
		} `json:"identifier"`
		Challenges []struct {
			Type  string `json:"type"`
			Error *struct {
				Detail string `json:"detail"`
			} `json:"error"`
		} `json:"challenges"`
	}
	if json.Unmarshal(buf, &authz) != nil || authz.Identifier.Value == "" {
		return resp, nil
	}
	name := normalize(authz.Identifier.Value)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ch := range authz.Challenges {
		if ch.Error == nil {
			continue
		}
		if c.last[name] == nil {
			c.last[name] = map[string]string{}
		}
		c.last[name][ch.Type] = ch.Error.Detail
	}
	return resp, nil
}

// take returns and forgets what the CA said about name.
func (c *caSaid) take(name string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var why []string
	for _, typ := range slices.Sorted(maps.Keys(c.last[name])) {
		why = append(why, typ+": "+c.last[name][typ])
	}
	delete(c.last, name)
	return strings.Join(why, "; ")
}
