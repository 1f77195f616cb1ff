//go:build !unix

package onnxio

import "os"

// lockDir checks that dir exists; there is no directory lock here.
func lockDir(dir string) (func(), error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, err
	}
	return func() {}, nil
}
