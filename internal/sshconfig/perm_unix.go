//go:build unix

package sshconfig

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// checkPermissions refuses a file that another user owns or that group or
// others may write, as ssh does for ~/.ssh/config and included files.
func checkPermissions(path string, fi fs.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if (st.Uid != 0 && int(st.Uid) != os.Getuid()) || fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("sshconfig: %s: %w (ssh refuses it too); make it yours and writable by you alone: chmod go-w %s", path, ErrBadPermissions, path)
	}
	return nil
}
