package socks_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"

	"github.com/pinhole-dev/pinhole/internal/socks"
	"golang.org/x/net/proxy"
)

func Example() {
	// A target that greets whoever connects.
	target, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer target.Close()
	go func() {
		c, err := target.Accept()
		if err == nil {
			io.WriteString(c, "hello")
			c.Close()
		}
	}()

	// The proxy. Dial is where a tunnel would plug in; this one dials
	// directly, as a nil Dial would.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	s := &socks.Server{
		Credentials: socks.StaticCredentials{"alice": "s3cret"},
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}
	go s.Serve(ln)
	defer s.Close()

	// A SOCKS5 client.
	d, err := proxy.SOCKS5("tcp", ln.Addr().String(), &proxy.Auth{User: "alice", Password: "s3cret"}, proxy.Direct)
	if err != nil {
		log.Fatal(err)
	}
	c, err := d.Dial("tcp", target.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	b, err := io.ReadAll(c)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(b))
	// Output: hello
}
