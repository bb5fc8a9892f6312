//go:build !unix

// This file is pinhole's, not upstream's: see FORK.md.

package ssh

import "errors"

// writeNow writes nothing where sockets are not file descriptors with
// non-blocking writes: every packet is queued and a drainer writes it, as
// upstream's Read loop would.
func writeNow(uintptr, []byte) (int, error) { return 0, errors.ErrUnsupported }
