package ort

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// runHelper runs a scenario that needs a process of its own, because ORT
// can be loaded only once per process. It prints "ok" or the error.
func runHelper(name string) int {
	var err error
	switch name {
	case "init":
		// Init with whatever the environment says.
		err = Init(Config{})
		if err == nil {
			fmt.Println("loaded", Version(), LibraryPath())
		}
	case "reinit":
		err = reinit()
	case "run":
		err = runOnce()
	case "cuda":
		// Expected to fail: the provider library next to ORT is a fake.
		var s *Session
		s, err = NewSession(encodeModel(mlpModel()), nil, Config{Provider: ProviderCUDA, DeviceID: 1})
		if err == nil {
			s.Destroy()
			err = errors.New("provider cuda succeeded")
		}
	default:
		err = fmt.Errorf("unknown helper %q", name)
	}
	if err != nil {
		fmt.Println(err)
		return 1
	}
	fmt.Println("ok")
	return 0
}

// reinit checks Shutdown: refused while a session lives, and a fresh Init
// afterwards works.
func reinit() error {
	m := mlpModel()
	for round := 0; round < 2; round++ {
		s, err := NewSessionForModel(m, nil, Config{})
		if err != nil {
			return err
		}
		x := []float32{1, 2, 3, 4}
		if _, err := s.Run(Tensor{Name: "x", Shape: []int64{1, 4}, Data: x}); err != nil {
			return err
		}
		if err := Shutdown(); err == nil || !strings.Contains(err.Error(), "not destroyed") {
			return fmt.Errorf("Shutdown with a live session gave %v", err)
		}
		if err := s.Destroy(); err != nil {
			return err
		}
		if err := Shutdown(); err != nil {
			return err
		}
		if Version() != "" || LibraryPath() != "" {
			return errors.New("state not cleared by Shutdown")
		}
	}
	return nil
}

// runOnce loads ORT, runs a model and unloads ORT again.
func runOnce() error {
	s, err := NewSessionForModel(mlpModel(), nil, Config{})
	if err != nil {
		return err
	}
	if _, err := s.Run(Tensor{Name: "x", Shape: []int64{1, 4}, Data: []float32{1, 2, 3, 4}}); err != nil {
		return err
	}
	if err := s.Destroy(); err != nil {
		return err
	}
	return Shutdown()
}

// helper runs scenario in a child process with extra environment and
// returns its output and whether it succeeded.
func helper(t *testing.T, scenario string, env ...string) (string, bool) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append(env, helperEnv+"="+scenario)...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return string(out), err == nil
}
