package ort

import (
	"fmt"
	"os"
	"testing"
)

// helperEnv makes the test binary run one helper scenario in a fresh
// process (see helper_test.go) instead of the tests.
const helperEnv = "ONNX_CRIA_RUNTIME_TEST_HELPER"

func TestMain(m *testing.M) {
	if h := os.Getenv(helperEnv); h != "" {
		os.Exit(runHelper(h))
	}
	// The tests run on the real library, found the normal way. Its absence
	// is a failure, not a reason to skip.
	if err := Init(Config{}); err != nil {
		fmt.Fprintf(os.Stderr, "ort tests need ONNX Runtime; run scripts/setup-ort.sh first.\n%v\n", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}
