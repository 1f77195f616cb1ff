// Float32 Gram tiles for the kNN candidate search. Every entry is a plain
// sequential sum over k in one vector lane, so its value does not depend on
// the tile it falls in, and the Go side's error bound (recursive summation)
// holds for every kernel. The SIMD kernels are compiled with target
// attributes and chosen at run time, so the object runs on any x86-64.

#include "gram.h"

#include <string.h>

#ifndef GRAM_KC
#define GRAM_KC 1024
#endif

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define GRAM_X86 1
#endif

int gram_best_isa(void) {
#ifdef GRAM_X86
	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx512f")) {
		return GRAM_AVX512;
	}
	if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
		return GRAM_AVX2;
	}
#endif
	return GRAM_GENERIC;
}

// 4 rows x 32 columns; gcc vectorises the inner j loop with the baseline ISA.
static void kern_generic(const float *a, const float *b, int m, float *c, int ldc, int load) {
	float acc[4][GRAM_PANEL];
	memset(acc, 0, sizeof acc);
	if (load) {
		for (int r = 0; r < 4; r++) {
			for (int j = 0; j < GRAM_PANEL; j++) {
				acc[r][j] = c[(long)r * ldc + j];
			}
		}
	}
	for (int k = 0; k < m; k++) {
		const float *ak = a + (long)k * GRAM_PANEL;
		const float *bk = b + (long)k * GRAM_PANEL;
		for (int r = 0; r < 4; r++) {
			float ar = ak[r];
			for (int j = 0; j < GRAM_PANEL; j++) {
				acc[r][j] += ar * bk[j];
			}
		}
	}
	for (int r = 0; r < 4; r++) {
		for (int j = 0; j < GRAM_PANEL; j++) {
			c[(long)r * ldc + j] = acc[r][j];
		}
	}
}

#ifdef GRAM_X86

// 4 rows x 16 columns: 8 accumulators, 2 loads and 4 broadcasts per 8 FMAs.
__attribute__((target("avx2,fma"))) static void kern_avx2(const float *a, const float *b, int m,
                                                          float *c, int ldc, int load) {
	__m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
	__m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
	__m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
	__m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
	if (load) {
		c00 = _mm256_loadu_ps(c + 0 * (long)ldc);
		c01 = _mm256_loadu_ps(c + 0 * (long)ldc + 8);
		c10 = _mm256_loadu_ps(c + 1 * (long)ldc);
		c11 = _mm256_loadu_ps(c + 1 * (long)ldc + 8);
		c20 = _mm256_loadu_ps(c + 2 * (long)ldc);
		c21 = _mm256_loadu_ps(c + 2 * (long)ldc + 8);
		c30 = _mm256_loadu_ps(c + 3 * (long)ldc);
		c31 = _mm256_loadu_ps(c + 3 * (long)ldc + 8);
	}
	for (int k = 0; k < m; k++) {
		const float *ak = a + (long)k * GRAM_PANEL;
		const float *bk = b + (long)k * GRAM_PANEL;
		__m256 b0 = _mm256_loadu_ps(bk);
		__m256 b1 = _mm256_loadu_ps(bk + 8);
		__m256 x;
		x = _mm256_broadcast_ss(ak + 0);
		c00 = _mm256_fmadd_ps(x, b0, c00);
		c01 = _mm256_fmadd_ps(x, b1, c01);
		x = _mm256_broadcast_ss(ak + 1);
		c10 = _mm256_fmadd_ps(x, b0, c10);
		c11 = _mm256_fmadd_ps(x, b1, c11);
		x = _mm256_broadcast_ss(ak + 2);
		c20 = _mm256_fmadd_ps(x, b0, c20);
		c21 = _mm256_fmadd_ps(x, b1, c21);
		x = _mm256_broadcast_ss(ak + 3);
		c30 = _mm256_fmadd_ps(x, b0, c30);
		c31 = _mm256_fmadd_ps(x, b1, c31);
	}
	_mm256_storeu_ps(c + 0 * (long)ldc, c00);
	_mm256_storeu_ps(c + 0 * (long)ldc + 8, c01);
	_mm256_storeu_ps(c + 1 * (long)ldc, c10);
	_mm256_storeu_ps(c + 1 * (long)ldc + 8, c11);
	_mm256_storeu_ps(c + 2 * (long)ldc, c20);
	_mm256_storeu_ps(c + 2 * (long)ldc + 8, c21);
	_mm256_storeu_ps(c + 3 * (long)ldc, c30);
	_mm256_storeu_ps(c + 3 * (long)ldc + 8, c31);
}

// 8 rows x 32 columns: 16 accumulators, 2 loads and 8 broadcasts per 16 FMAs.
__attribute__((target("avx512f"))) static void kern_avx512(const float *a, const float *b, int m,
                                                           float *c, int ldc, int load) {
	__m512 c00 = _mm512_setzero_ps(), c01 = _mm512_setzero_ps();
	__m512 c10 = _mm512_setzero_ps(), c11 = _mm512_setzero_ps();
	__m512 c20 = _mm512_setzero_ps(), c21 = _mm512_setzero_ps();
	__m512 c30 = _mm512_setzero_ps(), c31 = _mm512_setzero_ps();
	__m512 c40 = _mm512_setzero_ps(), c41 = _mm512_setzero_ps();
	__m512 c50 = _mm512_setzero_ps(), c51 = _mm512_setzero_ps();
	__m512 c60 = _mm512_setzero_ps(), c61 = _mm512_setzero_ps();
	__m512 c70 = _mm512_setzero_ps(), c71 = _mm512_setzero_ps();
	if (load) {
		c00 = _mm512_loadu_ps(c + 0 * (long)ldc);
		c01 = _mm512_loadu_ps(c + 0 * (long)ldc + 16);
		c10 = _mm512_loadu_ps(c + 1 * (long)ldc);
		c11 = _mm512_loadu_ps(c + 1 * (long)ldc + 16);
		c20 = _mm512_loadu_ps(c + 2 * (long)ldc);
		c21 = _mm512_loadu_ps(c + 2 * (long)ldc + 16);
		c30 = _mm512_loadu_ps(c + 3 * (long)ldc);
		c31 = _mm512_loadu_ps(c + 3 * (long)ldc + 16);
		c40 = _mm512_loadu_ps(c + 4 * (long)ldc);
		c41 = _mm512_loadu_ps(c + 4 * (long)ldc + 16);
		c50 = _mm512_loadu_ps(c + 5 * (long)ldc);
		c51 = _mm512_loadu_ps(c + 5 * (long)ldc + 16);
		c60 = _mm512_loadu_ps(c + 6 * (long)ldc);
		c61 = _mm512_loadu_ps(c + 6 * (long)ldc + 16);
		c70 = _mm512_loadu_ps(c + 7 * (long)ldc);
		c71 = _mm512_loadu_ps(c + 7 * (long)ldc + 16);
	}
	for (int k = 0; k < m; k++) {
		const float *ak = a + (long)k * GRAM_PANEL;
		const float *bk = b + (long)k * GRAM_PANEL;
		__m512 b0 = _mm512_loadu_ps(bk);
		__m512 b1 = _mm512_loadu_ps(bk + 16);
		__m512 x;
		x = _mm512_set1_ps(ak[0]);
		c00 = _mm512_fmadd_ps(x, b0, c00);
		c01 = _mm512_fmadd_ps(x, b1, c01);
		x = _mm512_set1_ps(ak[1]);
		c10 = _mm512_fmadd_ps(x, b0, c10);
		c11 = _mm512_fmadd_ps(x, b1, c11);
		x = _mm512_set1_ps(ak[2]);
		c20 = _mm512_fmadd_ps(x, b0, c20);
		c21 = _mm512_fmadd_ps(x, b1, c21);
		x = _mm512_set1_ps(ak[3]);
		c30 = _mm512_fmadd_ps(x, b0, c30);
		c31 = _mm512_fmadd_ps(x, b1, c31);
		x = _mm512_set1_ps(ak[4]);
		c40 = _mm512_fmadd_ps(x, b0, c40);
		c41 = _mm512_fmadd_ps(x, b1, c41);
		x = _mm512_set1_ps(ak[5]);
		c50 = _mm512_fmadd_ps(x, b0, c50);
		c51 = _mm512_fmadd_ps(x, b1, c51);
		x = _mm512_set1_ps(ak[6]);
		c60 = _mm512_fmadd_ps(x, b0, c60);
		c61 = _mm512_fmadd_ps(x, b1, c61);
		x = _mm512_set1_ps(ak[7]);
		c70 = _mm512_fmadd_ps(x, b0, c70);
		c71 = _mm512_fmadd_ps(x, b1, c71);
	}
	_mm512_storeu_ps(c + 0 * (long)ldc, c00);
	_mm512_storeu_ps(c + 0 * (long)ldc + 16, c01);
	_mm512_storeu_ps(c + 1 * (long)ldc, c10);
	_mm512_storeu_ps(c + 1 * (long)ldc + 16, c11);
	_mm512_storeu_ps(c + 2 * (long)ldc, c20);
	_mm512_storeu_ps(c + 2 * (long)ldc + 16, c21);
	_mm512_storeu_ps(c + 3 * (long)ldc, c30);
	_mm512_storeu_ps(c + 3 * (long)ldc + 16, c31);
	_mm512_storeu_ps(c + 4 * (long)ldc, c40);
	_mm512_storeu_ps(c + 4 * (long)ldc + 16, c41);
	_mm512_storeu_ps(c + 5 * (long)ldc, c50);
	_mm512_storeu_ps(c + 5 * (long)ldc + 16, c51);
	_mm512_storeu_ps(c + 6 * (long)ldc, c60);
	_mm512_storeu_ps(c + 6 * (long)ldc + 16, c61);
	_mm512_storeu_ps(c + 7 * (long)ldc, c70);
	_mm512_storeu_ps(c + 7 * (long)ldc + 16, c71);
}

#endif

#ifdef GRAM_X86
// Each __m256d accumulator holds the four partial sums of one distance, so
// lane l sums i = l, l+4, ... in order, as the Go code does. Four distances
// at a time give four independent dependency chains. No FMA contraction,
// even if the build enables FMA globally.
__attribute__((target("avx2"), optimize("fp-contract=off"))) static void sqdist4(const double *a, const double *b0,
                                                    const double *b1, const double *b2,
                                                    const double *b3, int m, double *out) {
	__m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
	__m256d s2 = _mm256_setzero_pd(), s3 = _mm256_setzero_pd();
	int i = 0;
	for (; i + 4 <= m; i += 4) {
		__m256d x = _mm256_loadu_pd(a + i);
		__m256d d0 = _mm256_sub_pd(x, _mm256_loadu_pd(b0 + i));
		__m256d d1 = _mm256_sub_pd(x, _mm256_loadu_pd(b1 + i));
		__m256d d2 = _mm256_sub_pd(x, _mm256_loadu_pd(b2 + i));
		__m256d d3 = _mm256_sub_pd(x, _mm256_loadu_pd(b3 + i));
		s0 = _mm256_add_pd(s0, _mm256_mul_pd(d0, d0));
		s1 = _mm256_add_pd(s1, _mm256_mul_pd(d1, d1));
		s2 = _mm256_add_pd(s2, _mm256_mul_pd(d2, d2));
		s3 = _mm256_add_pd(s3, _mm256_mul_pd(d3, d3));
	}
	double l[4][4];
	_mm256_storeu_pd(l[0], s0);
	_mm256_storeu_pd(l[1], s1);
	_mm256_storeu_pd(l[2], s2);
	_mm256_storeu_pd(l[3], s3);
	const double *b[4] = {b0, b1, b2, b3};
	for (int j = 0; j < 4; j++) {
		for (int t = i; t < m; t++) {
			double d = a[t] - b[j][t];
			l[j][0] += d * d;
		}
		out[j] = (l[j][0] + l[j][1]) + (l[j][2] + l[j][3]);
	}
}
#endif

int sqdist_batch(const double *a, const double *xt, int m, const int *idx, int cnt, double *out) {
#ifdef GRAM_X86
	if (!__builtin_cpu_supports("avx2")) {
		return 0;
	}
	double tmp[4];
	for (int j = 0; j < cnt; j += 4) {
		const double *b[4];
		for (int t = 0; t < 4; t++) {
			b[t] = xt + (long)idx[j + t < cnt ? j + t : j] * m;
		}
		sqdist4(a, b[0], b[1], b[2], b[3], m, tmp);
		for (int t = 0; t < 4 && j + t < cnt; t++) {
			out[j + t] = tmp[t];
		}
	}
	return 1;
#else
	(void)a, (void)xt, (void)m, (void)idx, (void)cnt, (void)out;
	return 0;
#endif
}

// Pointer to column i's lane in its panel.
static const float *col(const float *p, int m, int i) {
	return p + ((long)(i / GRAM_PANEL) * m) * GRAM_PANEL + i % GRAM_PANEL;
}

void gram_tile(const float *a, const float *b, int m, int i0, int mr, int j0, int nc, float *c,
               int ldc, int isa) {
	// k blocks of GRAM_KC samples keep a 32-column B sliver in L1 while the
	// row micro-panels stream past it. Accumulating through c in float32
	// keeps each entry the same sequential sum.
	for (int k0 = 0; k0 < m; k0 += GRAM_KC) {
		int kc = m - k0 < GRAM_KC ? m - k0 : GRAM_KC;
		int load = k0 > 0;
		for (int j = 0; j < nc; j += GRAM_PANEL) {
			const float *bp = col(b, m, j0 + j) + (long)k0 * GRAM_PANEL;
			for (int r = 0; r < mr;) {
				const float *ap = col(a, m, i0 + r) + (long)k0 * GRAM_PANEL;
				float *cp = c + (long)r * ldc + j;
#ifdef GRAM_X86
				if (isa == GRAM_AVX512) {
					kern_avx512(ap, bp, kc, cp, ldc, load);
					r += 8;
					continue;
				}
				if (isa == GRAM_AVX2) {
					kern_avx2(ap, bp, kc, cp, ldc, load);
					kern_avx2(ap, bp + 16, kc, cp + 16, ldc, load);
					r += 4;
					continue;
				}
#endif
				kern_generic(ap, bp, kc, cp, ldc, load);
				r += 4;
			}
		}
	}
}
