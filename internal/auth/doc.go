// Package auth holds pinhole's authentication material and policy in
// OpenSSH's formats: authorized_keys files with their options (from,
// permitopen, permitlisten, restrict, no-port-forwarding, expiry-time),
// known_hosts checking with accept-new, client identities from ssh-agent
// and key files, and the server's host key.
//
// The server side asks a KeyFile for each key a client offers and checks
// the returned Options (AllowFrom, AllowOpen, AllowListen, Expired) for
// each request; the client side uses KnownHosts as its host key callback
// and ClientSigners for public key authentication.
package auth
