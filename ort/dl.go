package ort

// This is the only file of the package that uses cgo. It reads the version
// of an ONNX Runtime library before onnxruntime_go is given the library,
// because the binding fails obscurely on a library that is too old.

/*
#cgo LDFLAGS: -ldl
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>

// The two entries of OrtApiBase, the stable entry point of ORT's C API.
typedef struct {
	const void *(*get_api)(uint32_t version);
	const char *(*get_version_string)(void);
} cria_api_base;

typedef const cria_api_base *(*cria_get_api_base_fn)(void);

static const cria_api_base *cria_call_get_api_base(void *fn) {
	return ((cria_get_api_base_fn)fn)();
}

static const char *cria_version(const cria_api_base *b) {
	return b->get_version_string ? b->get_version_string() : NULL;
}

static int cria_has_api(const cria_api_base *b, uint32_t v) {
	return b->get_api && b->get_api(v) != NULL;
}

// cria_mmap_threshold calls the C library's mallopt(M_MMAP_THRESHOLD, n)
// (-3 in glibc) when there is one; 0 means it is not there or refused.
static int cria_mmap_threshold(int n) {
	int (*fn)(int, int) = (int (*)(int, int))dlsym(RTLD_DEFAULT, "mallopt");
	return fn ? fn(-3, n) : 0;
}
*/
import "C"

import (
	"errors"
	"unsafe"
)

// libHandle keeps a library open between probing it and handing it to the
// binding, so that it is not unloaded and loaded again in between.
type libHandle struct{ h unsafe.Pointer }

func (l *libHandle) close() {
	if l != nil && l.h != nil {
		C.dlclose(l.h)
		l.h = nil
	}
}

// errNoEntry is returned for a loadable library without OrtGetApiBase.
var errNoEntry = errors.New("no OrtGetApiBase symbol")

// dlProbe loads the library at path and returns ORT's version string and
// whether the library provides C API version api. GetApi is called only if
// ask(version) is true: ORT prints to stderr when asked for an API version
// it does not have. On success the caller owns h and must close it.
func dlProbe(path string, api uint32, ask func(version string) bool) (version string, apiOK bool, h *libHandle, err error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	handle := C.dlopen(cpath, C.RTLD_LAZY|C.RTLD_LOCAL)
	if handle == nil {
		return "", false, nil, errors.New(C.GoString(C.dlerror()))
	}
	h = &libHandle{handle}
	csym := C.CString("OrtGetApiBase")
	defer C.free(unsafe.Pointer(csym))
	C.dlerror()
	fn := C.dlsym(handle, csym)
	if fn == nil {
		h.close()
		return "", false, nil, errNoEntry
	}
	base := C.cria_call_get_api_base(fn)
	if base == nil {
		h.close()
		return "", false, nil, errors.New("OrtGetApiBase returned NULL")
	}
	cv := C.cria_version(base)
	if cv == nil {
		h.close()
		return "", false, nil, errors.New("GetVersionString returned NULL")
	}
	version = C.GoString(cv)
	if ask(version) {
		apiOK = C.cria_has_api(base, C.uint32_t(api)) != 0
	}
	return version, apiOK, h, nil
}

// fixMmapThreshold makes the C library serve allocations of n bytes or more
// with their own memory mappings, which free returns to the system at once.
// glibc otherwise raises that threshold to the size of the largest block
// freed (up to 32 MiB) and keeps later blocks below it in its heap, so
// that the buffers of a finished ORT session stay resident. It reports
// whether the C library took the setting.
func fixMmapThreshold(n int) bool { return C.cria_mmap_threshold(C.int(n)) != 0 }
