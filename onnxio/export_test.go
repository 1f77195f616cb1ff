package onnxio

// SetSaveFault sets saveFault for the tests of package onnxio_test.
func SetSaveFault(f func(step string) error) { saveFault = f }
