//go:build !unix

package tunnel

import "errors"

// readNow reads nothing where sockets are not file descriptors with
// non-blocking reads: no early data is sent from there.
func readNow(uintptr, []byte) (int, error) { return 0, errors.ErrUnsupported }
