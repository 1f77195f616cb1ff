package ort

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
)

const (
	// PinnedVersion is the ORT release that scripts/setup-ort.sh installs.
	PinnedVersion = "1.30.0"
	// MinVersion is the oldest ORT release the binding works with: its
	// header is C API version 24, which ORT 1.24 introduced.
	MinVersion = "1.24"
	// EnvLibrary names the environment variable that overrides the cache
	// and system paths.
	EnvLibrary = "ONNX_CRIA_ORT_LIB"
	// EnvCache names the environment variable that moves the cache.
	EnvCache = "ONNX_CRIA_CACHE"

	apiVersion           = 24
	minMajor, minMinor   = 1, 24
	libName, libNameBare = "libonnxruntime.so.1", "libonnxruntime.so"
)

var (
	// ErrLibraryNotFound is wrapped by errors for a library that is not
	// where resolution looked.
	ErrLibraryNotFound = errors.New("ONNX Runtime library not found")
	// ErrLibraryUnusable is wrapped by errors for a file that is not an
	// ONNX Runtime library, or is one older than MinVersion.
	ErrLibraryUnusable = errors.New("unusable ONNX Runtime library")
)

const installHint = "install ONNX Runtime " + PinnedVersion + " with scripts/setup-ort.sh (in the onnx-cria repository), " +
	"or set " + EnvLibrary + " to the path of an ONNX Runtime >= " + MinVersion +
	" shared library (" + libName + ")"

// CacheDir is the onnx-cria cache directory: $ONNX_CRIA_CACHE, else
// $XDG_CACHE_HOME/onnx-cria, else $HOME/.cache/onnx-cria, as in
// scripts/setup-ort.sh.
func CacheDir() (string, error) { return cacheDir(os.Getenv) }

func cacheDir(getenv func(string) string) (string, error) {
	if d := getenv(EnvCache); d != "" {
		return d, nil
	}
	if d := getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "onnx-cria"), nil
	}
	if h := getenv("HOME"); h != "" {
		return filepath.Join(h, ".cache", "onnx-cria"), nil
	}
	return "", errors.New("neither " + EnvCache + ", XDG_CACHE_HOME nor HOME is set")
}

// CachedLibraryPath is where scripts/setup-ort.sh installs the library.
func CachedLibraryPath() (string, error) {
	d, err := CacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "ort", PinnedVersion, libName), nil
}

// systemDirs are searched last, after LD_LIBRARY_PATH.
func systemDirs() []string {
	dirs := []string{"/usr/local/lib", "/usr/lib"}
	switch runtime.GOARCH {
	case "amd64":
		dirs = append(dirs, "/usr/lib/x86_64-linux-gnu")
	case "arm64":
		dirs = append(dirs, "/usr/lib/aarch64-linux-gnu")
	}
	return dirs
}

// FindLibrary returns the path of the ORT library that Init would load,
// without loading it. The order is: explicit (if not empty), then
// $ONNX_CRIA_ORT_LIB, then the cache (CachedLibraryPath), then
// libonnxruntime.so.1 or libonnxruntime.so in each LD_LIBRARY_PATH entry,
// /usr/local/lib, /usr/lib and the multiarch library directory. An explicit
// path or environment variable that names a missing file is an error, not a
// reason to look further.
func FindLibrary(explicit string) (string, error) {
	return findLibrary(explicit, os.Getenv, systemDirs())
}

func findLibrary(explicit string, getenv func(string) string, sysDirs []string) (string, error) {
	if explicit != "" {
		return existing(explicit, "library path")
	}
	if p := getenv(EnvLibrary); p != "" {
		return existing(p, EnvLibrary)
	}
	var looked []string
	if d, err := cacheDir(getenv); err == nil {
		p := filepath.Join(d, "ort", PinnedVersion, libName)
		if isFile(p) {
			return p, nil
		}
		looked = append(looked, p+" (cache)")
	} else {
		looked = append(looked, "cache: "+err.Error())
	}
	var dirs []string
	for _, d := range filepath.SplitList(getenv("LD_LIBRARY_PATH")) {
		if d != "" {
			dirs = append(dirs, d)
		}
	}
	for _, d := range append(dirs, sysDirs...) {
		for _, n := range []string{libName, libNameBare} {
			p := filepath.Join(d, n)
			if isFile(p) {
				return p, nil
			}
			looked = append(looked, p)
		}
	}
	return "", fmt.Errorf("%w; looked for (in order):\n  %s\n%s not set; %s",
		ErrLibraryNotFound, strings.Join(looked, "\n  "), EnvLibrary, installHint)
}

func existing(p, from string) (string, error) {
	st, err := os.Stat(p)
	switch {
	case err != nil:
		return "", fmt.Errorf("%w: %s %s: %v; %s", ErrLibraryNotFound, from, p, err, installHint)
	case st.IsDir():
		return "", fmt.Errorf("%w: %s %s is a directory; give the path of the file %s", ErrLibraryNotFound, from, p, libName)
	}
	return p, nil
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// CheckLibrary loads the library at path to read its ORT version, and
// reports an error wrapping ErrLibraryUnusable if it is not ORT or is older
// than MinVersion. It does not initialize ORT; the library stays loaded only
// if ORT is already initialized from it.
func CheckLibrary(path string) (version string, err error) {
	v, h, err := checkLibrary(path)
	h.close()
	return v, err
}

// checkLibrary is CheckLibrary that hands back the open library.
func checkLibrary(path string) (string, *libHandle, error) {
	unusable := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s; %s", ErrLibraryUnusable, path, fmt.Sprintf(format, args...), installHint)
	}
	var parseErr error
	version, apiOK, h, err := dlProbe(path, apiVersion, func(v string) bool {
		parseErr = checkVersion(v)
		return parseErr == nil
	})
	switch {
	case errors.Is(err, errNoEntry):
		return "", nil, unusable("not an ONNX Runtime library (it has no OrtGetApiBase symbol)")
	case err != nil:
		// dlerror repeats the path.
		return "", nil, unusable("cannot be loaded as a shared library: %s", strings.TrimPrefix(err.Error(), path+": "))
	case parseErr != nil:
		h.close()
		return version, nil, unusable("%v", parseErr)
	case !apiOK:
		h.close()
		return version, nil, unusable("ONNX Runtime %s does not provide C API version %d", version, apiVersion)
	}
	return version, h, nil
}

// checkVersion accepts "major.minor[.patch...]" at or above MinVersion.
func checkVersion(v string) error {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return fmt.Errorf("reports ONNX Runtime version %q, which is not a version number", v)
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return fmt.Errorf("reports ONNX Runtime version %q, which is not a version number", v)
	}
	if major < minMajor || (major == minMajor && minor < minMinor) {
		return fmt.Errorf("is ONNX Runtime %s, older than the required %s", v, MinVersion)
	}
	return nil
}
