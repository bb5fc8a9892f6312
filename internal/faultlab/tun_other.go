//go:build !linux

package faultlab

import (
	"errors"
	"os"
	"os/exec"
)

// supported is false: the lab needs Linux; Need skips the test.
const supported = false

func openTun(name string) (*os.File, error) {
	return nil, errors.New("faultlab: TUN devices need Linux")
}

func dieWithParent(cmd *exec.Cmd) {}
