// cpuidmask: an LD_PRELOAD library that makes a process see an x86 CPU
// without AVX-512 (and AMX, AVX-VNNI), so that libraries choosing their
// kernels by CPUID at run time (ONNX Runtime's MLAS) take their AVX2 paths
// on an AVX-512 machine. It needs Linux's CPUID faulting (the cpuid_fault
// flag in /proc/cpuinfo): every CPUID instruction then traps, and the
// SIGSEGV handler here executes it with faulting briefly off, clears the
// feature bits and steps over the instruction. Only for benchmarks.
//
//	gcc -O2 -shared -fPIC -o cpuidmask.so cpuidmask.c
//	LD_PRELOAD=$PWD/cpuidmask.so ./program
//
// Go programs install their own SIGSEGV handler after this library's
// constructor ran; the sigaction wrapper below keeps this handler in
// place, remembers Go's and passes it every fault that is not a CPUID.
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <dlfcn.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

static struct sigaction next_action; // the handler a later sigaction asked for
static int have_next;

static int set_cpuid(int on) { return syscall(SYS_arch_prctl, ARCH_SET_CPUID, on); }

static void mask(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
	if (leaf == 7 && sub == 0) {
		// EBX: AVX512F, DQ, IFMA, PF, ER, CD, BW, VL.
		r[1] &= ~((1u << 16) | (1u << 17) | (1u << 21) | (1u << 26) | (1u << 27) | (1u << 28) | (1u << 30) | (1u << 31));
		// ECX: AVX512 VBMI, VBMI2, VNNI, BITALG, VPOPCNTDQ.
		r[2] &= ~((1u << 1) | (1u << 6) | (1u << 11) | (1u << 12) | (1u << 14));
		// EDX: AVX512 4VNNIW, 4FMAPS, VP2INTERSECT, FP16; AMX BF16, TILE, INT8.
		r[3] &= ~((1u << 2) | (1u << 3) | (1u << 8) | (1u << 23) | (1u << 22) | (1u << 24) | (1u << 25));
	}
	if (leaf == 7 && sub == 1) {
		// EAX: AVX-VNNI, AVX512_BF16.
		r[0] &= ~((1u << 4) | (1u << 5));
	}
}

static void handler(int sig, siginfo_t *info, void *uc) {
	ucontext_t *ctx = uc;
	greg_t *g = ctx->uc_mcontext.gregs;
	const uint8_t *ip = (const uint8_t *)g[REG_RIP];
	if (ip && ip[0] == 0x0f && ip[1] == 0xa2) {
		uint32_t r[4], leaf = (uint32_t)g[REG_RAX], sub = (uint32_t)g[REG_RCX];
		set_cpuid(1);
		__asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
		set_cpuid(0);
		mask(leaf, sub, r);
		g[REG_RAX] = r[0];
		g[REG_RBX] = r[1];
		g[REG_RCX] = r[2];
		g[REG_RDX] = r[3];
		g[REG_RIP] += 2;
		return;
	}
	if (have_next && (next_action.sa_flags & SA_SIGINFO) && next_action.sa_sigaction) {
		next_action.sa_sigaction(sig, info, uc);
		return;
	}
	signal(sig, SIG_DFL); // a real fault: let it kill the process
}

int sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
	static int (*real)(int, const struct sigaction *, struct sigaction *);
	if (!real) real = dlsym(RTLD_NEXT, "sigaction");
	if (sig != SIGSEGV) return real(sig, act, old);
	if (old) { // callers see the default, so nobody forwards back to us
		memset(old, 0, sizeof *old);
		old->sa_handler = SIG_DFL;
	}
	if (act) {
		next_action = *act;
		have_next = act->sa_handler != SIG_DFL && act->sa_handler != SIG_IGN;
	}
	return 0;
}

__attribute__((constructor)) static void start(void) {
	int (*real)(int, const struct sigaction *, struct sigaction *) = dlsym(RTLD_NEXT, "sigaction");
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = handler;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	if (real(SIGSEGV, &sa, NULL) != 0 || set_cpuid(0) != 0) {
		fprintf(stderr, "cpuidmask: CPUID faulting is not available (needs the cpuid_fault CPU flag)\n");
		exit(3);
	}
}
