//go:build unix

package control

import (
	"io/fs"
	"os"
	"syscall"
)

var errConnRefused error = syscall.ECONNREFUSED

// ownerOf is the user id that owns fi's file, and whether it is another
// user's (not this process's, nor root's).
func ownerOf(fi fs.FileInfo) (uid int, other bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), int(st.Uid) != os.Getuid() && st.Uid != 0
}
