// Scalar and SIMD math of the fused kernels: the dropout stream, LeakyReLU, exp
// across heads, fresh buffers, prefetching and the per-head dot products.
// Included by fused_attention_kernels.h only (once per instruction set, each time
// in its own namespace; no include guard).

constexpr int64_t kMaxChunks = 256;

// A kernel's per-edge or per-node scratch of N values: on the stack when N is a
// compile-time size (N > 0), where the compiler keeps it in registers (one AVX2
// register holds 8 heads), else a heap vector of the run-time size.
template <typename T, int64_t N>
struct Local {
  T v[N];
  explicit Local(int64_t) {}
  T* data() { return v; }
  const T* data() const { return v; }
  T* begin() { return v; }
  T* end() { return v + N; }
  T& operator[](int64_t k) { return v[k]; }
  const T& operator[](int64_t k) const { return v[k]; }
};

template <typename T>
struct Local<T, 0> {
  std::vector<T> v;
  explicit Local(int64_t n) : v(static_cast<size_t>(n)) {}
  T* data() { return v.data(); }
  const T* data() const { return v.data(); }
  T* begin() { return v.data(); }
  T* end() { return v.data() + v.size(); }
  T& operator[](int64_t k) { return v[k]; }
  const T& operator[](int64_t k) const { return v[k]; }
};

// p[0, n) = 0.  In the AVX2 copy with vector stores: GCC turns std::fill of a
// row-sized block (256 bytes for 8 x 8) into `rep stos`, whose start-up cost per
// row was a tenth of a backward pass on a molecule batch.
template <typename T>
inline void zero_fill(T* p, int64_t n) {
#if defined(PYG_ATTN_KERNELS_AVX2)
  if constexpr (std::is_same_v<T, float>) {
    int64_t k = 0;
    for (; k + 8 <= n; k += 8) _mm256_storeu_ps(p + k, _mm256_setzero_ps());
    for (; k < n; ++k) p[k] = 0.0f;
    return;
  }
#endif
  std::fill(p, p + n, T(0));
}

// The compile-time size of a [heads, width] buffer (0: known at run time only).
constexpr int64_t fixed_size(int HF, int W) { return HF > 0 && W > 0 ? int64_t(HF) * W : 0; }

// Counter-based dropout stream; pyg_attn/ops/dropout.py computes the same bits.
inline uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x21f0aaadU;
  x ^= x >> 15;
  x *= 0x735a2d97U;
  x ^= x >> 15;
  return x;
}

// The 24 random bits of the dropout stream at `counter`: the edge-head is kept iff
// they reach ceil(p * 2^24) (keep_threshold), i.e. iff bits / 2^24 >= p.
inline uint32_t dropout_bits(uint32_t seed, int64_t counter) {
  const uint64_t c = static_cast<uint64_t>(counter);
  return mix32(mix32(static_cast<uint32_t>(c >> 32) ^ seed) ^
               static_cast<uint32_t>(c & 0xffffffffu)) >> 8;
}

#if defined(PYG_ATTN_KERNELS_AVX2)
// mix32 on eight 32-bit lanes.
inline __m256i mix32_lanes(__m256i x) {
  x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 16));
  x = _mm256_mullo_epi32(x, _mm256_set1_epi32(0x21f0aaad));
  x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 15));
  x = _mm256_mullo_epi32(x, _mm256_set1_epi32(0x735a2d97));
  return _mm256_xor_si256(x, _mm256_srli_epi32(x, 15));
}

// The keep decisions of the counters c .. c + 7 as lanes (all ones: kept), with
// the bits of dropout_bits; the eight counters must share their high word.
inline __m256i keep_lanes(uint32_t seed, uint64_t c, uint32_t threshold) {
  const __m256i high = _mm256_set1_epi32(static_cast<int32_t>(mix32(static_cast<uint32_t>(c >> 32) ^ seed)));
  const __m256i low = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int32_t>(c & 0xffffffffu)),
                                       _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  const __m256i bits = _mm256_srli_epi32(mix32_lanes(_mm256_xor_si256(high, low)), 8);
  // bits < 2^24 and threshold <= 2^24: the signed compare is exact.
  return _mm256_cmpgt_epi32(bits, _mm256_set1_epi32(static_cast<int32_t>(threshold) - 1));
}
#endif

// ceil(p * 2^24) for p in [0, 1]: exact, as p * 2^24 is.
inline uint32_t keep_threshold(double p) { return static_cast<uint32_t>(std::ceil(p * 16777216.0)); }

// Branch-free on purpose: the sign of z is a coin flip, so a branch mispredicts
// half the time (it made GATv2's score loop several times slower).
template <typename T>
inline T leaky(T z, T slope) { return std::max(z, T(0)) + slope * std::min(z, T(0)); }

template <typename T>
inline T leaky_grad(T z, T slope) { return slope + (T(1) - slope) * static_cast<T>(z > T(0)); }

// y[k] = exp(x[k]) for k < n, with exp(-inf) = 0 exactly and NaN kept.  The float
// version is branch-free (Cody-Waite reduction and the Cephes degree-6 polynomial,
// about 1 ulp) so the compiler vectorises it across heads; double uses std::exp.
// N > 0 fixes the count at compile time (an edge's heads): one straight vector
// pass, small enough to be inlined, where a run-time count kept a call and a loop.
template <int N = 0>
inline void exp_lanes(const float* x, float* y, int64_t n) {
  const int64_t count = N > 0 ? N : n;
  for (int64_t k = 0; k < count; ++k) {
    const float in = x[k];
    const float v = std::min(std::max(in, -87.0f), 88.0f);
    const float fn = std::floor(v * 1.44269504088896341f + 0.5f);
    float r = v - fn * 0.693359375f;
    r = r + fn * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const int32_t bits = (static_cast<int32_t>(fn) + 127) << 23;
    float scale;
    std::memcpy(&scale, &bits, sizeof(scale));
    y[k] = in != in ? in : (in < -87.0f ? 0.0f : p * scale);
  }
}

template <int N = 0>
inline void exp_lanes(const double* x, double* y, int64_t n) {
  for (int64_t k = 0; k < (N > 0 ? N : n); ++k) y[k] = std::exp(x[k]);
}

// y[k] = log(x[k]) for k < n, with log(0) = -inf, log(inf) = inf and NaN (or a
// negative x) giving NaN.  The float version is branch-free (the exponent from the
// bits, the mantissa folded into [sqrt(1/2), sqrt(2)), and the Cephes degree-8
// polynomial, about 1 ulp; subnormals are scaled by 2^23 first) so the compiler
// vectorises it across heads: a libm call per head took a sixth of GAT's forward.
inline void log_lanes(const float* x, float* y, int64_t n) {
  for (int64_t k = 0; k < n; ++k) {
    const float in = x[k];
    const bool tiny = in < 1.17549435e-38f;  // subnormal (or not positive: fixed below)
    const float v = tiny ? in * 8388608.0f : in;
    int32_t bits;
    std::memcpy(&bits, &v, sizeof(bits));
    float e = static_cast<float>(((bits >> 23) & 0xff) - 126) - (tiny ? 23.0f : 0.0f);
    bits = (bits & 0x007fffff) | 0x3f000000;  // mantissa in [0.5, 1)
    float m;
    std::memcpy(&m, &bits, sizeof(m));
    const bool low = m < 0.707106781186547524f;
    e -= low ? 1.0f : 0.0f;
    const float r = (low ? m + m : m) - 1.0f;
    const float z = r * r;
    float p = 7.0376836292e-2f;
    p = p * r - 1.1514610310e-1f;
    p = p * r + 1.1676998740e-1f;
    p = p * r - 1.2420140846e-1f;
    p = p * r + 1.4249322787e-1f;
    p = p * r - 1.6668057665e-1f;
    p = p * r + 2.0000714765e-1f;
    p = p * r - 2.4999993993e-1f;
    p = p * r + 3.3333331174e-1f;
    float l = p * r * z + e * -2.12194440e-4f - 0.5f * z;
    l = (r + l) + e * 0.693359375f;
    const float inf = std::numeric_limits<float>::infinity();
    l = in == inf ? inf : l;
    l = in == 0.0f ? -inf : l;
    y[k] = (in > 0.0f || in == 0.0f) ? l : std::numeric_limits<float>::quiet_NaN();
  }
}

inline void log_lanes(const double* x, double* y, int64_t n) {
  for (int64_t k = 0; k < n; ++k) y[k] = std::log(x[k]);
}

// An output or scratch buffer of node or edge size, zero-filled when `zero`.
// These are fresh mmap'ed memory on every call, and with 4 KiB pages the first
// touch of each page (a fault and a page clear) cost about as much as the
// kernel's own work; transparent huge pages, asked for before the first touch,
// cut the number of faults 512-fold.  The advice is a no-op where unsupported.
at::Tensor fresh(at::IntArrayRef shape, const at::TensorOptions& opts, bool zero) {
  at::Tensor t = at::empty(shape, opts);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t(2) << 20;
  const auto begin = reinterpret_cast<uintptr_t>(t.data_ptr());
  const uintptr_t first = (begin + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t last = (begin + t.nbytes()) & ~(kHuge - 1);
  if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
#endif
  if (zero) t.zero_();
  return t;
}

// Prefetches the `bytes` following `ptr` (rows of features read at random).
inline void prefetch_row(const void* ptr, int64_t bytes) {
  const char* c = static_cast<const char*>(ptr);
  for (int64_t off = 0; off < bytes; off += 64) __builtin_prefetch(c + off);
}

constexpr int64_t kPrefetchDistance = 8;  // edges ahead

template <typename T>
const T* ptr_or_null(const c10::optional<at::Tensor>& t) {
  return (t.has_value() && t->defined()) ? t->data_ptr<T>() : nullptr;
}

// <a, b + shift> over n elements (shift may be null), vectorised with a fixed
// association; the branch on `shift` is taken once, outside the loop.
template <typename T>
inline T dot_shifted(const T* a, const T* b, const T* shift, int64_t n) {
  T acc = 0;
  if (shift) {
    PYG_ATTN_SIMD_SUM(acc)
    for (int64_t d = 0; d < n; ++d) acc += a[d] * (b[d] + shift[d]);
  } else {
    PYG_ATTN_SIMD_SUM(acc)
    for (int64_t d = 0; d < n; ++d) acc += a[d] * b[d];
  }
  return acc;
}

// out[h] = <a_h, b_h + shift_h> for the H heads of a row of C channels each
// (shift may be null).  With AVX2 and C a multiple of 8, eight heads at a time:
// per head an 8-lane product (summed over the row's 8-lane blocks), then the
// eight horizontal sums in one hadd tree, instead of eight separate reductions.
template <int C, typename T>
inline void heads_dot(const T* a, const T* b, const T* shift, int64_t H, int64_t dim, T* out) {
  const int64_t n = C > 0 ? C : dim;
  for (int64_t h = 0; h < H; ++h)
    out[h] = dot_shifted(a + h * n, b + h * n, shift ? shift + h * n : nullptr, n);
}

#if defined(PYG_ATTN_KERNELS_AVX2)
// [sum(p0), ..., sum(p7)] of eight 8-lane vectors.
inline __m256 sum_lanes_8x8(const __m256* p) {
  const __m256 u0 = _mm256_hadd_ps(_mm256_hadd_ps(p[0], p[1]), _mm256_hadd_ps(p[2], p[3]));
  const __m256 u1 = _mm256_hadd_ps(_mm256_hadd_ps(p[4], p[5]), _mm256_hadd_ps(p[6], p[7]));
  return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

template <int C>
inline void heads_dot_avx2(const float* a, const float* b, const float* shift, int64_t H, float* out) {
  int64_t h = 0;
  for (; h + 8 <= H; h += 8) {
    __m256 p[8];
    for (int k = 0; k < 8; ++k) {
      const float* ah = a + (h + k) * C;
      const float* bh = b + (h + k) * C;
      const float* sh = shift ? shift + (h + k) * C : nullptr;
      __m256 acc = _mm256_setzero_ps();
      for (int c = 0; c < C; c += 8) {
        __m256 bv = _mm256_loadu_ps(bh + c);
        if (sh) bv = _mm256_add_ps(bv, _mm256_loadu_ps(sh + c));
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(ah + c), bv, acc);
      }
      p[k] = acc;
    }
    _mm256_storeu_ps(out + h, sum_lanes_8x8(p));
  }
  for (; h < H; ++h) out[h] = dot_shifted(a + h * C, b + h * C, shift ? shift + h * C : nullptr, int64_t(C));
}

// GATv2's scores out[h] = <att_h, leaky(xs_h + xd_h + ef_h)> (ef may be null) of
// eight heads at a time, C channels each (a multiple of 8), summed in one tree as
// in heads_dot_avx2; returns the number of heads done (H rounded down to 8).
// leaky as max(0, z) + slope * min(0, z), keeping a NaN z as the scalar leaky does.
template <int C>
inline int64_t heads_gatv2_avx2(const float* xs, const float* xd, const float* ef,
                                const float* att, float slope, int64_t H, float* out) {
  const __m256 zero = _mm256_setzero_ps(), sl = _mm256_set1_ps(slope);
  int64_t h = 0;
  for (; h + 8 <= H; h += 8) {
    __m256 p[8];
    for (int k = 0; k < 8; ++k) {
      const int64_t o = (h + k) * C;
      __m256 acc = zero;
      for (int c = 0; c < C; c += 8) {
        __m256 z = _mm256_add_ps(_mm256_loadu_ps(xs + o + c), _mm256_loadu_ps(xd + o + c));
        if (ef) z = _mm256_add_ps(z, _mm256_loadu_ps(ef + o + c));
        const __m256 lz = _mm256_fmadd_ps(sl, _mm256_min_ps(zero, z), _mm256_max_ps(zero, z));
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(att + o + c), lz, acc);
      }
      p[k] = acc;
    }
    _mm256_storeu_ps(out + h, sum_lanes_8x8(p));
  }
  return h;
}

#define PYG_ATTN_HEADS_DOT_AVX2(C)                                                          \
  template <>                                                                               \
  inline void heads_dot<C, float>(const float* a, const float* b, const float* shift,       \
                                  int64_t H, int64_t, float* out) {                         \
    heads_dot_avx2<C>(a, b, shift, H, out);                                                 \
  }
PYG_ATTN_HEADS_DOT_AVX2(8)
PYG_ATTN_HEADS_DOT_AVX2(16)
PYG_ATTN_HEADS_DOT_AVX2(32)
PYG_ATTN_HEADS_DOT_AVX2(64)
#undef PYG_ATTN_HEADS_DOT_AVX2
#endif
