//go:build !unix

package auth

// checkKeyFileMode does nothing where Unix permission bits do not apply.
func checkKeyFileMode(path string) error { return nil }
