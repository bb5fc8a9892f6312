package tunnel

import "strings"

// peerCaps is what the far end of one SSH connection can do beyond RFC 4254
// and OpenSSH's extensions, read once when the connection is made. Every
// pinhole release so far has spoken all of pinhole's extensions, so the
// version string's "SSH-2.0-pinhole" prefix is the whole negotiation
// (docs/protocol.md); a later extension that older pinhole ends lack gets a
// field here and its own test of the version or of an ext-info name,
// without touching the code that asks for a capability.
type peerCaps struct {
	// reasons: a refused tcpip-forward may carry the reason as its reply
	// payload, which OpenSSH would not expect.
	reasons bool
	// udp: udp-forward@pinhole, direct-udp@pinhole and forwarded-udp@pinhole.
	udp bool
	// early: direct-tcpip-early@pinhole and forwarded-tcpip-early@pinhole
	// (early.go). A peer that refuses the channel type has the offer
	// withdrawn for the rest of the connection (link.early,
	// serverConn.early).
	early bool
	// banners: the peer is a pinhole client that reads the userauth
	// banners pinhole server sends about a refused key (serverauth.go), so
	// it is sent one for a key that is not listed too, which would only
	// be noise on a stock ssh's terminal.
	banners bool
}

// capsOf reads a peer's capabilities from its SSH version string.
func capsOf(version []byte) peerCaps {
	p := strings.HasPrefix(string(version), versionPrefix)
	return peerCaps{reasons: p, udp: p, early: p, banners: p}
}
