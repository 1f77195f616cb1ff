package ort

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// envOf serves getenv from a map.
func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func touch(t *testing.T, p string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFindLibraryOrder(t *testing.T) {
	dir := t.TempDir()
	explicit := touch(t, filepath.Join(dir, "explicit", "libonnxruntime.so.1"))
	fromEnv := touch(t, filepath.Join(dir, "env", "libort.so"))
	cached := touch(t, filepath.Join(dir, "cache", "ort", PinnedVersion, "libonnxruntime.so.1"))
	ld := touch(t, filepath.Join(dir, "ld", "libonnxruntime.so"))
	sys := touch(t, filepath.Join(dir, "sys", "libonnxruntime.so.1"))
	sysDirs := []string{filepath.Join(dir, "empty"), filepath.Dir(sys)}
	all := map[string]string{
		EnvLibrary: fromEnv, EnvCache: filepath.Join(dir, "cache"),
		"LD_LIBRARY_PATH": filepath.Join(dir, "nothing") + "::" + filepath.Dir(ld),
	}
	steps := []struct {
		explicit string
		drop     string // environment variable removed for this step and the rest
		want     string
	}{
		{explicit, "", explicit},
		{"", "", fromEnv},
		{"", EnvLibrary, cached},
		{"", EnvCache, ld},
		{"", "LD_LIBRARY_PATH", sys},
	}
	for _, s := range steps {
		if s.drop != "" {
			delete(all, s.drop)
		}
		if s.drop == EnvCache {
			all["HOME"] = filepath.Join(dir, "home") // a cache without the library
		}
		got, err := findLibrary(s.explicit, envOf(all), sysDirs)
		if err != nil || got != s.want {
			t.Errorf("after dropping %q: got %q, %v; want %q", s.drop, got, err, s.want)
		}
	}

	// XDG_CACHE_HOME, then HOME, place the cache when ONNX_CRIA_CACHE is unset.
	xdg := touch(t, filepath.Join(dir, "xdg", "onnx-cria", "ort", PinnedVersion, "libonnxruntime.so.1"))
	if got, err := findLibrary("", envOf(map[string]string{"XDG_CACHE_HOME": filepath.Join(dir, "xdg"), "HOME": dir}), nil); got != xdg {
		t.Errorf("XDG_CACHE_HOME: got %q, %v", got, err)
	}
	home := touch(t, filepath.Join(dir, "h", ".cache", "onnx-cria", "ort", PinnedVersion, "libonnxruntime.so.1"))
	if got, err := findLibrary("", envOf(map[string]string{"HOME": filepath.Join(dir, "h")}), nil); got != home {
		t.Errorf("HOME: got %q, %v", got, err)
	}
}

func TestFindLibraryMissing(t *testing.T) {
	dir := t.TempDir()
	env := envOf(map[string]string{"HOME": dir, "LD_LIBRARY_PATH": filepath.Join(dir, "ld")})
	_, err := findLibrary("", env, []string{filepath.Join(dir, "sys")})
	if !errors.Is(err, ErrLibraryNotFound) {
		t.Fatalf("got %v", err)
	}
	for _, w := range []string{
		filepath.Join(dir, ".cache", "onnx-cria", "ort", PinnedVersion, "libonnxruntime.so.1") + " (cache)",
		filepath.Join(dir, "ld", "libonnxruntime.so.1"),
		filepath.Join(dir, "sys", "libonnxruntime.so"),
		"scripts/setup-ort.sh", EnvLibrary,
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q:\n%v", w, err)
		}
	}

	// An explicit path or the variable naming a missing file is an error
	// even though a library exists further down the order.
	touch(t, filepath.Join(dir, "sys", "libonnxruntime.so.1"))
	missing := filepath.Join(dir, "no", "libonnxruntime.so.1")
	for _, c := range []struct {
		explicit string
		env      map[string]string
		want     string
	}{
		{missing, map[string]string{"HOME": dir}, "library path " + missing},
		{"", map[string]string{"HOME": dir, EnvLibrary: missing}, EnvLibrary + " " + missing},
		{dir, map[string]string{"HOME": dir}, "is a directory"},
	} {
		_, err := findLibrary(c.explicit, envOf(c.env), []string{filepath.Join(dir, "sys")})
		if !errors.Is(err, ErrLibraryNotFound) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("got %v, want ErrLibraryNotFound mentioning %q", err, c.want)
		}
	}
}

func TestCheckVersion(t *testing.T) {
	for v, ok := range map[string]bool{
		"1.24.0": true, "1.30.0": true, "1.24": true, "2.0.1": true, "1.100.0-dev": true,
		"1.23.2": false, "1.16.3": false, "0.99.0": false, "": false, "1": false, "banana": false, "x.30": false,
	} {
		if err := checkVersion(v); (err == nil) != ok {
			t.Errorf("checkVersion(%q) = %v", v, err)
		}
	}
}

// cc builds testdata/fakeort.c into a shared library with the given flags.
func cc(t *testing.T, out string, flags ...string) string {
	t.Helper()
	compiler := os.Getenv("CC")
	if compiler == "" {
		compiler = "gcc"
	}
	if _, err := exec.LookPath(compiler); err != nil {
		t.Fatalf("these tests build fake libraries with a C compiler, which cgo needs anyway: %v", err)
	}
	p := filepath.Join(t.TempDir(), out)
	args := append([]string{"-shared", "-fPIC", "-o", p, filepath.Join("testdata", "fakeort.c")}, flags...)
	if b, err := exec.Command(compiler, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", compiler, args, err, b)
	}
	return p
}

func TestCheckLibrary(t *testing.T) {
	real := LibraryPath()
	if v, err := CheckLibrary(real); err != nil || v != Version() {
		t.Errorf("CheckLibrary(%s) = %q, %v; want %q", real, v, err, Version())
	}

	empty := touch(t, filepath.Join(t.TempDir(), "libonnxruntime.so.1"))
	text := filepath.Join(t.TempDir(), "libonnxruntime.so.1")
	if err := os.WriteFile(text, []byte("#!/bin/sh\necho not a library\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		path    string
		version string
		want    []string
	}{
		{empty, "", []string{"cannot be loaded as a shared library"}},
		{text, "", []string{"cannot be loaded as a shared library"}},
		{cc(t, "libnotort.so", "-DNOT_ORT"), "", []string{"not an ONNX Runtime library (it has no OrtGetApiBase symbol)"}},
		{cc(t, "libold.so", `-DFAKE_VERSION="1.16.3"`), "1.16.3", []string{"is ONNX Runtime 1.16.3, older than the required 1.24"}},
		{cc(t, "libodd.so", `-DFAKE_VERSION="banana"`), "banana", []string{`version "banana", which is not a version number`}},
		{cc(t, "libnoapi.so", `-DFAKE_VERSION="1.30.0"`), "1.30.0", []string{"ONNX Runtime 1.30.0 does not provide C API version 24"}},
	}
	for _, c := range cases {
		v, err := CheckLibrary(c.path)
		if !errors.Is(err, ErrLibraryUnusable) || v != c.version {
			t.Errorf("CheckLibrary(%s) = %q, %v; want version %q and ErrLibraryUnusable", c.path, v, err, c.version)
			continue
		}
		for _, w := range append(c.want, c.path, "scripts/setup-ort.sh") {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("CheckLibrary(%s): error lacks %q:\n%v", c.path, w, err)
			}
		}
	}
}

func TestInitKeepsOneLibrary(t *testing.T) {
	if err := Init(Config{LibraryPath: LibraryPath()}); err != nil {
		t.Errorf("Init with the loaded library: %v", err)
	}
	missing := filepath.Join(t.TempDir(), "libonnxruntime.so.1")
	if err := Init(Config{LibraryPath: missing}); !errors.Is(err, ErrLibraryNotFound) {
		t.Errorf("Init with a missing library: %v", err)
	}
	other := cc(t, "libother.so", `-DFAKE_VERSION="1.30.0"`)
	if err := Init(Config{LibraryPath: other}); err == nil || !strings.Contains(err.Error(), "already loaded from "+LibraryPath()) {
		t.Errorf("Init with another library: %v", err)
	}
}

// TestInitFreshProcess checks Init's errors as a program sees them, in
// processes that have not loaded ORT.
func TestInitFreshProcess(t *testing.T) {
	dir := t.TempDir()
	empty := touch(t, filepath.Join(dir, "empty.so"))
	old := cc(t, "libonnxruntime.so.1", `-DFAKE_VERSION="1.16.3"`)
	cases := []struct {
		env    []string
		want   []string
		system bool // a system-wide ORT, if the machine has one, is found
	}{
		{[]string{EnvLibrary + "=" + filepath.Join(dir, "missing.so")},
			[]string{EnvLibrary + " " + filepath.Join(dir, "missing.so"), "no such file", "scripts/setup-ort.sh"}, false},
		{[]string{EnvLibrary + "=" + empty}, []string{empty, "cannot be loaded as a shared library"}, false},
		{[]string{EnvLibrary + "=" + old}, []string{old, "ONNX Runtime 1.16.3, older than the required 1.24"}, false},
		// Nothing anywhere: the cache is empty and no system path has ORT
		// on these machines.
		{[]string{EnvLibrary + "=", EnvCache + "=" + filepath.Join(dir, "cache"), "LD_LIBRARY_PATH=" + dir},
			[]string{"ONNX Runtime library not found", filepath.Join(dir, "cache", "ort", PinnedVersion, "libonnxruntime.so.1") + " (cache)", "scripts/setup-ort.sh"}, true},
	}
	for _, c := range cases {
		out, ok := helper(t, "init", c.env...)
		if ok {
			if c.system {
				t.Logf("not checked: this machine has a system-wide ORT: %s", out)
				continue
			}
			t.Errorf("env %v: Init succeeded:\n%s", c.env, out)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				t.Errorf("env %v: output lacks %q:\n%s", c.env, w, out)
			}
		}
	}
	// The real library through the environment variable, then a
	// Shutdown/Init cycle.
	if out, ok := helper(t, "init", EnvLibrary+"="+LibraryPath()); !ok || !strings.Contains(out, "loaded "+Version()) {
		t.Errorf("Init through %s: %s", EnvLibrary, out)
	}
	if out, ok := helper(t, "reinit"); !ok {
		t.Errorf("Shutdown and Init again: %s", out)
	}
}
