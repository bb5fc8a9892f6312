package tunnel

import (
	"fmt"
	"slices"
	"strings"
)

// Version is pinhole's version, sent in the SSH version string.
const Version = "0.1"

// ciphers is every cipher pinhole speaks, in the order pinhole connect
// offers them, most wanted first: the server picks the first of these it
// supports. AES-GCM leads, since with AES instructions it costs a fraction
// of chacha20-poly1305.
var ciphers = []string{
	"aes128-gcm@openssh.com", "aes256-gcm@openssh.com",
	"chacha20-poly1305@openssh.com",
	"aes128-ctr", "aes192-ctr", "aes256-ctr",
}

// DefaultServerCiphers is what pinhole server offers when ServerConfig says
// nothing: every cipher, so that every client finds one. OpenSSH's client
// asks for chacha20-poly1305 first and then AES-CTR, so it settles on
// chacha20-poly1305; a server that offers only AES-GCM
// (--ciphers aes128-gcm@openssh.com,aes256-gcm@openssh.com) makes it use
// AES-GCM, which costs both ends less CPU per byte on a CPU with AES
// instructions (BENCHMARKS.md), at the price of refusing clients without
// AES-GCM (PuTTY before 0.76, older Dropbear).
func DefaultServerCiphers() []string {
	return slices.Clone(ciphers)
}

// ParseCiphers reads a comma-separated list of cipher names, as sshd's
// Ciphers option does (without its +, - and ^ prefixes).
func ParseCiphers(s string) ([]string, error) {
	var out []string
	for c := range strings.SplitSeq(s, ",") {
		c = strings.TrimSpace(c)
		if c == "" {
			continue
		}
		if !slices.Contains(ciphers, c) {
			return nil, fmt.Errorf("tunnel: unknown cipher %q: choose from %s", c, strings.Join(ciphers, ","))
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("tunnel: no cipher named: choose from %s", strings.Join(ciphers, ","))
	}
	return out, nil
}
