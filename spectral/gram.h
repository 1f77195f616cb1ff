#ifndef ONNX_CRIA_SPECTRAL_GRAM_H
#define ONNX_CRIA_SPECTRAL_GRAM_H

/* Panel width: the float32 columns are packed 32 at a time, sample-major,
   so that panel p holds element (k, 32p+j) at offset (p*m + k)*32 + j. */
#define GRAM_PANEL 32

enum { GRAM_GENERIC = 0, GRAM_AVX2 = 1, GRAM_AVX512 = 2 };

int gram_best_isa(void);

/* c[r*ldc + j] = sum_k a(k, i0+r) * b(k, j0+j) for r < mr, j < nc, where a and
   b are panel-packed with m rows. i0 and mr are multiples of 8, j0 and nc
   multiples of 32. isa selects the kernel (never above gram_best_isa()). */
void gram_tile(const float *a, const float *b, int m, int i0, int mr, int j0,
               int nc, float *c, int ldc, int isa);

/* out[j] = squared distance between a and row idx[j] of xt (m doubles per
   row), summed exactly like the Go SquaredDistance: four partial sums over
   i mod 4, a scalar tail added to the first, then (s0+s1)+(s2+s3). Needs
   AVX2; returns 0 if unavailable (the caller then uses Go). */
int sqdist_batch(const double *a, const double *xt, int m, const int *idx, int cnt, double *out);

#endif
