//go:build !unix

package rawio

import "errors"

const supported = false

// ReadOnce reads nothing where sockets are not file descriptors with
// non-blocking reads.
func ReadOnce(uintptr, []byte) (int, error) { return 0, errors.ErrUnsupported }

// WriteOnce writes nothing where sockets are not file descriptors with
// non-blocking writes.
func WriteOnce(uintptr, []byte) (int, error) { return 0, errors.ErrUnsupported }
