//go:build unix

package auth

import (
	"fmt"
	"os"
)

// checkKeyFileMode refuses a private key file that group or others may
// read or write, as sshd does.
func checkKeyFileMode(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("auth: host key: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("auth: host key %s is accessible by others (mode %#o); restrict it with chmod 600 %s", path, perm, path)
	}
	return nil
}
