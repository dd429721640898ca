// The fused kernels (see fused_attention.cpp), included once per instruction set
// it compiles them for (AVX2/FMA and the build's baseline target).  Only
// what the copies share (ScoreKind, index_t, the SIMD pragmas) is defined
// outside; the arguments reaching forward()/backward() below have been checked.
// No include guard: each inclusion defines the kernels in its own namespace.

constexpr int64_t kMaxChunks = 256;

// Counter-based dropout stream; pyg_attn/ops/dropout.py computes the same bits.
inline uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x21f0aaadU;
  x ^= x >> 15;
  x *= 0x735a2d97U;
  x ^= x >> 15;
  return x;
}

inline bool dropout_keep(uint32_t seed, int64_t counter, double p) {
  const uint64_t c = static_cast<uint64_t>(counter);
  const uint32_t x = mix32(mix32(static_cast<uint32_t>(c >> 32) ^ seed) ^
                           static_cast<uint32_t>(c & 0xffffffffu));
  return static_cast<double>(x >> 8) * (1.0 / 16777216.0) >= p;
}

// Branch-free on purpose: the sign of z is a coin flip, so a branch mispredicts
// half the time (it made GATv2's score loop several times slower).
template <typename T>
inline T leaky(T z, T slope) { return std::max(z, T(0)) + slope * std::min(z, T(0)); }

template <typename T>
inline T leaky_grad(T z, T slope) { return slope + (T(1) - slope) * static_cast<T>(z > T(0)); }

// y[k] = exp(x[k]) for k < n, with exp(-inf) = 0 exactly and NaN kept.  The float
// version is branch-free (Cody-Waite reduction and the Cephes degree-6 polynomial,
// about 1 ulp) so the compiler vectorises it across heads; double uses std::exp.
inline void exp_lanes(const float* x, float* y, int64_t n) {
  for (int64_t k = 0; k < n; ++k) {
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

inline void exp_lanes(const double* x, double* y, int64_t n) {
  for (int64_t k = 0; k < n; ++k) y[k] = std::exp(x[k]);
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

#if defined(__AVX2__) && defined(__FMA__)
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


template <typename T>
struct Graph {
  int64_t n_dst, n_src, num_edges, heads, dim, dim_v;
  const int64_t* rowptr;
  const index_t* col;
  const index_t* perm;
  const T* dst;      // [n_dst, H, dim]
  const T* src;      // [n_src, H, dim]
  const T* value;    // [n_src, H, dim_v]
  const T* att;      // [H, dim] or null
  const T* escore;   // [E, H] or null (caller's edge order)
  const T* efeat;    // [E, H, dim] or null
  const T* evalue;   // [E, H, dim_v] or null
  const bool* emask; // [E] or null
  T scale, slope;
  double p_drop;
  T keep_scale;
  uint32_t seed;

  // Dropout factor of edge e, head h: 1, 1 / (1 - p) or 0.
  inline T drop_factor(int64_t e, int64_t h) const {
    if (p_drop <= 0.0) return T(1);
    return dropout_keep(seed, e * heads + h, p_drop) ? keep_scale : T(0);
  }

  // GAT's score before the leaky ReLU.
  inline T gat_logit(int64_t i, int64_t j, int64_t e, int64_t h) const {
    const T z = src[j * heads + h] + dst[i * heads + h];
    return escore ? z + escore[e * heads + h] : z;
  }

  template <int KIND, int FD>
  inline T score(int64_t i, int64_t j, int64_t e, int64_t h) const {
    const int64_t dim = FD > 0 ? FD : this->dim;
    static_assert(KIND != DOT, "dot scores come from scores(), all heads at once");
    if (KIND == GAT) {
      return leaky(gat_logit(i, j, e, h), slope);
    } else if (KIND == GATV2) {
      const T* xs = src + (j * heads + h) * dim;
      const T* xd = dst + (i * heads + h) * dim;
      const T* a = att + h * dim;
      const T* ef = efeat ? efeat + (e * heads + h) * dim : nullptr;
      const T slope_ = slope;
      T acc = 0;
      if (ef) {
        PYG_ATTN_SIMD_SUM(acc)
        for (int64_t d = 0; d < dim; ++d) {
          const T z = xs[d] + xd[d] + ef[d];
          acc += a[d] * leaky(z, slope_);
        }
      } else {
        PYG_ATTN_SIMD_SUM(acc)
        for (int64_t d = 0; d < dim; ++d) {
          const T z = xs[d] + xd[d];
          acc += a[d] * leaky(z, slope_);
        }
      }
      return acc;
    } else {
      return escore[e * heads + h];
    }
  }

  // s[h] for every head of edge j -> i (e = its caller's id).
  template <int KIND, int FD>
  inline void scores(int64_t i, int64_t j, int64_t e, T* s) const {
    if constexpr (KIND == DOT) {
      const int64_t row = heads * (FD > 0 ? FD : dim);
      heads_dot<FD>(dst + i * row, src + j * row, efeat ? efeat + e * row : nullptr, heads, dim, s);
      for (int64_t h = 0; h < heads; ++h) s[h] *= scale;
      if (escore)
        for (int64_t h = 0; h < heads; ++h) s[h] += escore[e * heads + h];
    } else {
      for (int64_t h = 0; h < heads; ++h) s[h] = score<KIND, FD>(i, j, e, h);
    }
  }

  inline bool masked(int64_t e) const { return emask && !emask[e]; }
};

// Row boundaries of `chunks` contiguous row ranges with about equal rows + edges.
std::vector<int64_t> balanced_chunks(const int64_t* ptr, int64_t n) {
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(n, kMaxChunks));
  std::vector<int64_t> bounds(chunks + 1, n);
  bounds[0] = 0;
  const double total = static_cast<double>(ptr[n] + n);
  int64_t k = 1;
  for (int64_t r = 0; r < n && k < chunks; ++r) {
    while (k < chunks && static_cast<double>(ptr[r] + r) >= total * k / chunks) bounds[k++] = r;
  }
  return bounds;
}

template <typename F>
void for_each_chunk(const std::vector<int64_t>& bounds, const F& body) {
  const int64_t chunks = static_cast<int64_t>(bounds.size()) - 1;
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) body(c, bounds[c], bounds[c + 1]);
  });
}

template <typename T>
Graph<T> make_graph(int64_t kind, const at::Tensor& rowptr, const at::Tensor& col,
                    const at::Tensor& perm, const at::Tensor& dst, const at::Tensor& src,
                    const at::Tensor& value, const c10::optional<at::Tensor>& att,
                    const c10::optional<at::Tensor>& edge_score,
                    const c10::optional<at::Tensor>& edge_feat,
                    const c10::optional<at::Tensor>& edge_value,
                    const c10::optional<at::Tensor>& edge_mask, double scale, double slope,
                    double p_drop, int64_t seed) {
  Graph<T> g;
  g.n_dst = rowptr.size(0) - 1;
  g.n_src = src.size(0);
  g.num_edges = col.size(0);
  g.heads = value.size(1);
  g.dim = dst.size(2);
  g.dim_v = value.size(2);
  g.rowptr = rowptr.data_ptr<int64_t>();
  g.col = col.data_ptr<index_t>();
  g.perm = perm.data_ptr<index_t>();
  g.dst = dst.data_ptr<T>();
  g.src = src.data_ptr<T>();
  g.value = value.data_ptr<T>();
  g.att = ptr_or_null<T>(att);
  g.escore = ptr_or_null<T>(edge_score);
  g.efeat = ptr_or_null<T>(edge_feat);
  g.evalue = ptr_or_null<T>(edge_value);
  g.emask = ptr_or_null<bool>(edge_mask);
  g.scale = static_cast<T>(scale);
  g.slope = static_cast<T>(slope);
  g.p_drop = p_drop;
  g.keep_scale = p_drop < 1.0 ? static_cast<T>(1.0 / (1.0 - p_drop)) : T(0);
  g.seed = static_cast<uint32_t>(seed);
  TORCH_CHECK(kind != GATV2 || g.att != nullptr, "fused_attention: kind gatv2 needs 'att'");
  TORCH_CHECK(kind != EDGE || g.escore != nullptr || g.num_edges == 0,
              "fused_attention: kind edge needs 'edge_score'");
  return g;
}

// Row statistics as (max, log-sum); heads without any edge get (-inf, -inf).
// `shift`/`log_sum` are what to subtract from a score: 0 for such heads, so that
// their (-inf) scores still give exp(-inf) = 0 rather than NaN.
template <typename T>
inline void row_shift(const T* stats, int64_t H, T* shift, T* log_sum) {
  for (int64_t h = 0; h < H; ++h) {
    const bool empty = stats[2 * h] == -std::numeric_limits<T>::infinity();
    shift[h] = empty ? T(0) : stats[2 * h];
    log_sum[h] = empty ? T(0) : stats[2 * h + 1];
  }
}

// a[h] = exp((s[h] - shift_h) - log_sum_h) in place: one edge's attention from its
// scores and its row's record, which starts with [shift, log_sum] x H (row_shift).
template <typename T>
inline void attention_from_scores(T* a, const T* record, int64_t H) {
  for (int64_t h = 0; h < H; ++h) a[h] = (a[h] - record[h]) - record[H + h];
  exp_lanes(a, a, H);
}

// Scores of every edge of row i into buf [deg, H] (-inf for masked edges).
template <int KIND, typename T, int FD>
inline void row_scores(const Graph<T>& g, int64_t i, T* buf, int64_t limit) {
  const int64_t H = g.heads, end = g.rowptr[i + 1], D = FD > 0 ? FD : g.dim;
  // Rows of source features read at random (value rows are prefetched by the callers),
  // prefetched up to `limit` (the chunk's last edge), across rows: most rows are short.
  const int64_t src_row = KIND == GAT ? H : (KIND == EDGE ? 0 : H * D);
  for (int64_t p = g.rowptr[i]; p < end; ++p, buf += H) {
    if (src_row && p + kPrefetchDistance < limit)
      prefetch_row(g.src + g.col[p + kPrefetchDistance] * src_row, src_row * sizeof(T));
    const int64_t e = g.perm[p];
    if (g.masked(e)) {
      std::fill(buf, buf + H, -std::numeric_limits<T>::infinity());
      continue;
    }
    g.template scores<KIND, FD>(i, g.col[p], e, buf);
  }
}

// Two passes per row over a row-local score buffer: scores and their maximum,
// then exp (vectorised across heads), the sum, and the weighted values.
template <int KIND, typename T, int FD, int FV>
void forward_rows(const Graph<T>& g, int64_t begin, int64_t end, T* out, T* stats, T* alpha) {
  const int64_t H = g.heads, Cv = FV > 0 ? FV : g.dim_v;
  const T neg_inf = -std::numeric_limits<T>::infinity();
  std::vector<T> m(H), l(H), buf;
  const int64_t limit = g.rowptr[end];
  for (int64_t i = begin; i < end; ++i) {
    const int64_t start = g.rowptr[i], deg = g.rowptr[i + 1] - start;
    T* o = out + i * H * Cv;
    std::fill(o, o + H * Cv, T(0));
    std::fill(m.begin(), m.end(), neg_inf);
    std::fill(l.begin(), l.end(), T(0));
    buf.resize(static_cast<size_t>(deg * H));
    row_scores<KIND, T, FD>(g, i, buf.data(), limit);
    for (int64_t k = 0; k < deg * H; k += H)
      for (int64_t h = 0; h < H; ++h) m[h] = std::max(m[h], buf[k + h]);
    for (int64_t k = 0; k < deg; ++k) {
      T* w = buf.data() + k * H;
      for (int64_t h = 0; h < H; ++h) w[h] -= (m[h] == neg_inf ? T(0) : m[h]);
      exp_lanes(w, w, H);
      const int64_t p = start + k, e = g.perm[p];
      if (p + kPrefetchDistance < limit)
        prefetch_row(g.value + g.col[p + kPrefetchDistance] * H * Cv, H * Cv * sizeof(T));
      if (g.masked(e)) continue;
      const T* v = g.value + g.col[p] * H * Cv;
      const T* ev = g.evalue ? g.evalue + e * H * Cv : nullptr;
      for (int64_t h = 0; h < H; ++h) {
        l[h] += w[h];
        const T wd = w[h] * g.drop_factor(e, h);
        T* oh = o + h * Cv;
        const T* vh = v + h * Cv;
        if (ev) {
          const T* evh = ev + h * Cv;
          PYG_ATTN_SIMD
          for (int64_t c = 0; c < Cv; ++c) oh[c] += wd * (vh[c] + evh[c]);
        } else {
          PYG_ATTN_SIMD
          for (int64_t c = 0; c < Cv; ++c) oh[c] += wd * vh[c];
        }
      }
    }
    for (int64_t h = 0; h < H; ++h) {
      T* st = stats + (i * H + h) * 2;
      if (l[h] > T(0)) {
        const T inv = T(1) / l[h];
        PYG_ATTN_SIMD
        for (int64_t c = 0; c < Cv; ++c) o[h * Cv + c] *= inv;
        st[0] = m[h];
        st[1] = std::log(l[h]);
      } else {
        st[0] = st[1] = neg_inf;
      }
    }
    if (!alpha) continue;
    for (int64_t k = 0; k < deg; ++k) {
      const int64_t e = g.perm[start + k];
      for (int64_t h = 0; h < H; ++h) alpha[e * H + h] = l[h] > T(0) ? buf[k * H + h] / l[h] : T(0);
    }
  }
}

template <int KIND, typename T, int FD, int FV>
void forward_impl(const Graph<T>& g, T* out, T* stats, T* alpha) {
  const auto bounds = balanced_chunks(g.rowptr, g.n_dst);
  for_each_chunk(bounds, [&](int64_t, int64_t b, int64_t e) { forward_rows<KIND, T, FD, FV>(g, b, e, out, stats, alpha); });
}

struct Grads {
  at::Tensor dst, src, value, att, edge_score, edge_feat, edge_value;
};

template <typename T>
T* data_or_null(const at::Tensor& t) { return t.defined() && t.numel() > 0 ? t.data_ptr<T>() : nullptr; }

// Marks, in the log-sum slot of head 0 of a row's record, a destination whose
// output gradient is all zero (and no gradient of the returned attention is
// given): then every gradient its edges carry is exactly zero (w * 0 for the
// values, a * (0 - 0) for the scores), so both backward passes skip its edges.
// A real log-sum is >= 0 (the row maximum is one of its terms), 0 for an empty
// head, or NaN, never -inf.  In a NeighborLoader step only the seed rows carry a
// loss, so most rows of the last layer are skipped.
template <typename T>
constexpr T kSkippedRow = -std::numeric_limits<T>::infinity();

// Whether the n values at x are all zero (+0 or -0).
template <typename T>
inline bool all_zero(const T* x, int64_t n) {
  for (int64_t k = 0; k < n; ++k)
    if (x[k] != T(0)) return false;
  return true;
}

// Starts row i's record [shift, log_sum, delta] x H for the backward passes,
// with delta_i = <dO_i, out_i> per head (a caller with a gradient of the
// returned attention adds its edges' terms).  Returns false, with the row marked
// (kSkippedRow), when dO_i is all zero and there is no such gradient.
template <typename T, int FV>
inline bool start_row_record(const Graph<T>& g, int64_t i, const T* out, const T* stats,
                             const T* gout, bool has_galpha, T* record) {
  const int64_t H = g.heads, Cv = FV > 0 ? FV : g.dim_v;
  const T* go = gout + i * H * Cv;
  if (!has_galpha && all_zero(go, H * Cv)) {
    record[H] = kSkippedRow<T>;
    return false;
  }
  heads_dot<FV>(go, out + i * H * Cv, static_cast<const T*>(nullptr), H, Cv, record + 2 * H);
  row_shift(stats + i * H * 2, H, record, record + H);
  return true;
}

// Per head of one edge j -> i with attention a[h]: the dropped weight
// w = a * drop and the score gradient ds = a * (dL/da - delta_i), where
// dL/da = drop * <dO_i, v_j + edge_value_e> (+ the gradient of the returned
// attention) and delta_i = sum_j a_ij dL/da_ij (precomputed per row).
template <typename T, int FV>
inline void edge_grads(const Graph<T>& g, int64_t j, int64_t e, const T* a, const T* go,
                       const T* delta, const T* galpha, T* w, T* ds) {
  const int64_t H = g.heads, Cv = FV > 0 ? FV : g.dim_v;
  // <dO_i, v_j + edge_value_e> per head, into ds; computed even for dropped
  // edges: skipping them would be a mispredicted branch.
  heads_dot<FV>(go, g.value + j * H * Cv, g.evalue ? g.evalue + e * H * Cv : nullptr, H, Cv, ds);
  for (int64_t h = 0; h < H; ++h) {
    const T dfac = g.drop_factor(e, h);
    T grad_a = dfac * ds[h];
    if (galpha) grad_a += galpha[e * H + h];
    w[h] = a[h] * dfac;
    ds[h] = a[h] * (grad_a - delta[h]);
  }
}

// Destination pass.  Per row i: attention recomputed from the row statistics,
// delta_i, and per edge the destination-side and per-edge gradients.  The row's
// softmax shift, log-sum and delta go to one record [3, H] per row, so that the
// source pass, which visits rows at random, reads them from one place.
template <int KIND, typename T, int FD, int FV>
void backward_rows(const Graph<T>& g, int64_t begin, int64_t end, const T* out, const T* stats,
                   const T* gout, const T* galpha, T* row_records, T* g_dst, T* g_escore,
                   T* g_efeat, T* g_evalue, T* g_att) {
  const int64_t H = g.heads, D = FD > 0 ? FD : g.dim, Cv = FV > 0 ? FV : g.dim_v;
  std::vector<T> w(H), ds(H), buf;
  // The destination's gradient is summed here and stored once per row: summing
  // into g_dst directly chains every edge on a store-to-load round trip.
  std::vector<T> dst_grad(static_cast<size_t>(H * D));
  const int64_t limit = g.rowptr[end];
  for (int64_t i = begin; i < end; ++i) {
    std::fill(dst_grad.begin(), dst_grad.end(), T(0));
    const int64_t start = g.rowptr[i], deg = g.rowptr[i + 1] - start;
    const T* go = gout + i * H * Cv;
    // The row's record for the source pass: [shift, log_sum, delta] x H.
    T* record = row_records + i * 3 * H;
    T* delta = record + 2 * H;
    if (!start_row_record<T, FV>(g, i, out, stats, gout, galpha != nullptr, record)) {
      // Every gradient this row's edges carry is zero (see kSkippedRow).
      if (g_dst) std::copy(dst_grad.begin(), dst_grad.end(), g_dst + i * H * D);
      continue;
    }
    buf.resize(static_cast<size_t>(deg * H));
    row_scores<KIND, T, FD>(g, i, buf.data(), limit);
    for (int64_t k = 0; k < deg; ++k) {
      T* a = buf.data() + k * H;
      attention_from_scores(a, record, H);
      if (galpha) {
        const T* ga = galpha + g.perm[start + k] * H;
        for (int64_t h = 0; h < H; ++h) delta[h] += a[h] * ga[h];
      }
    }
    for (int64_t k = 0; k < deg; ++k) {
      const int64_t p = start + k, e = g.perm[p], j = g.col[p];
      if (p + kPrefetchDistance < limit)
        prefetch_row(g.value + g.col[p + kPrefetchDistance] * H * Cv, H * Cv * sizeof(T));
      if (g.masked(e)) continue;  // per-edge gradients stay zero
      edge_grads<T, FV>(g, j, e, buf.data() + k * H, go, delta, galpha, w.data(), ds.data());
      for (int64_t h = 0; h < H; ++h) {
        const T* goh = go + h * Cv;
        if (g_evalue) {
          T* gev = g_evalue + (e * H + h) * Cv;
          PYG_ATTN_SIMD
          for (int64_t c = 0; c < Cv; ++c) gev[c] = w[h] * goh[c];
        }
        if (KIND == DOT) {
          const T sds = g.scale * ds[h];
          const T* q = g.dst + (i * H + h) * D;
          const T* k = g.src + (j * H + h) * D;
          const T* ek = g.efeat ? g.efeat + (e * H + h) * D : nullptr;
          T* gq = dst_grad.data() + h * D;
          if (ek) {
            PYG_ATTN_SIMD
            for (int64_t d = 0; d < D; ++d) gq[d] += sds * (k[d] + ek[d]);
          } else {
            PYG_ATTN_SIMD
            for (int64_t d = 0; d < D; ++d) gq[d] += sds * k[d];
          }
          if (g_efeat) {
            T* gek = g_efeat + (e * H + h) * D;
            PYG_ATTN_SIMD
            for (int64_t d = 0; d < D; ++d) gek[d] = sds * q[d];
          }
          if (g_escore) g_escore[e * H + h] = ds[h];
        } else if (KIND == GAT) {
          const T gz = ds[h] * leaky_grad(g.gat_logit(i, j, e, h), g.slope);
          dst_grad[h] += gz;
          if (g_escore) g_escore[e * H + h] = gz;
        } else if (KIND == GATV2) {
          const T* xs = g.src + (j * H + h) * D;
          const T* xd = g.dst + (i * H + h) * D;
          const T* at = g.att + h * D;
          const T* ef = g.efeat ? g.efeat + (e * H + h) * D : nullptr;
          T* gxd = dst_grad.data() + h * D;
          T* gef = g_efeat ? g_efeat + (e * H + h) * D : nullptr;
          T* gat = g_att ? g_att + h * D : nullptr;
          const T dsh = ds[h], slope = g.slope;  // locals: g.slope could alias the stores
          if (!ef && !gef && gat) {  // the common case, without per-element branches
            PYG_ATTN_SIMD
            for (int64_t d = 0; d < D; ++d) {
              const T z = xs[d] + xd[d];
              gxd[d] += dsh * at[d] * leaky_grad(z, slope);
              gat[d] += dsh * leaky(z, slope);
            }
          } else {
            PYG_ATTN_SIMD
            for (int64_t d = 0; d < D; ++d) {
              const T z = xs[d] + xd[d] + (ef ? ef[d] : T(0));
              const T gz = dsh * at[d] * leaky_grad(z, slope);
              gxd[d] += gz;
              if (gef) gef[d] = gz;
              if (gat) gat[d] += dsh * leaky(z, slope);
            }
          }
        } else {
          if (g_escore) g_escore[e * H + h] = ds[h];
        }
      }
    }
    if (g_dst) std::copy(dst_grad.begin(), dst_grad.end(), g_dst + i * H * D);
  }
}

// Source pass over the source-sorted CSR: value and source-side gradients.
// Every edge's attention is recomputed here from its destination's statistics
// (as in the forward), so nothing of size E is stored between the passes
// (except, with `g_logit`, GAT's logit gradients: see gat_backward).
template <int KIND, typename T, int FD, int FV>
void backward_cols(const Graph<T>& g, int64_t begin, int64_t end, const int64_t* colptr,
                   const index_t* csc_row, const index_t* csc_edge, const T* row_records,
                   const T* gout, const T* galpha, T* g_src, T* g_value, T* g_logit) {
  const int64_t H = g.heads, D = FD > 0 ? FD : g.dim, Cv = FV > 0 ? FV : g.dim_v;
  // Destination-side data read per edge: a GAT score scalar or a feature row.
  const int64_t dst_row = KIND == GAT ? H : (KIND == EDGE ? 0 : H * D);
  std::vector<T> a(H), w(H), ds(H);
  // Per-source sums kept local and stored once per source (see backward_rows).
  std::vector<T> value_grad(static_cast<size_t>(H * Cv)), src_grad(static_cast<size_t>(H * D));
  const int64_t limit = colptr[end];
  for (int64_t j = begin; j < end; ++j) {
    std::fill(value_grad.begin(), value_grad.end(), T(0));
    std::fill(src_grad.begin(), src_grad.end(), T(0));
    for (int64_t q = colptr[j]; q < colptr[j + 1]; ++q) {
      const int64_t i = csc_row[q], e = csc_edge[q];
      if (q + kPrefetchDistance < limit) {
        const int64_t ahead = csc_row[q + kPrefetchDistance];
        prefetch_row(gout + ahead * H * Cv, H * Cv * sizeof(T));
        prefetch_row(row_records + ahead * 3 * H, 3 * H * sizeof(T));
        if (dst_row) prefetch_row(g.dst + ahead * dst_row, dst_row * sizeof(T));
      }
      const T* record = row_records + i * 3 * H;  // [shift, log_sum, delta] x H
      if (g.masked(e) || record[H] == kSkippedRow<T>) {
        if (g_logit) std::fill(g_logit + e * H, g_logit + (e + 1) * H, T(0));
        continue;
      }
      g.template scores<KIND, FD>(i, j, e, a.data());
      attention_from_scores(a.data(), record, H);
      const T* go = gout + i * H * Cv;
      edge_grads<T, FV>(g, j, e, a.data(), go, record + 2 * H, galpha, w.data(), ds.data());
      for (int64_t h = 0; h < H; ++h) {
        if (g_value) {
          const T* goh = go + h * Cv;
          T* gv = value_grad.data() + h * Cv;
          const T wh = w[h];
          PYG_ATTN_SIMD
          for (int64_t c = 0; c < Cv; ++c) gv[c] += wh * goh[c];
        }
        if (KIND == GAT && (g_src || g_logit)) {
          const T gz = ds[h] * leaky_grad(g.gat_logit(i, j, e, h), g.slope);
          src_grad[h] += gz;
          if (g_logit) g_logit[e * H + h] = gz;
        }
        if (!g_src) continue;
        if (KIND == DOT) {
          const T sds = g.scale * ds[h];
          const T* qh = g.dst + (i * H + h) * D;
          T* gk = src_grad.data() + h * D;
          PYG_ATTN_SIMD
          for (int64_t d = 0; d < D; ++d) gk[d] += sds * qh[d];
        } else if (KIND == GATV2) {
          const T* xs = g.src + (j * H + h) * D;
          const T* xd = g.dst + (i * H + h) * D;
          const T* at = g.att + h * D;
          const T* ef = g.efeat ? g.efeat + (e * H + h) * D : nullptr;
          T* gxs = src_grad.data() + h * D;
          const T dsh = ds[h], slope = g.slope;  // locals: g.slope could alias the stores
          PYG_ATTN_SIMD
          for (int64_t d = 0; d < D; ++d) {
            const T z = xs[d] + xd[d] + (ef ? ef[d] : T(0));
            gxs[d] += dsh * at[d] * leaky_grad(z, slope);
          }
        }
      }
    }
    if (g_value) std::copy(value_grad.begin(), value_grad.end(), g_value + j * H * Cv);
    if (g_src && KIND != EDGE) std::copy(src_grad.begin(), src_grad.end(), g_src + j * H * D);
  }
}

// GAT's destination gradient: g_dst[i, h] = sum over the edges p of row i of
// g_logit[perm[p], h], summed in the row's order (as backward_rows would), locally
// and stored once per row (see backward_rows).
template <typename T>
void gat_dst_grads(const Graph<T>& g, int64_t begin, int64_t end, const T* row_records,
                   const T* g_logit, T* g_dst) {
  const int64_t H = g.heads;
  std::vector<T> dst_grad(static_cast<size_t>(H));
  for (int64_t i = begin; i < end; ++i) {
    std::fill(dst_grad.begin(), dst_grad.end(), T(0));
    if (row_records[i * 3 * H + H] != kSkippedRow<T>) {
      for (int64_t p = g.rowptr[i]; p < g.rowptr[i + 1]; ++p) {
        const T* z = g_logit + g.perm[p] * H;
        for (int64_t h = 0; h < H; ++h) dst_grad[h] += z[h];
      }
    }
    std::copy(dst_grad.begin(), dst_grad.end(), g_dst + i * H);
  }
}

// GAT's backward without a gradient of the returned attention, in three passes
// that gather one feature row per edge instead of two: its per-row deltas need
// no edge (delta_i = <dO_i, out_i>), so the destination pass shrinks to the
// row records; the source pass computes each edge's logit gradient once and
// stores it ([E, H]: the edge-score gradient itself when that is asked for);
// the destination gradient is then a segment sum of those.
template <typename T, int FD, int FV>
void gat_backward(const Graph<T>& g, const std::vector<int64_t>& row_bounds,
                  const int64_t* colptr, const index_t* csc_row, const index_t* csc_edge,
                  const T* out, const T* stats, const T* gout, T* row_records, Grads& grads) {
  for_each_chunk(row_bounds, [&](int64_t, int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i)
      start_row_record<T, FV>(g, i, out, stats, gout, false, row_records + i * 3 * g.heads);
  });
  T* g_dst = data_or_null<T>(grads.dst);
  T* g_logit = data_or_null<T>(grads.edge_score);
  at::Tensor logit_buffer;
  if (g_dst && !g_logit) {
    logit_buffer = fresh({g.num_edges, g.heads}, grads.dst.options(), false);
    g_logit = logit_buffer.data_ptr<T>();
  }
  const auto col_bounds = balanced_chunks(colptr, g.n_src);
  for_each_chunk(col_bounds, [&](int64_t, int64_t b, int64_t e) {
    backward_cols<GAT, T, FD, FV>(g, b, e, colptr, csc_row, csc_edge, row_records, gout, nullptr,
                                  data_or_null<T>(grads.src), data_or_null<T>(grads.value), g_logit);
  });
  if (g_dst)
    for_each_chunk(row_bounds, [&](int64_t, int64_t b, int64_t e) {
      gat_dst_grads(g, b, e, row_records, g_logit, g_dst);
    });
}

template <int KIND, typename T, int FD, int FV>
void backward_impl(const Graph<T>& g, const int64_t* colptr, const index_t* csc_row,
                   const index_t* csc_edge, const T* out, const T* stats, const T* gout,
                   const T* galpha, Grads& grads) {
  const int64_t H = g.heads;
  auto opts = grads.value.defined() ? grads.value.options() : at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  at::Tensor row_records = fresh({g.n_dst, 3, H}, opts, false);
  const auto row_bounds = balanced_chunks(g.rowptr, g.n_dst);
  if constexpr (KIND == GAT) {
    if (!galpha) {
      gat_backward<T, FD, FV>(g, row_bounds, colptr, csc_row, csc_edge, out, stats, gout,
                              row_records.data_ptr<T>(), grads);
      return;
    }
  }
  const int64_t chunks = static_cast<int64_t>(row_bounds.size()) - 1;
  T* g_att_total = data_or_null<T>(grads.att);
  at::Tensor att_partial;
  if (g_att_total) att_partial = at::zeros({chunks, grads.att.numel()}, opts);
  for_each_chunk(row_bounds, [&](int64_t c, int64_t b, int64_t e) {
    backward_rows<KIND, T, FD, FV>(g, b, e, out, stats, gout, galpha, row_records.data_ptr<T>(),
                                   data_or_null<T>(grads.dst), data_or_null<T>(grads.edge_score),
                                   data_or_null<T>(grads.edge_feat), data_or_null<T>(grads.edge_value),
                                   g_att_total ? att_partial.data_ptr<T>() + c * grads.att.numel() : nullptr);
  });
  if (g_att_total) grads.att.copy_(att_partial.sum(0).view_as(grads.att));
  T* g_src = data_or_null<T>(grads.src);
  T* g_value = data_or_null<T>(grads.value);
  if (!g_src && !g_value) return;
  const auto col_bounds = balanced_chunks(colptr, g.n_src);
  for_each_chunk(col_bounds, [&](int64_t, int64_t b, int64_t e) {
    backward_cols<KIND, T, FD, FV>(g, b, e, colptr, csc_row, csc_edge, row_records.data_ptr<T>(),
                                   gout, galpha, g_src, g_value, nullptr);
  });
}

template <int V>
using Fixed = std::integral_constant<int, V>;

// Calls f(kind, FD, FV) with the per-head sizes as compile-time constants (0 =
// known only at run time) in the common float cases (GAT's per-node scores have
// FD = 1, the other kinds FD = FV): fixed sizes let the compiler unroll and
// vectorise the per-head loops, which dominate at small C.
template <int KIND, typename T, typename F>
void dispatch_fixed_dims(const F& f, int64_t fd, int64_t fv) {
  auto kind = std::integral_constant<int, KIND>();
  if constexpr (std::is_same<T, float>::value && KIND != EDGE) {
    constexpr int kFd = KIND == GAT ? 1 : 0;  // 0: FD = FV
    if (fd == (kFd ? kFd : fv)) {
      switch (fv) {
#define PYG_ATTN_FIXED_CASE(C) \
        case C: f(kind, Fixed<kFd ? kFd : C>(), Fixed<C>()); return;
        PYG_ATTN_FIXED_CASE(8)
        PYG_ATTN_FIXED_CASE(16)
        PYG_ATTN_FIXED_CASE(32)
        PYG_ATTN_FIXED_CASE(64)
#undef PYG_ATTN_FIXED_CASE
        default: break;
      }
    }
  }
  f(kind, Fixed<0>(), Fixed<0>());
}

template <typename T, typename F>
void dispatch_kind(int64_t kind, const Graph<T>& g, const F& f) {
  switch (kind) {
    case DOT: dispatch_fixed_dims<DOT, T>(f, g.dim, g.dim_v); break;
    case GAT: dispatch_fixed_dims<GAT, T>(f, g.dim, g.dim_v); break;
    case GATV2: dispatch_fixed_dims<GATV2, T>(f, g.dim, g.dim_v); break;
    case EDGE: dispatch_fixed_dims<EDGE, T>(f, g.dim, g.dim_v); break;
    default: TORCH_CHECK(false, "unknown score kind ", kind);
  }
}

// The forward on checked arguments: (out, row statistics, alpha or empty).
std::vector<at::Tensor> forward(
    int64_t kind, const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& perm,
    const at::Tensor& dst, const at::Tensor& src, const at::Tensor& value,
    const c10::optional<at::Tensor>& att, const c10::optional<at::Tensor>& edge_score,
    const c10::optional<at::Tensor>& edge_feat, const c10::optional<at::Tensor>& edge_value,
    const c10::optional<at::Tensor>& edge_mask, double scale, double slope, double p_drop,
    int64_t seed, bool need_alpha) {
  const int64_t n_dst = rowptr.size(0) - 1, H = value.size(1), Cv = value.size(2);
  at::Tensor out = fresh({n_dst, H, Cv}, value.options(), false);
  at::Tensor lse = fresh({n_dst, H, 2}, value.options(), false);
  at::Tensor alpha = fresh({need_alpha ? col.size(0) : 0, H}, value.options(), true);
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "pyg_attn_fused_forward", [&] {
    const auto g = make_graph<scalar_t>(kind, rowptr, col, perm, dst, src, value, att, edge_score,
                                        edge_feat, edge_value, edge_mask, scale, slope, p_drop, seed);
    dispatch_kind(kind, g, [&](auto k, auto fd, auto fv) {
      forward_impl<decltype(k)::value, scalar_t, decltype(fd)::value, decltype(fv)::value>(g, out.data_ptr<scalar_t>(), lse.data_ptr<scalar_t>(),
                                                 need_alpha ? alpha.data_ptr<scalar_t>() : nullptr);
    });
  });
  return {out, lse, alpha};
}

at::Tensor grad_buffer(bool needed, const at::Tensor& like, bool zero) {
  if (!needed) return at::empty({0}, like.options());
  return fresh(like.sizes(), like.options(), zero);
}

// The backward on checked arguments: the gradients (empty where not needed).
std::vector<at::Tensor> backward(
    int64_t kind, const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& perm,
    const at::Tensor& colptr, const at::Tensor& csc_row, const at::Tensor& csc_edge,
    const at::Tensor& dst, const at::Tensor& src, const at::Tensor& value,
    const c10::optional<at::Tensor>& att, const c10::optional<at::Tensor>& edge_score,
    const c10::optional<at::Tensor>& edge_feat, const c10::optional<at::Tensor>& edge_value,
    const c10::optional<at::Tensor>& edge_mask, const at::Tensor& out, const at::Tensor& lse,
    const at::Tensor& grad_out, const c10::optional<at::Tensor>& grad_alpha, double scale,
    double slope, double p_drop, int64_t seed, const std::vector<bool>& needs) {
  Grads grads;
  // Node gradients are stored whole, once per node, by the two passes: no zeroing.
  grads.dst = grad_buffer(needs[0], dst, false);
  grads.src = grad_buffer(needs[1], src, kind == EDGE);
  grads.value = grad_buffer(needs[2], value, false);
  grads.att = grad_buffer(needs[3] && att.has_value(), att.has_value() ? *att : value, true);
  // Per-edge gradients are written for every edge (masked edges get zeros).
  grads.edge_score = grad_buffer(needs[4] && edge_score.has_value(), edge_score.has_value() ? *edge_score : value, true);
  grads.edge_feat = grad_buffer(needs[5] && edge_feat.has_value(), edge_feat.has_value() ? *edge_feat : value, true);
  grads.edge_value = grad_buffer(needs[6] && edge_value.has_value(), edge_value.has_value() ? *edge_value : value, true);
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "pyg_attn_fused_backward", [&] {
    const auto g = make_graph<scalar_t>(kind, rowptr, col, perm, dst, src, value, att, edge_score,
                                        edge_feat, edge_value, edge_mask, scale, slope, p_drop, seed);
    const scalar_t* galpha = ptr_or_null<scalar_t>(grad_alpha);
    dispatch_kind(kind, g, [&](auto k, auto fd, auto fv) {
      backward_impl<decltype(k)::value, scalar_t, decltype(fd)::value, decltype(fv)::value>(
          g, colptr.data_ptr<int64_t>(), csc_row.data_ptr<index_t>(), csc_edge.data_ptr<index_t>(),
          out.data_ptr<scalar_t>(), lse.data_ptr<scalar_t>(), grad_out.data_ptr<scalar_t>(), galpha,
          grads);
    });
  });
  return {grads.dst, grads.src, grads.value, grads.att, grads.edge_score, grads.edge_feat, grads.edge_value};
}
