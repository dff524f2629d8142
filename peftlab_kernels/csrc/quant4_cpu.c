/* 4-bit blockwise dequantization on the CPU: one fused pass, bit-exact with the PyTorch reference.

       out[i] = round_dtype( fl32( level[code_i] * absmax[i / blocksize] ) )

   with absmax either given (fp32), or rebuilt on the fly from QLoRA's double quantization state,
   as the PyTorch path rebuilds it (two fp32 roundings, never fused into an FMA: -ffp-contract=off):

       absmax[b] = fl32( fl32( dyn[qabsmax[b]] * scale2[b / 256] ) + offset )

   code_i is the high nibble of byte i/2 for even i, the low nibble for odd i (bitsandbytes' order).
   The PyTorch path (kernels/quant4_torch.py) needs three passes over memory (gather the levels,
   scale, cast); this reads each packed byte once and writes each output once.

   AVX-512 path (chosen at run time with __builtin_cpu_supports, so the library also loads on CPUs
   without it). Since blocksize is a power of two >= 32, every 32 consecutive elements share one
   absmax, and a block has only 16 possible outputs: level[0..15] * absmax. So once per block the
   16 products are computed (one vmulps) and rounded to the output dtype; then each 32 elements
   cost one table lookup: `vpermw` maps 32 codes to 32 finished bf16/fp16 values (two `vpermps`
   for fp32). Same operands, same single rounding: the values are those of the per-element
   formula. Rounding to bf16 is done in integers (to nearest, ties to even, subnormals kept) as
   c10::BFloat16 does, not with vcvtneps2bf16 (which flushes subnormals); fp16 uses vcvtps2ph with
   round-to-nearest-even, as torch does.

   Threads: the caller passes torch.get_num_threads(); the range is split into 32-element-aligned
   slices, one OpenMP thread each. Built with -fopenmp, the library links libgomp.so.1, which the
   loader resolves to the copy torch already loaded, so these slices run on torch's own thread
   pool (as bitsandbytes' loops do) instead of new threads fighting its spinning workers for the
   cores. Without OpenMP the loop runs on the calling thread. Small tensors use one thread.

   Build: cc -O3 -shared -fPIC -fopenmp -ffp-contract=off (no -march: the AVX-512 function carries
   its own target).
*/
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define PEFTLAB_X86 1
#endif

enum { OUT_F32 = 0, OUT_BF16 = 1, OUT_F16 = 2 };

typedef struct {
    const uint8_t *packed;
    const float *absmax;   /* plain: (n_blocks,) fp32; NULL with double quant */
    const uint8_t *qabsmax;/* double quant: (n_blocks,) 8-bit codes into dyn */
    const float *dyn;      /* (256,) the 8-bit dynamic map */
    const float *scale2;   /* (ceil(n_blocks / 256),) fp32 */
    float offset;
    const float *levels;   /* 16 fp32 values, indexed by the 4-bit code */
    void *out;
    int64_t begin, end;    /* element range [begin, end), begin a multiple of 32 */
    int shift;             /* log2(blocksize) */
    int dtype;
    int simd;
} job_t;

static inline uint16_t bf16_round(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0; /* NaN, as c10::BFloat16 */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline uint16_t f16_round(float f) {
    /* IEEE binary16, round to nearest even, subnormals kept: the fp16_ieee_from_fp32_value
       algorithm (Maratyszcza's FP16 library) that c10::Half uses. Scaling by 2^112 then 2^-110
       lets the fp32 adder do the rounding; overflow becomes inf, NaN becomes 0x7E00. */
    const float scale_to_inf = 0x1.0p+112f, scale_to_zero = 0x1.0p-110f;
    uint32_t w, bits;
    memcpy(&w, &f, 4);
    const float a = f < 0 ? -f : f;
    float base = (a * scale_to_inf) * scale_to_zero;
    const uint32_t shl1_w = w + w;
    const uint32_t sign = w & 0x80000000u;
    uint32_t bias = shl1_w & 0xff000000u;
    if (bias < 0x71000000u) bias = 0x71000000u;
    const uint32_t bias_bits = (bias >> 1) + 0x07800000u;
    float bias_f;
    memcpy(&bias_f, &bias_bits, 4);
    base = bias_f + base;
    memcpy(&bits, &base, 4);
    const uint32_t nonsign = ((bits >> 13) & 0x7c00u) + (bits & 0x0fffu);
    return (uint16_t)((sign >> 16) | (shl1_w > 0xff000000u ? 0x7e00u : nonsign));
}

static inline float block_scale(const job_t *j, int64_t b) {
    if (j->absmax) return j->absmax[b];
    const float prod = j->dyn[j->qabsmax[b]] * j->scale2[b >> 8];   /* rounded: no FMA */
    return prod + j->offset;
}

static void run_scalar(const job_t *j, int64_t from) {
    for (int64_t i = from; i < j->end; ++i) {
        const uint8_t byte = j->packed[i >> 1];
        const int code = (i & 1) ? (byte & 0xf) : (byte >> 4);
        const float v = j->levels[code] * block_scale(j, i >> j->shift);
        switch (j->dtype) {
        case OUT_F32: ((float *)j->out)[i] = v; break;
        case OUT_BF16: ((uint16_t *)j->out)[i] = bf16_round(v); break;
        default: ((uint16_t *)j->out)[i] = f16_round(v); break;
        }
    }
}

#ifdef PEFTLAB_X86
__attribute__((target("avx512f")))
static inline __m256i bf16_round16(__m512 v) {
    const __m512i u = _mm512_castps_si512(v);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
    const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    r = _mm512_mask_mov_epi32(r, nan, _mm512_set1_epi32(0x7fc0));
    return _mm512_cvtepi32_epi16(r);
}

__attribute__((target("avx512f,avx512bw")))
static void run_avx512(const job_t *j) {
    const __m512 lv = _mm512_loadu_ps(j->levels);
    const __m128i low4 = _mm_set1_epi8(0x0f);
    __m512 tab32 = lv;                         /* the block's 16 outputs, fp32 */
    __m512i tab16 = _mm512_setzero_si512();    /* the same, rounded to 16 bits (lanes 0..15) */
    int64_t block = -1;
    int64_t i = j->begin;
    for (; i + 32 <= j->end; i += 32) {
        const int64_t b = i >> j->shift;
        if (b != block) {                      /* new block: scale the table once, round it once */
            block = b;
            tab32 = _mm512_mul_ps(lv, _mm512_set1_ps(block_scale(j, b)));
            if (j->dtype == OUT_BF16)
                tab16 = _mm512_castsi256_si512(bf16_round16(tab32));
            else if (j->dtype == OUT_F16)
                tab16 = _mm512_castsi256_si512(_mm512_cvtps_ph(tab32, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        }
        /* 16 bytes -> 32 codes in element order: hi0 lo0 hi1 lo1 ... */
        const __m128i bytes = _mm_loadu_si128((const __m128i *)(j->packed + (i >> 1)));
        const __m128i hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), low4);
        const __m128i lo = _mm_and_si128(bytes, low4);
        const __m128i c0 = _mm_unpacklo_epi8(hi, lo), c1 = _mm_unpackhi_epi8(hi, lo);
        if (j->dtype == OUT_F32) {
            float *o = (float *)j->out + i;
            _mm512_storeu_ps(o, _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(c0), tab32));
            _mm512_storeu_ps(o + 16, _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(c1), tab32));
        } else {                               /* one vpermw: 32 codes -> 32 finished 16-bit values */
            const __m512i idx = _mm512_cvtepu8_epi16(_mm256_set_m128i(c1, c0));
            _mm512_storeu_si512((uint16_t *)j->out + i, _mm512_permutexvar_epi16(idx, tab16));
        }
    }
    run_scalar(j, i);
}
#endif

static void *run_job(void *arg) {
    const job_t *j = (const job_t *)arg;
#ifdef PEFTLAB_X86
    if (j->simd) {
        run_avx512(j);
        return 0;
    }
#endif
    run_scalar(j, j->begin);
    return 0;
}

/* 1 when the AVX-512 path will be used on this CPU. */
int peftlab_dequant4_simd(void) {
#ifdef PEFTLAB_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") ? 1 : 0;
#else
    return 0;
#endif
}

/* Returns 0 on success, -1 on a bad argument. */
int peftlab_dequant4(const uint8_t *packed, const float *absmax, const uint8_t *qabsmax, const float *dyn,
                     const float *scale2, float offset, const float *levels, int64_t n, int64_t blocksize,
                     int dtype, void *out, int nthreads, int allow_simd) {
    if (!absmax && !(qabsmax && dyn && scale2)) return -1;
    if (n < 0 || blocksize < 32 || (blocksize & (blocksize - 1)) || dtype < 0 || dtype > 2) return -1;
    int shift = 0;
    while ((1ll << shift) < blocksize) ++shift;
    const int simd = allow_simd && peftlab_dequant4_simd();   /* tests pass 0 to check the scalar loop */
    if (nthreads < 1) nthreads = 1;
    if (nthreads > 64) nthreads = 64;
    const int64_t min_per_thread = 1 << 18;
    if ((int64_t)nthreads * min_per_thread > n) nthreads = (int)(n / min_per_thread) + 1;
    if (nthreads > 64) nthreads = 64;

    job_t jobs[64];
    const int64_t groups = (n + 31) / 32;
    for (int t = 0; t < nthreads; ++t) {
        int64_t g0 = groups * t / nthreads, g1 = groups * (t + 1) / nthreads;
        int64_t b = g0 * 32, e = g1 * 32;
        if (e > n) e = n;
        jobs[t] = (job_t){packed, absmax, qabsmax, dyn, scale2, offset, levels, out, b, e, shift, dtype, simd};
    }
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(static, 1)
#endif
    for (int t = 0; t < nthreads; ++t) run_job(&jobs[t]);
    return 0;
}
