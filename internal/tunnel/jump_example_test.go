package tunnel_test

import (
	"fmt"

	"github.com/pinhole-dev/pinhole/internal/tunnel"
)

// ParseJump reads ssh -J's host lists; each hop's Addr is the name its
// host key is checked under.
func ExampleParseJump() {
	hops, err := tunnel.ParseJump("alice@bastion:2222,ssh://[2001:db8::1],inner")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, h := range hops {
		fmt.Printf("%-20s user %-6q known_hosts name %s\n", h, h.User, h.Addr())
	}
	_, err = tunnel.ParseJump("bastion:22x")
	fmt.Println(err)
	// Output:
	// alice@bastion:2222   user "alice" known_hosts name bastion:2222
	// [2001:db8::1]        user ""     known_hosts name [2001:db8::1]:22
	// inner                user ""     known_hosts name inner:22
	// tunnel: -J "bastion:22x": port "22x" is not a number from 1 to 65535; want [user@]host[:port], more hops separated by commas, IPv6 in brackets ([::1]:22)
}
