package ort

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestNoFilesLeft: loading ORT and running a model writes nothing to the
// temporary directory or the home directory. ORT's telemetry used to leave
// $TMPDIR/mat-debug-<pid>.log and $TMPDIR/.ses, and a device id and event
// database under ~/.cache/Microsoft/DeveloperTools.
func TestNoFilesLeft(t *testing.T) {
	tmp, home := t.TempDir(), t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	// Only what the child needs: the variables that turn ORT's telemetry off
	// by themselves (CI markers, ORT_DISABLE_TELEMETRY) must not be inherited.
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + home, "TMPDIR=" + tmp,
		EnvLibrary + "=" + LibraryPath(), helperEnv + "=run",
	}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ok") {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	for _, dir := range []string{tmp, home} {
		var left []string
		filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if p != dir {
				left = append(left, p)
			}
			return err
		})
		if len(left) > 0 {
			t.Errorf("a run left %s", strings.Join(left, ", "))
		}
	}
}
