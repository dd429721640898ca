// The forward pass: per destination row, its scores, softmax statistics and the
// weighted sum of values (out, row statistics, optional alpha).
// Included by fused_attention_kernels.h only (once per instruction set, each time
// in its own namespace; no include guard).

// Row statistics as (max, log-sum); heads without any edge get (-inf, -inf).
// `shift`/`log_sum` are what to subtract from a score: 0 for such heads, so that
// their (-inf) scores still give exp(-inf) = 0 rather than NaN.
template <typename T>
inline void row_shift(const T* stats, int64_t H, T* shift, T* log_sum) {
  // Vectorised, as the callers read the results as vectors (see forward_rows).
  PYG_ATTN_SIMD
  for (int64_t h = 0; h < H; ++h) {
    const bool empty = stats[2 * h] == -std::numeric_limits<T>::infinity();
    shift[h] = empty ? T(0) : stats[2 * h];
    log_sum[h] = empty ? T(0) : stats[2 * h + 1];
  }
}

// buf [deg, H] in place: buf[k, h] = exp((buf[k, h] - shift[h]) - log_sum[h])
// (log_sum may be null: no second term), one exp over the whole block.  An exp
// over one edge's eight heads is a chain of dependent multiply-adds; called per
// edge, its latency was exposed (a tenth of a GAT forward and backward), while
// the iterations of one exp over several edges are independent.
template <typename T>
inline void row_exp(T* buf, int64_t deg, const T* shift, const T* log_sum, int64_t H) {
  for (int64_t k = 0; k < deg * H; k += H) {
    if (log_sum) {
      PYG_ATTN_SIMD
      for (int64_t h = 0; h < H; ++h) buf[k + h] = (buf[k + h] - shift[h]) - log_sum[h];
    } else {
      PYG_ATTN_SIMD
      for (int64_t h = 0; h < H; ++h) buf[k + h] -= shift[h];
    }
  }
  exp_lanes(buf, buf, deg * H);
}

// The attention of the deg edges of one row from their scores, buf [deg, H] in
// place, and the row's record, which starts with [shift, log_sum] x H (row_shift).
template <typename T>
inline void row_attention_from_scores(T* buf, int64_t deg, const T* record, int64_t H) {
  row_exp(buf, deg, record, record + H, H);
}

// Scores of every edge of row i into buf [deg, H] (-inf for masked edges).
template <int KIND, typename T, int FD, int HF>
inline void row_scores(const Graph<T>& g, int64_t i, T* buf, int64_t limit) {
  const int64_t H = HF > 0 ? HF : g.heads, end = g.rowptr[i + 1], D = FD > 0 ? FD : g.dim;
  // Rows of source features read at random (value rows are prefetched by the callers),
  // prefetched up to `limit` (the chunk's last edge), across rows: most rows are short.
  const int64_t src_row = KIND == GAT ? H : (KIND == EDGE ? 0 : H * D);
  for (int64_t p = g.rowptr[i]; p < end; ++p, buf += H) {
    if (src_row && p + kPrefetchDistance < limit)
      prefetch_row(g.src_row(g.col[p + kPrefetchDistance]), src_row * sizeof(T));
    const int64_t e = g.perm[p];
    if (g.masked(e)) {
      std::fill(buf, buf + H, -std::numeric_limits<T>::infinity());
      continue;
    }
    g.template scores<KIND, FD, HF>(i, g.col[p], e, buf);
  }
}

// Two passes per row over a row-local score buffer: scores and their maximum,
// then exp (vectorised across heads), the sum, and the weighted values.
template <int KIND, typename T, int FD, int FV, int HF>
void forward_rows(const Graph<T>& g, int64_t begin, int64_t end, T* out, T* stats, T* alpha) {
  const int64_t H = HF > 0 ? HF : g.heads, Cv = FV > 0 ? FV : g.dim_v;
  const T neg_inf = -std::numeric_limits<T>::infinity();
  // Per-head row state: score maximum, the shift subtracted (0 for an empty
  // head), the sum of exponentials, its log and inverse, and one edge's dropped
  // weights.
  Local<T, HF> m(H), shift(H), l(H), log_l(H), inv_l(H), dropped(H);
  std::vector<T> buf;
  const int64_t limit = g.rowptr[end];
  for (int64_t i = begin; i < end; ++i) {
    const int64_t start = g.rowptr[i], deg = g.rowptr[i + 1] - start;
    T* o = out + i * H * Cv;
    zero_fill(o, H * Cv);
    std::fill(m.begin(), m.end(), neg_inf);
    std::fill(l.begin(), l.end(), T(0));
    buf.resize(static_cast<size_t>(deg * H));
    row_scores<KIND, T, FD, HF>(g, i, buf.data(), limit);
    for (int64_t k = 0; k < deg * H; k += H) {
      PYG_ATTN_SIMD
      for (int64_t h = 0; h < H; ++h) m[h] = std::max(m[h], buf[k + h]);
    }
    // Vectorised: a scalar select per head was stored lane by lane, and the
    // vector load of `shift` that follows then stalled on store forwarding.
    PYG_ATTN_SIMD
    for (int64_t h = 0; h < H; ++h) shift[h] = m[h] == neg_inf ? T(0) : m[h];
    row_exp(buf.data(), deg, shift.data(), static_cast<const T*>(nullptr), H);
    for (int64_t k = 0; k < deg; ++k) {
      const T* w = buf.data() + k * H;
      const int64_t p = start + k, e = g.perm[p];
      if (p + kPrefetchDistance < limit)
        prefetch_row(g.value_row(g.col[p + kPrefetchDistance]), H * Cv * sizeof(T));
      if (g.masked(e)) continue;
      const T* v = g.value_row(g.col[p]);
      const T* ev = g.evalue ? g.evalue + e * H * Cv : nullptr;
      g.template drop_factors<HF>(e, dropped.data());
      PYG_ATTN_SIMD
      for (int64_t h = 0; h < H; ++h) {
        l[h] += w[h];
        dropped[h] *= w[h];
      }
      for (int64_t h = 0; h < H; ++h) {
        const T wd = dropped[h];
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
    log_lanes(l.data(), log_l.data(), H);
    // 1 / l per head, 0 for a head without edges (whose weights are all 0).
    PYG_ATTN_SIMD
    for (int64_t h = 0; h < H; ++h) inv_l[h] = l[h] > T(0) ? T(1) / l[h] : T(0);
    for (int64_t h = 0; h < H; ++h) {
      T* st = stats + (i * H + h) * 2;
      PYG_ATTN_SIMD
      for (int64_t c = 0; c < Cv; ++c) o[h * Cv + c] *= inv_l[h];
      st[0] = l[h] > T(0) ? m[h] : neg_inf;
      st[1] = l[h] > T(0) ? log_l[h] : neg_inf;
    }
    if (!alpha) continue;
    // Every edge belongs to one row: alpha is written whole, without zeroing.
    for (int64_t k = 0; k < deg; ++k) {
      T* a = alpha + g.perm[start + k] * H;
      const T* w = buf.data() + k * H;
      PYG_ATTN_SIMD
      for (int64_t h = 0; h < H; ++h) a[h] = w[h] * inv_l[h];
    }
  }
}

template <int KIND, typename T, int FD, int FV, int HF>
void forward_impl(const Graph<T>& g, T* out, T* stats, T* alpha) {
  const auto bounds = balanced_chunks(g.rowptr, g.n_dst);
  for_each_chunk(bounds, [&](int64_t, int64_t b, int64_t e) { forward_rows<KIND, T, FD, FV, HF>(g, b, e, out, stats, alpha); });
}
