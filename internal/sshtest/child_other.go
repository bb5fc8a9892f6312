//go:build !linux

package sshtest

import "os/exec"

// dieWithTest does nothing where the kernel cannot tie a child's life to
// its parent's; Cleanup still stops the child on a normal test end.
func dieWithTest(cmd *exec.Cmd) {}
