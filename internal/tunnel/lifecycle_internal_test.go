package tunnel

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/auth"
	"github.com/pinhole-dev/pinhole/internal/ssh"
)

func testSigner(t *testing.T) ssh.Signer {
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

// TestCloseWhileConnecting: Close during the first connect (the
// connecting state, inside Dial) ends the connect at once; and a
// connection that completes after Close is closed, not kept.
func TestCloseWhileConnecting(t *testing.T) {
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	hostKey, key := testSigner(t), testSigner(t)
	c, err := newClient(ClientConfig{
		Addr:            silent.Addr().String(),
		User:            "t",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(key)},
		HostKeyCallback: ssh.FixedHostKey(hostKey.PublicKey()),
		ConnectTimeout:  time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	res := make(chan error, 1)
	go func() {
		_, err := c.connect(context.Background())
		res <- err
	}()
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	c.Close()
	select {
	case err := <-res:
		if err == nil {
			t.Fatal("connect to a silent server succeeded")
		}
	case <-time.After(time.Second):
		t.Fatal("connect still running 1 s after Close")
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Close took %v", d)
	}

	// A connect that completes after Close.
	srv, err := NewServer(ServerConfig{
		HostKeys: []ssh.Signer{hostKey},
		Authorize: func(ssh.ConnMetadata, ssh.PublicKey) (*auth.Options, error) {
			return &auth.Options{PortForwarding: true}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	c2, err := newClient(ClientConfig{
		Addr:            ln.Addr().String(),
		User:            "t",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(key)},
		HostKeyCallback: ssh.FixedHostKey(hostKey.PublicKey()),
	})
	if err != nil {
		t.Fatal(err)
	}
	l, err := c2.connect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c2.Close()
	if c2.connected(l) {
		t.Fatal("a closed client took a new connection")
	}
	done := make(chan struct{})
	go func() { l.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("the connection that completed after Close is still open")
	}
}
