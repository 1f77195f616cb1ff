//go:build unix

package onnxio

import (
	"os"
	"syscall"
)

// lockDir takes an exclusive advisory lock on dir (flock on the directory
// itself, so no lock file is left behind) and returns its release. Where
// the file system has no flock, Save goes ahead unlocked.
func lockDir(dir string) (func(), error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(d.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		d.Close()
		return func() {}, nil
	}
	return func() { d.Close() }, nil // closing releases the lock
}
