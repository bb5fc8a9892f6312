//go:build !linux

package natlab

import (
	"errors"
	"os/exec"
)

// supported is false: the lab needs Linux network namespaces, and Need
// skips the test.
const supported = false

// InNamespace fails: network namespaces are Linux's.
func InNamespace(ns string, f func() error) error {
	return errors.New("natlab: network namespaces need Linux")
}

func dieWithTest(cmd *exec.Cmd) {}

// DeleteStale does nothing: network namespaces are Linux's.
func DeleteStale(ip, prefix string) {}
