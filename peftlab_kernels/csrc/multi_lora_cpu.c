/* Multi-LoRA BGMV on the CPU (Punica's "batched gather matrix-vector"), fp32, inference only.

       y[t] = B[a] ( s[a] · A[a] x[t] )     a = idx[t];  y[t] = 0 where a = -1
       x (T, d_in)  A (K, r, d_in)  B (K, d_out, r)  s (K,)  y (T, d_out)

   Why C: the PyTorch ways to do this pay per-op overhead (a loop over adapter groups: 2 tiny GEMMs
   plus indexing per group) or copy weights (gathering A[idx], B[idx]) or compute empty slots (a
   padded (K, M, d) grid). Here one call does it all, reading each adapter's weights once per call.

   1. Group rows by adapter (a counting sort of idx, O(T)): rows sharing an adapter share its loads.
   2. Shrink, per group, 4 rows at a time: v[t][j] = s[a] · <A[a][j, :], x[t]>, one pass over A[a][j]
      feeding 4 FMA accumulators (masked loads for a d_in tail), then a horizontal sum.
   3. Expand, per group: B[a] (d_out, r) is transposed once into a per-thread scratch (16 x 16 tiles
      transposed in registers), so Bt[j][o:o+16] is one contiguous vector; then 8 rows at a time,
      y[t][o:o+16] = sum_j v[t][j] · Bt[j][o:o+16], 8 FMA chains kept in registers (no horizontal
      sums, no gathers). Masks cover an r or d_out that is not a multiple of 16 (mixed ranks are
      zero-padded to any r_max). Row counts below 4 / 8 get their own unrolled copies.
   Threads: groups are shared out over torch's OpenMP pool (libgomp.so.1 resolves to torch's copy),
   dynamically, since group sizes differ. Without AVX-512 a plain C loop computes the same formula.

   Sums are in a different order than torch's GEMMs, so results agree to rounding (tests: <= 1e-5
   relative to the per-request loop), not bit for bit.
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define PEFTLAB_X86 1
#endif

typedef struct {
    const float *x, *A, *B, *s;
    float *y, *v;            /* v: (T, r) scratch */
    int64_t d_in, d_out, r;
    const int64_t *order;    /* rows sorted by adapter */
} ctx_t;

static void group_scalar(const ctx_t *c, int64_t a, const int64_t *rows, int64_t n) {
    const float *Aa = c->A + a * c->r * c->d_in, *Ba = c->B + a * c->d_out * c->r;
    for (int64_t k = 0; k < n; ++k) {
        const int64_t t = rows[k];
        const float *xt = c->x + t * c->d_in;
        float *vt = c->v + t * c->r, *yt = c->y + t * c->d_out;
        for (int64_t j = 0; j < c->r; ++j) {
            float acc = 0.f;
            for (int64_t i = 0; i < c->d_in; ++i) acc += Aa[j * c->d_in + i] * xt[i];
            vt[j] = c->s[a] * acc;
        }
        for (int64_t o = 0; o < c->d_out; ++o) {
            float acc = 0.f;
            for (int64_t j = 0; j < c->r; ++j) acc += Ba[o * c->r + j] * vt[j];
            yt[o] = acc;
        }
    }
}

#ifdef PEFTLAB_X86
#define AVX512 __attribute__((target("avx512f")))

static inline AVX512 __mmask16 tail_mask(int64_t left) {
    return left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1u);
}

/* In place: r[i] = row i of a 16 x 16 tile  ->  r[j] = column j. */
static inline AVX512 void transpose16(__m512 r[16]) {
    __m512 t[16], u[16];
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) {               /* pairs of rows, interleaved within 128-bit lanes */
        t[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);
        t[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);
    }
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {               /* u[4k+q], lane L = column 4L+q, rows 4k..4k+3 */
        const __m512d a0 = _mm512_castps_pd(t[4 * k]), a1 = _mm512_castps_pd(t[4 * k + 1]);
        const __m512d b0 = _mm512_castps_pd(t[4 * k + 2]), b1 = _mm512_castps_pd(t[4 * k + 3]);
        u[4 * k + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, b0));
        u[4 * k + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, b0));
        u[4 * k + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a1, b1));
        u[4 * k + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a1, b1));
    }
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) {               /* 4 x 4 transpose of 128-bit lanes */
        const __m512 w0 = _mm512_shuffle_f32x4(u[q], u[4 + q], 0x44);
        const __m512 w1 = _mm512_shuffle_f32x4(u[q], u[4 + q], 0xee);
        const __m512 w2 = _mm512_shuffle_f32x4(u[8 + q], u[12 + q], 0x44);
        const __m512 w3 = _mm512_shuffle_f32x4(u[8 + q], u[12 + q], 0xee);
        r[q] = _mm512_shuffle_f32x4(w0, w2, 0x88);
        r[4 + q] = _mm512_shuffle_f32x4(w0, w2, 0xdd);
        r[8 + q] = _mm512_shuffle_f32x4(w1, w3, 0x88);
        r[12 + q] = _mm512_shuffle_f32x4(w1, w3, 0xdd);
    }
}

/* Shrink for M rows (M <= 4, a compile-time constant after inlining), two rank rows per pass:
   2·M independent FMA chains hide the FMA latency; each A[a][j] load feeds M rows. */
static inline __attribute__((always_inline)) AVX512 void shrink_m(const float *Aa, int64_t d_in, int64_t r, float s,
                                                                  const float *const *xs, float *const *vs, const int M) {
    int64_t j = 0;
    for (; j + 2 <= r; j += 2) {
        const float *A0 = Aa + j * d_in, *A1 = A0 + d_in;
        __m512 acc0[4], acc1[4];
        for (int q = 0; q < M; ++q) acc0[q] = acc1[q] = _mm512_setzero_ps();
        for (int64_t i = 0; i < d_in; i += 16) {
            const __mmask16 m = tail_mask(d_in - i);
            const __m512 w0 = _mm512_maskz_loadu_ps(m, A0 + i), w1 = _mm512_maskz_loadu_ps(m, A1 + i);
            for (int q = 0; q < M; ++q) {
                const __m512 xv = _mm512_maskz_loadu_ps(m, xs[q] + i);
                acc0[q] = _mm512_fmadd_ps(w0, xv, acc0[q]);
                acc1[q] = _mm512_fmadd_ps(w1, xv, acc1[q]);
            }
        }
        for (int q = 0; q < M; ++q) {
            vs[q][j] = s * _mm512_reduce_add_ps(acc0[q]);
            vs[q][j + 1] = s * _mm512_reduce_add_ps(acc1[q]);
        }
    }
    for (; j < r; ++j) {                                   /* odd r: the last rank row alone */
        const float *A0 = Aa + j * d_in;
        __m512 acc0[4];
        for (int q = 0; q < M; ++q) acc0[q] = _mm512_setzero_ps();
        for (int64_t i = 0; i < d_in; i += 16) {
            const __mmask16 m = tail_mask(d_in - i);
            const __m512 w0 = _mm512_maskz_loadu_ps(m, A0 + i);
            for (int q = 0; q < M; ++q) acc0[q] = _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(m, xs[q] + i), acc0[q]);
        }
        for (int q = 0; q < M; ++q) vs[q][j] = s * _mm512_reduce_add_ps(acc0[q]);
    }
}

/* Expand for M rows (M <= 8, constant after inlining) from the transposed B[a] (r, d_out): per
   16 outputs, one load of Bt[j] feeds M FMA chains that stay in registers. */
static inline __attribute__((always_inline)) AVX512 void expand_m(const float *Bt, int64_t d_out, int64_t r,
                                                                  const float *const *vs, float *const *ys, const int M) {
    for (int64_t o0 = 0; o0 < d_out; o0 += 16) {
        const __mmask16 om = tail_mask(d_out - o0);
        __m512 acc[8];
        for (int q = 0; q < M; ++q) acc[q] = _mm512_setzero_ps();
        for (int64_t j = 0; j < r; ++j) {
            const __m512 bt = _mm512_maskz_loadu_ps(om, Bt + j * d_out + o0);
            for (int q = 0; q < M; ++q) acc[q] = _mm512_fmadd_ps(bt, _mm512_set1_ps(vs[q][j]), acc[q]);
        }
        for (int q = 0; q < M; ++q) _mm512_mask_storeu_ps(ys[q] + o0, om, acc[q]);
    }
}

/* Bt (r, d_out) = B[a]ᵀ, through 16 x 16 register transposes (masked at the r and d_out edges). */
static AVX512 void transpose_b(const float *Ba, int64_t d_out, int64_t r, float *Bt) {
    for (int64_t o0 = 0; o0 < d_out; o0 += 16) {
        const __mmask16 om = tail_mask(d_out - o0);
        for (int64_t jb = 0; jb < r; jb += 16) {
            const __mmask16 jm = tail_mask(r - jb);
            __m512 tile[16];
#pragma GCC unroll 16
            for (int k = 0; k < 16; ++k)
                tile[k] = o0 + k < d_out ? _mm512_maskz_loadu_ps(jm, Ba + (o0 + k) * r + jb) : _mm512_setzero_ps();
            transpose16(tile);                              /* tile[j] = B[a][o0:o0+16, jb+j] */
            const int jn = (int)(r - jb < 16 ? r - jb : 16);
            for (int j = 0; j < jn; ++j) _mm512_mask_storeu_ps(Bt + (jb + j) * d_out + o0, om, tile[j]);
        }
    }
}

static AVX512 void group_avx512(const ctx_t *c, int64_t a, const int64_t *rows, int64_t n, float *Bt) {
    const int64_t d_in = c->d_in, d_out = c->d_out, r = c->r;
    const float *Aa = c->A + a * r * d_in, *Ba = c->B + a * d_out * r;
    const float s = c->s[a];
    for (int64_t k0 = 0; k0 < n; k0 += 4) {                /* shrink, 4 rows at a time */
        const float *xs[4];
        float *vs[4];
        const int m = (int)(n - k0 < 4 ? n - k0 : 4);
        for (int q = 0; q < m; ++q) {
            xs[q] = c->x + rows[k0 + q] * d_in;
            vs[q] = c->v + rows[k0 + q] * r;
        }
        switch (m) {
        case 4: shrink_m(Aa, d_in, r, s, xs, vs, 4); break;
        case 3: shrink_m(Aa, d_in, r, s, xs, vs, 3); break;
        case 2: shrink_m(Aa, d_in, r, s, xs, vs, 2); break;
        default: shrink_m(Aa, d_in, r, s, xs, vs, 1); break;
        }
    }
    transpose_b(Ba, d_out, r, Bt);
    for (int64_t k0 = 0; k0 < n; k0 += 8) {                /* expand, 8 rows at a time */
        const float *vs[8];
        float *ys[8];
        const int m = (int)(n - k0 < 8 ? n - k0 : 8);
        for (int q = 0; q < m; ++q) {
            vs[q] = c->v + rows[k0 + q] * r;
            ys[q] = c->y + rows[k0 + q] * d_out;
        }
        switch (m) {
        case 8: expand_m(Bt, d_out, r, vs, ys, 8); break;
        case 7: expand_m(Bt, d_out, r, vs, ys, 7); break;
        case 6: expand_m(Bt, d_out, r, vs, ys, 6); break;
        case 5: expand_m(Bt, d_out, r, vs, ys, 5); break;
        case 4: expand_m(Bt, d_out, r, vs, ys, 4); break;
        case 3: expand_m(Bt, d_out, r, vs, ys, 3); break;
        case 2: expand_m(Bt, d_out, r, vs, ys, 2); break;
        default: expand_m(Bt, d_out, r, vs, ys, 1); break;
        }
    }
}
#endif

int peftlab_bgmv_simd(void) {
#ifdef PEFTLAB_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") ? 1 : 0;
#else
    return 0;
#endif
}

/* Returns 0, or -1 on a bad argument / -2 when out of memory (y is then untouched). */
int peftlab_bgmv_f32(const float *x, const float *A, const float *B, const int64_t *idx, const float *scaling,
                     float *y, int64_t T, int64_t d_in, int64_t d_out, int64_t r, int64_t K, int nthreads,
                     int allow_simd) {
    if (T < 0 || d_in < 1 || d_out < 1 || r < 1 || K < 1) return -1;
    for (int64_t t = 0; t < T; ++t)
        if (idx[t] < -1 || idx[t] >= K) return -1;
    int64_t *count = calloc((size_t)K + 1, sizeof(int64_t));
    int64_t *order = malloc((size_t)(T ? T : 1) * sizeof(int64_t));
    float *v = malloc((size_t)(T ? T : 1) * (size_t)r * sizeof(float));
    if (!count || !order || !v) {
        free(count); free(order); free(v);
        return -2;
    }
    /* counting sort by adapter; count[a] becomes the start of group a */
    for (int64_t t = 0; t < T; ++t) if (idx[t] >= 0) count[idx[t] + 1]++;
    for (int64_t a = 0; a < K; ++a) count[a + 1] += count[a];
    {
        int64_t *fill = malloc((size_t)K * sizeof(int64_t));
        if (!fill) { free(count); free(order); free(v); return -2; }
        memcpy(fill, count, (size_t)K * sizeof(int64_t));
        for (int64_t t = 0; t < T; ++t) {
            if (idx[t] >= 0) order[fill[idx[t]]++] = t;
            else memset(y + t * d_out, 0, (size_t)d_out * sizeof(float));
        }
        free(fill);
    }
    const ctx_t c = {x, A, B, scaling, y, v, d_in, d_out, r, order};
#ifdef PEFTLAB_X86
    const int simd = allow_simd && peftlab_bgmv_simd();
#else
    const int simd = 0;
    (void)allow_simd;
#endif
    if (nthreads < 1) nthreads = 1;
    if ((int64_t)nthreads > T) nthreads = T > 0 ? (int)T : 1;
#ifdef _OPENMP
#pragma omp parallel num_threads(nthreads)
#endif
    {
        float *Bt = simd ? malloc((size_t)r * (size_t)d_out * sizeof(float)) : 0;   /* per thread; NULL: plain loop */
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
        for (int64_t a = 0; a < K; ++a) {
            const int64_t n = count[a + 1] - count[a];
            if (!n) continue;
#ifdef PEFTLAB_X86
            if (Bt) { group_avx512(&c, a, order + count[a], n, Bt); continue; }
#endif
            group_scalar(&c, a, order + count[a], n);
        }
        free(Bt);
    }
    free(count); free(order); free(v);
    return 0;
}
