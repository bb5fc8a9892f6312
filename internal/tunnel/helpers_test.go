package tunnel_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/ssh"

	"github.com/pinhole-dev/pinhole/internal/auth"
	"github.com/pinhole-dev/pinhole/internal/spec"
	"github.com/pinhole-dev/pinhole/internal/tunnel"
)

func newSigner(t testing.TB) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// testLogger writes the package's log lines to the test log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tlogWriter struct{ t testing.TB }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// keySet authorizes keys from authorized_keys text, as pinhole server does.
func keySet(t testing.TB, text string) func(ssh.ConnMetadata, ssh.PublicKey) (*auth.Options, error) {
	t.Helper()
	keys, problems := auth.ParseAuthorizedKeys([]byte(text))
	if len(problems) > 0 {
		t.Fatalf("authorized_keys: %v", problems)
	}
	return func(_ ssh.ConnMetadata, key ssh.PublicKey) (*auth.Options, error) {
		for i := range keys {
			if bytes.Equal(keys[i].Key.Marshal(), key.Marshal()) {
				return &keys[i].Options, nil
			}
		}
		return nil, nil
	}
}

func authorizedLine(options string, key ssh.PublicKey) string {
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
	if options != "" {
		line = options + " " + line
	}
	return line + "\n"
}

type server struct {
	srv     *tunnel.Server
	ln      net.Listener
	addr    string
	hostKey ssh.Signer
}

// startServer runs a pinhole server on ln (nil: a new loopback listener).
func startServer(t testing.TB, ln net.Listener, hostKey ssh.Signer, authorize func(ssh.ConnMetadata, ssh.PublicKey) (*auth.Options, error)) *server {
	t.Helper()
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	return startServerConfig(t, ln, tunnel.ServerConfig{
		HostKeys:          []ssh.Signer{hostKey},
		Authorize:         authorize,
		KeepaliveInterval: time.Second,
		Logger:            testLogger(t).With("side", "server"),
	})
}

// startServerConfig is startServer with the whole config given.
func startServerConfig(t testing.TB, ln net.Listener, cfg tunnel.ServerConfig) *server {
	t.Helper()
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := tunnel.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return &server{srv: srv, ln: ln, addr: ln.Addr().String(), hostKey: cfg.HostKeys[0]}
}

func mustParse(t testing.TB, k spec.Kind, s string) spec.Forward {
	t.Helper()
	f, err := spec.Parse(k, s)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func clientConfig(t testing.TB, addr string, hostKey ssh.PublicKey, key ssh.Signer) tunnel.ClientConfig {
	return tunnel.ClientConfig{
		Addr:              addr,
		User:              "tester",
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(key)},
		HostKeyCallback:   ssh.FixedHostKey(hostKey),
		KeepaliveInterval: time.Second,
		BackoffMin:        100 * time.Millisecond,
		BackoffMax:        time.Second,
		Logger:            testLogger(t).With("side", "client"),
	}
}

func dialClient(t testing.TB, cfg tunnel.ClientConfig) *tunnel.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := tunnel.Dial(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
