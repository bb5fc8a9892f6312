package tunnel

// Version is pinhole's version, sent in the SSH version string.
const Version = "0.1"

// preferredCiphers puts AES-GCM first: on amd64 x/crypto's
// chacha20-poly1305 runs generic Go and is several times slower.
var preferredCiphers = []string{
	"aes128-gcm@openssh.com", "aes256-gcm@openssh.com",
	"chacha20-poly1305@openssh.com",
	"aes128-ctr", "aes192-ctr", "aes256-ctr",
}
