package ort

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"

	ortapi "github.com/yalue/onnxruntime_go"
)

// Config selects the library and how sessions run. The zero value is valid:
// the library found by FindLibrary, ORT's default thread count, CPU.
type Config struct {
	// LibraryPath is an explicit ORT library (the CLI's --ort-lib flag);
	// empty means FindLibrary's search. It only matters for the first Init:
	// one library is loaded per process.
	LibraryPath string
	// Threads is the intra-op thread count of each session; 0 leaves
	// ORT's default (one per physical core).
	Threads int
	// Provider is the execution provider: "cpu" (or empty), or "cuda".
	Provider string
	// DeviceID is the CUDA device, when Provider is "cuda".
	DeviceID int
	// ShortLived skips ORT's memory-pattern planning and its prepacking of
	// weights, for sessions that run a few dozen batches and are dropped
	// (capture makes one per round, the refit one per stage): the pattern
	// costs its second run as much as a whole first run, and prepacking
	// copies every weight when the session is made; both only pay off
	// over many runs. (Sessions of models with external data never
	// prepack; this makes the in-memory case compute the same way.)
	ShortLived bool
	// ReleaseMemory, at the first Init, fixes the C library's threshold
	// for serving allocations from their own mappings at 128 KiB (glibc's
	// mallopt M_MMAP_THRESHOLD), so that the large buffers ORT frees when
	// a session ends go back to the system instead of staying in the C
	// heap. It changes the allocator for the whole process, which suits a
	// program that makes sessions one after another over a large model.
	ReleaseMemory bool
	// NoSpin stops the intra-op threads from spinning while they wait for
	// work (session.intra_op.allow_spinning=0): for sessions that run
	// many small steps, where spinning threads take CPU from everything
	// else on a busy machine.
	NoSpin bool
	// Profile, if set, turns on ORT's profiler: when the session is
	// destroyed ORT writes a JSON trace of every node's run time to a file
	// whose name starts with this prefix (Chrome trace format).
	Profile string
}

// Providers lists the accepted Config.Provider values.
var Providers = []string{ProviderCPU, ProviderCUDA}

const (
	ProviderCPU  = "cpu"
	ProviderCUDA = "cuda"
)

// envNoTelemetry is ORT's switch for its telemetry on Linux and macOS.
const envNoTelemetry = "ORT_DISABLE_TELEMETRY"

// env is the process-wide ORT state; the binding keeps a single environment.
var env struct {
	mu       sync.Mutex
	path     string // library in use; "" when not initialized
	version  string
	sessions int // live sessions, which Shutdown must not pull the library from under
}

// Init loads the ORT library and creates the process-wide environment. It
// is idempotent: later calls return nil, unless they name a different
// LibraryPath, which is an error. NewSession calls it, so calling it first
// is only needed to report library problems early.
func Init(cfg Config) error {
	env.mu.Lock()
	defer env.mu.Unlock()
	return initLocked(cfg)
}

func initLocked(cfg Config) error {
	if env.path != "" {
		if cfg.LibraryPath == "" || samePath(cfg.LibraryPath, env.path) {
			return nil
		}
		if _, err := existing(cfg.LibraryPath, "library path"); err != nil {
			return fmt.Errorf("ort: %w", err)
		}
		return fmt.Errorf("ort: ONNX Runtime is already loaded from %s in this process; cannot switch to %s", env.path, cfg.LibraryPath)
	}
	path, err := FindLibrary(cfg.LibraryPath)
	if err != nil {
		return fmt.Errorf("ort: %w", err)
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	version, h, err := checkLibrary(path)
	if err != nil {
		return fmt.Errorf("ort: %w", err)
	}
	// The binding opens the library again; our handle keeps it loaded
	// in between and is dropped once the binding holds its own.
	defer h.close()
	ortapi.SetSharedLibraryPath(path)
	// ORT's Linux builds start a telemetry uploader when the first OrtEnv is
	// created: it writes an empty debug log $TMPDIR/mat-debug-<pid>.log and
	// a session file $TMPDIR/.ses, and keeps a device id and an event store
	// (SQLite) under ~/.cache/Microsoft/DeveloperTools/.onnxruntime. The API
	// call DisableTelemetryEvents comes too late to stop that, since it
	// needs the environment that creates them; ORT reads the environment
	// variable while creating it, and then never starts the uploader. (cgo
	// programs' os.Setenv reaches the C environment that ORT reads.)
	if err := os.Setenv(envNoTelemetry, "1"); err != nil {
		return fmt.Errorf("ort: %w", err)
	}
	if err := ortapi.InitializeEnvironment(); err != nil {
		return fmt.Errorf("ort: initializing ONNX Runtime %s from %s: %w", version, path, err)
	}
	// Belt and braces for libraries that ignore the variable.
	if err := ortapi.DisableTelemetry(); err != nil {
		ortapi.DestroyEnvironment()
		return fmt.Errorf("ort: disabling telemetry in ONNX Runtime %s from %s: %w", version, path, err)
	}
	if cfg.ReleaseMemory {
		fixMmapThreshold(128 << 10)
	}
	env.path, env.version = path, version
	return nil
}

func samePath(a, b string) bool {
	if a == b {
		return true
	}
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

// Version is the version of the loaded ORT library, "" before Init.
func Version() string {
	env.mu.Lock()
	defer env.mu.Unlock()
	return env.version
}

// LibraryPath is the absolute path of the loaded ORT library, "" before Init.
func LibraryPath() string {
	env.mu.Lock()
	defer env.mu.Unlock()
	return env.path
}

// Shutdown destroys the ORT environment and unloads the library, so that a
// later Init starts afresh. All sessions must be destroyed first. It is a
// no-op when ORT is not initialized.
func Shutdown() error {
	env.mu.Lock()
	defer env.mu.Unlock()
	if env.path == "" {
		return nil
	}
	if env.sessions > 0 {
		return fmt.Errorf("ort: shutdown: %d session(s) not destroyed", env.sessions)
	}
	if err := ortapi.DestroyEnvironment(); err != nil {
		return fmt.Errorf("ort: shutdown: %w", err)
	}
	env.path, env.version = "", ""
	return nil
}
