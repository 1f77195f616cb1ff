/*
 * Stand-ins for ONNX Runtime in the library checks of the runtime tests.
 * Built by the tests with the system C compiler:
 *   -DFAKE_VERSION='"1.16.3"' gives a library that exports OrtGetApiBase
 *   and reports that version, and provides no C API version at all;
 *   -DNOT_ORT gives a shared library without OrtGetApiBase.
 */
#include <stddef.h>
#include <stdint.h>

#ifdef NOT_ORT
int cria_unrelated(void) { return 42; }
#else
typedef struct {
	const void *(*get_api)(uint32_t version);
	const char *(*get_version_string)(void);
} api_base;

static const void *get_api(uint32_t version) {
	(void)version;
	return NULL;
}

static const char *get_version_string(void) { return FAKE_VERSION; }

static const api_base base = {get_api, get_version_string};

const api_base *OrtGetApiBase(void) { return &base; }
#endif
