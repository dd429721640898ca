// The checked arguments of one fused call as raw pointers (Graph), its scores, and
// the split of rows into balanced parallel chunks.
// Included by fused_attention_kernels.h only (once per instruction set, each time
// in its own namespace; no include guard).

template <typename T>
struct Graph {
  int64_t n_dst, n_src, num_edges, heads, dim, dim_v;
  const int64_t* rowptr;
  const index_t* col;
  const index_t* perm;
  const T* dst;      // [n_dst, H, dim], rows dst_rs apart
  const T* src;      // [n_src, H, dim], rows src_rs apart
  const T* value;    // [n_src, H, dim_v], rows value_rs apart
  // Row strides (elements) of the node features: each row's [H, dim] block is
  // contiguous, the rows may be views of a wider buffer (GATConv's joint product).
  int64_t dst_rs, src_rs, value_rs;
  const T* att;      // [H, dim] or null
  const T* escore;   // [E, H] or null (caller's edge order)
  const T* efeat;    // [E, H, dim] or null
  const T* evalue;   // [E, H, dim_v] or null
  const bool* emask; // [E] or null
  T scale, slope;
  double p_drop;
  T keep_scale;
  uint32_t keep;  // keep_threshold(p_drop)
  uint32_t seed;

  // Dropout factors of edge e's heads into f[0, H): 1, 1 / (1 - p) or 0.  No
  // branch on the coin flips (a branch per head mispredicted half the time: two
  // thirds of GAT's forward with dropout); with AVX2, eight heads per vector.
  template <int HF = 0>
  inline void drop_factors(int64_t e, T* __restrict f) const {
    const int64_t heads = HF > 0 ? HF : this->heads;
    if (p_drop <= 0.0) {
      std::fill(f, f + heads, T(1));
      return;
    }
    const int64_t base = e * heads;
    const uint32_t threshold = keep;
    const T kept = keep_scale;
    int64_t h = 0;
#if defined(PYG_ATTN_KERNELS_AVX2)
    if constexpr (std::is_same_v<T, float>) {
      // Eight counters per vector while they share their high word.
      for (; h + 8 <= heads && ((base + h) & 0xffffffff) <= 0xfffffff8; h += 8)
        _mm256_storeu_ps(f + h, _mm256_and_ps(_mm256_castsi256_ps(keep_lanes(seed, base + h, threshold)),
                                              _mm256_set1_ps(kept)));
    }
#endif
    for (; h < heads; ++h) f[h] = kept * static_cast<T>(dropout_bits(seed, base + h) >= threshold);
  }

  // GAT's scores before the leaky ReLU, z[h] = src_j + dst_i (+ edge_score_e), all heads.
  template <int HF = 0>
  inline void gat_logits(int64_t i, int64_t j, int64_t e, T* __restrict z) const {
    const int64_t heads = HF > 0 ? HF : this->heads;
    const T* __restrict sj = src_row(j);
    const T* __restrict di = dst_row(i);
    if (escore) {
      const T* __restrict es = escore + e * heads;
      PYG_ATTN_SIMD
      for (int64_t h = 0; h < heads; ++h) z[h] = sj[h] + di[h] + es[h];
    } else {
      PYG_ATTN_SIMD
      for (int64_t h = 0; h < heads; ++h) z[h] = sj[h] + di[h];
    }
  }

  // GAT's logit gradients gz[h] = ds[h] * leaky'(z[h]) of edge j -> i.
  template <int HF = 0>
  inline void gat_logit_grads(int64_t i, int64_t j, int64_t e, const T* __restrict ds,
                              T* __restrict gz) const {
    const int64_t heads = HF > 0 ? HF : this->heads;
    gat_logits<HF>(i, j, e, gz);
    const T sl = slope;
    PYG_ATTN_SIMD
    for (int64_t h = 0; h < heads; ++h) gz[h] = ds[h] * leaky_grad(gz[h], sl);
  }

  template <int KIND, int FD>
  inline T score(int64_t i, int64_t j, int64_t e, int64_t h) const {
    const int64_t dim = FD > 0 ? FD : this->dim;
    static_assert(KIND != DOT && KIND != GAT, "dot and gat scores come from scores()");
    if (KIND == GATV2) {
      const T* xs = src_row(j) + h * dim;
      const T* xd = dst_row(i) + h * dim;
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
  template <int KIND, int FD, int HF = 0>
  inline void scores(int64_t i, int64_t j, int64_t e, T* s) const {
    const int64_t heads = HF > 0 ? HF : this->heads;
    if constexpr (KIND == DOT) {
      const int64_t row = heads * (FD > 0 ? FD : dim);
      heads_dot<FD>(dst_row(i), src_row(j), efeat ? efeat + e * row : nullptr, heads, dim, s);
      for (int64_t h = 0; h < heads; ++h) s[h] *= scale;
      if (escore)
        for (int64_t h = 0; h < heads; ++h) s[h] += escore[e * heads + h];
    } else if constexpr (KIND == GAT) {
      gat_logits<HF>(i, j, e, s);
      const T sl = slope;
      PYG_ATTN_SIMD
      for (int64_t h = 0; h < heads; ++h) s[h] = leaky(s[h], sl);
    } else {
      int64_t h = 0;
#if defined(PYG_ATTN_KERNELS_AVX2)
      if constexpr (KIND == GATV2 && std::is_same_v<T, float> && FD > 0 && FD % 8 == 0)
        h = heads_gatv2_avx2<FD>(src_row(j), dst_row(i), efeat ? efeat + e * heads * FD : nullptr,
                                 att, slope, heads, s);
#endif
      for (; h < heads; ++h) s[h] = score<KIND, FD>(i, j, e, h);
    }
  }

  inline bool masked(int64_t e) const { return emask && !emask[e]; }

  inline const T* dst_row(int64_t i) const { return dst + i * dst_rs; }
  inline const T* src_row(int64_t j) const { return src + j * src_rs; }
  inline const T* value_row(int64_t j) const { return value + j * value_rs; }
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

// The raw pointers and scalars of checked inputs (the seed is read here, once).
template <typename T>
Graph<T> make_graph(const FusedInputs& in) {
  Graph<T> g;
  g.n_dst = in.rowptr.size(0) - 1;
  g.n_src = in.src.size(0);
  g.num_edges = in.col.size(0);
  g.heads = in.value.size(1);
  g.dim = in.dst.size(2);
  g.dim_v = in.value.size(2);
  g.rowptr = in.rowptr.data_ptr<int64_t>();
  g.col = in.col.data_ptr<index_t>();
  g.perm = in.perm.data_ptr<index_t>();
  g.dst = in.dst.data_ptr<T>();
  g.src = in.src.data_ptr<T>();
  g.value = in.value.data_ptr<T>();
  g.dst_rs = in.dst.stride(0);
  g.src_rs = in.src.stride(0);
  g.value_rs = in.value.stride(0);
  g.att = ptr_or_null<T>(in.att);
  g.escore = ptr_or_null<T>(in.edge_score);
  g.efeat = ptr_or_null<T>(in.edge_feat);
  g.evalue = ptr_or_null<T>(in.edge_value);
  g.emask = ptr_or_null<bool>(in.edge_mask);
  g.scale = static_cast<T>(in.scale);
  g.slope = static_cast<T>(in.negative_slope);
  g.p_drop = in.dropout;
  g.keep_scale = in.dropout < 1.0 ? static_cast<T>(1.0 / (1.0 - in.dropout)) : T(0);
  g.keep = keep_threshold(in.dropout);
  const int64_t* seed = ptr_or_null<int64_t>(in.seed);
  g.seed = seed ? static_cast<uint32_t>(*seed) : 0u;
  TORCH_CHECK(in.kind != GATV2 || g.att != nullptr, "fused_attention: kind gatv2 needs 'att'");
  TORCH_CHECK(in.kind != EDGE || g.escore != nullptr || g.num_edges == 0,
              "fused_attention: kind edge needs 'edge_score'");
  return g;
}
