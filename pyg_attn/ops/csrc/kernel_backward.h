// The backward pass: a destination (CSR) pass and a source (CSC) pass, no atomics;
// GAT's three-pass variant.
// Included by fused_attention_kernels.h only (once per instruction set, each time
// in its own namespace; no include guard).

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
template <typename T, int FV, int HF>
inline bool start_row_record(const Graph<T>& g, int64_t i, const T* out, const T* stats,
                             const T* gout, bool has_galpha, T* record) {
  const int64_t H = HF > 0 ? HF : g.heads, Cv = FV > 0 ? FV : g.dim_v;
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
template <typename T, int FV, int HF>
inline void edge_grads(const Graph<T>& g, int64_t j, int64_t e, const T* __restrict a,
                       const T* go, const T* __restrict delta, const T* galpha,
                       T* __restrict w, T* __restrict ds) {
  const int64_t H = HF > 0 ? HF : g.heads, Cv = FV > 0 ? FV : g.dim_v;
  // <dO_i, v_j + edge_value_e> per head, into ds; computed even for dropped
  // edges: skipping them would be a mispredicted branch.
  heads_dot<FV>(go, g.value_row(j), g.evalue ? g.evalue + e * H * Cv : nullptr, H, Cv, ds);
  g.template drop_factors<HF>(e, w);  // w holds the dropout factors until its last line
  if (galpha) {
    const T* __restrict ga = galpha + e * H;
    PYG_ATTN_SIMD
    for (int64_t h = 0; h < H; ++h) {
      ds[h] = a[h] * ((w[h] * ds[h] + ga[h]) - delta[h]);
      w[h] *= a[h];
    }
  } else {
    PYG_ATTN_SIMD
    for (int64_t h = 0; h < H; ++h) {
      ds[h] = a[h] * (w[h] * ds[h] - delta[h]);
      w[h] *= a[h];
    }
  }
}

// The attention of row i's deg edges into buf [deg, H]: read from the forward's
// `saved` [E, H] (by edge id) when given, else recomputed from their scores and
// the row's record (row_attention_from_scores).
template <int KIND, typename T, int FD, int HF>
inline void row_attention(const Graph<T>& g, int64_t i, const T* saved, const T* record, T* buf,
                          int64_t limit) {
  const int64_t H = HF > 0 ? HF : g.heads, start = g.rowptr[i], deg = g.rowptr[i + 1] - start;
  if (saved) {
    for (int64_t k = 0; k < deg; ++k)
      std::copy(saved + g.perm[start + k] * H, saved + (g.perm[start + k] + 1) * H, buf + k * H);
    return;
  }
  row_scores<KIND, T, FD, HF>(g, i, buf, limit);
  row_attention_from_scores(buf, deg, record, H);
}

// Destination pass.  Per row i: its attention (row_attention), delta_i, and per
// edge the destination-side and per-edge gradients.  The row's
// softmax shift, log-sum and delta go to one record [3, H] per row, so that the
// source pass, which visits rows at random, reads them from one place.  With
// `edge_terms` ([E, 2, H] by edge id), each edge's dropped weight w and score
// gradient ds are stored there for the source pass, which then neither recomputes
// the edge's scores and attention nor its <dO_i, v_j>.
template <int KIND, typename T, int FD, int FV, int HF>
void backward_rows(const Graph<T>& g, int64_t begin, int64_t end, const T* out, const T* stats,
                   const T* gout, const T* galpha, const T* saved, T* row_records, T* g_dst,
                   T* g_escore,
                   T* g_efeat, T* g_evalue, T* g_att, T* edge_terms) {
  const int64_t H = HF > 0 ? HF : g.heads, D = FD > 0 ? FD : g.dim, Cv = FV > 0 ? FV : g.dim_v;
  Local<T, HF> w(H), ds(H), gz(H);
  std::vector<T> buf;
  // The destination's gradient is summed here and stored once per row: summing
  // into g_dst directly chains every edge on a store-to-load round trip.
  Local<T, fixed_size(HF, FD)> dst_grad(H * D);
  const int64_t limit = g.rowptr[end];
  for (int64_t i = begin; i < end; ++i) {
    zero_fill(dst_grad.data(), H * D);
    const int64_t start = g.rowptr[i], deg = g.rowptr[i + 1] - start;
    const T* go = gout + i * H * Cv;
    // The row's record for the source pass: [shift, log_sum, delta] x H.
    T* record = row_records + i * 3 * H;
    T* delta = record + 2 * H;
    if (!start_row_record<T, FV, HF>(g, i, out, stats, gout, galpha != nullptr, record)) {
      // Every gradient this row's edges carry is zero (see kSkippedRow).
      if (g_dst) std::copy(dst_grad.begin(), dst_grad.end(), g_dst + i * H * D);
      continue;
    }
    buf.resize(static_cast<size_t>(deg * H));
    row_attention<KIND, T, FD, HF>(g, i, saved, record, buf.data(), limit);
    if (galpha) {
      for (int64_t k = 0; k < deg; ++k) {
        const T* a = buf.data() + k * H;
        const T* ga = galpha + g.perm[start + k] * H;
        for (int64_t h = 0; h < H; ++h) delta[h] += a[h] * ga[h];
      }
    }
    for (int64_t k = 0; k < deg; ++k) {
      const int64_t p = start + k, e = g.perm[p], j = g.col[p];
      if (p + kPrefetchDistance < limit)
        prefetch_row(g.value_row(g.col[p + kPrefetchDistance]), H * Cv * sizeof(T));
      if (g.masked(e)) continue;  // per-edge gradients stay zero
      edge_grads<T, FV, HF>(g, j, e, buf.data() + k * H, go, delta, galpha, w.data(), ds.data());
      if (edge_terms) {
        std::copy(w.begin(), w.end(), edge_terms + e * 2 * H);
        std::copy(ds.begin(), ds.end(), edge_terms + e * 2 * H + H);
      }
      if constexpr (KIND == GAT) {
        g.template gat_logit_grads<HF>(i, j, e, ds.data(), gz.data());
        for (int64_t h = 0; h < H; ++h) dst_grad[h] += gz[h];
        if (g_escore) std::copy(gz.begin(), gz.end(), g_escore + e * H);
      }
      for (int64_t h = 0; h < H; ++h) {
        const T* goh = go + h * Cv;
        if (g_evalue) {
          T* gev = g_evalue + (e * H + h) * Cv;
          PYG_ATTN_SIMD
          for (int64_t c = 0; c < Cv; ++c) gev[c] = w[h] * goh[c];
        }
        if (KIND == DOT) {
          const T sds = g.scale * ds[h];
          const T* q = g.dst_row(i) + h * D;
          const T* k = g.src_row(j) + h * D;
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
        } else if (KIND == GATV2) {
          const T* xs = g.src_row(j) + h * D;
          const T* xd = g.dst_row(i) + h * D;
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
        } else if (KIND == EDGE) {
          if (g_escore) g_escore[e * H + h] = ds[h];
        }
      }
    }
    if (g_dst) std::copy(dst_grad.begin(), dst_grad.end(), g_dst + i * H * D);
  }
}

// Source pass over the source-sorted CSR: value and source-side gradients.
// Each edge's (w, ds) come from the destination pass's `edge_terms` when given;
// otherwise (GAT's three passes, see gat_backward) the attention of a source's
// edges is read from the forward's `saved` [E, H], or recomputed here from their
// destinations' statistics, as in the forward, with one exp over the source's
// edges (see row_exp).
template <int KIND, typename T, int FD, int FV, int HF>
void backward_cols(const Graph<T>& g, int64_t begin, int64_t end, const int64_t* colptr,
                   const index_t* csc_row, const index_t* csc_edge, const T* row_records,
                   const T* edge_terms, const T* gout, const T* galpha, const T* saved,
                   T* g_src, T* g_value, T* g_logit) {
  const int64_t H = HF > 0 ? HF : g.heads, D = FD > 0 ? FD : g.dim, Cv = FV > 0 ? FV : g.dim_v;
  // Destination-side data read per edge: a GAT score scalar or a feature row.
  const int64_t dst_row = KIND == GAT ? H : (KIND == EDGE ? 0 : H * D);
  Local<T, HF> w_local(H), ds_local(H), gz(H);
  // Without edge_terms: the attention of the source's edges [deg, H], and for
  // GAT their logits z, kept for the logit gradients.  Computed for every edge,
  // without a branch: those of masked edges and skipped rows (whose records hold
  // no statistics) are never read.
  std::vector<T> attention, logits;
  // Per-source sums kept local and stored once per source (see backward_rows).
  Local<T, fixed_size(HF, FV)> value_grad(H * Cv);
  Local<T, fixed_size(HF, FD)> src_grad(H * D);
  const int64_t limit = colptr[end];
  for (int64_t j = begin; j < end; ++j) {
    zero_fill(value_grad.data(), H * Cv);
    zero_fill(src_grad.data(), H * D);
    const int64_t first = colptr[j], deg = colptr[j + 1] - first;
    if (!edge_terms) {
      attention.resize(static_cast<size_t>(deg * H));
      if (KIND == GAT) logits.resize(static_cast<size_t>(deg * H));
      for (int64_t k = 0; k < deg; ++k) {
        const int64_t i = csc_row[first + k], e = csc_edge[first + k];
        T* a = attention.data() + k * H;
        const T* record = row_records + i * 3 * H;  // [shift, log_sum, delta] x H
        if constexpr (KIND == GAT) {
          T* z = logits.data() + k * H;
          g.template gat_logits<HF>(i, j, e, z);
          if (saved) continue;  // the attention is read from there below
          const T sl = g.slope;
          PYG_ATTN_SIMD
          for (int64_t h = 0; h < H; ++h) a[h] = (leaky(z[h], sl) - record[h]) - record[H + h];
        } else {
          g.template scores<KIND, FD, HF>(i, j, e, a);
          PYG_ATTN_SIMD
          for (int64_t h = 0; h < H; ++h) a[h] = (a[h] - record[h]) - record[H + h];
        }
      }
      if (!saved) exp_lanes(attention.data(), attention.data(), deg * H);
    }
    for (int64_t q = first; q < first + deg; ++q) {
      const int64_t i = csc_row[q], e = csc_edge[q];
      if (q + kPrefetchDistance < limit) {
        const int64_t ahead = csc_row[q + kPrefetchDistance];
        prefetch_row(gout + ahead * H * Cv, H * Cv * sizeof(T));
        prefetch_row(row_records + ahead * 3 * H, 3 * H * sizeof(T));
        if (dst_row) prefetch_row(g.dst_row(ahead), dst_row * sizeof(T));
        if (edge_terms)
          prefetch_row(edge_terms + csc_edge[q + kPrefetchDistance] * 2 * H, 2 * H * sizeof(T));
      }
      const T* record = row_records + i * 3 * H;  // [shift, log_sum, delta] x H
      if (g.masked(e) || record[H] == kSkippedRow<T>) {
        if (g_logit) std::fill(g_logit + e * H, g_logit + (e + 1) * H, T(0));
        continue;
      }
      const T* go = gout + i * H * Cv;
      const T* w = edge_terms ? edge_terms + e * 2 * H : w_local.data();
      const T* ds = edge_terms ? w + H : ds_local.data();
      if (!edge_terms)
        edge_grads<T, FV, HF>(g, j, e,
                              saved ? saved + e * H : attention.data() + (q - first) * H, go,
                              record + 2 * H, galpha, w_local.data(), ds_local.data());
      if constexpr (KIND == GAT) {
        if (g_src || g_logit) {
          if (edge_terms) {
            g.template gat_logit_grads<HF>(i, j, e, ds, gz.data());
          } else {
            const T* z = logits.data() + (q - first) * H;
            const T sl = g.slope;
            PYG_ATTN_SIMD
            for (int64_t h = 0; h < H; ++h) gz[h] = ds[h] * leaky_grad(z[h], sl);
          }
          for (int64_t h = 0; h < H; ++h) src_grad[h] += gz[h];
          if (g_logit) std::copy(gz.begin(), gz.end(), g_logit + e * H);
        }
      }
      for (int64_t h = 0; h < H; ++h) {
        if (g_value) {
          const T* goh = go + h * Cv;
          T* gv = value_grad.data() + h * Cv;
          const T wh = w[h];
          PYG_ATTN_SIMD
          for (int64_t c = 0; c < Cv; ++c) gv[c] += wh * goh[c];
        }
        if (!g_src) continue;
        if (KIND == DOT) {
          const T sds = g.scale * ds[h];
          const T* qh = g.dst_row(i) + h * D;
          T* gk = src_grad.data() + h * D;
          PYG_ATTN_SIMD
          for (int64_t d = 0; d < D; ++d) gk[d] += sds * qh[d];
        } else if (KIND == GATV2) {
          const T* xs = g.src_row(j) + h * D;
          const T* xd = g.dst_row(i) + h * D;
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
template <typename T, int HF>
void gat_dst_grads(const Graph<T>& g, int64_t begin, int64_t end, const T* row_records,
                   const T* g_logit, T* g_dst) {
  const int64_t H = HF > 0 ? HF : g.heads;
  Local<T, HF> dst_grad(H);
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
template <typename T, int FD, int FV, int HF>
void gat_backward(const Graph<T>& g, const std::vector<int64_t>& row_bounds,
                  const int64_t* colptr, const index_t* csc_row, const index_t* csc_edge,
                  const T* out, const T* stats, const T* gout, const T* saved, T* row_records,
                  Grads& grads) {
  for_each_chunk(row_bounds, [&](int64_t, int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i)
      start_row_record<T, FV, HF>(g, i, out, stats, gout, false, row_records + i * 3 * g.heads);
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
    backward_cols<GAT, T, FD, FV, HF>(g, b, e, colptr, csc_row, csc_edge, row_records, nullptr, gout,
                                  nullptr, saved,
                                  data_or_null<T>(grads.src), data_or_null<T>(grads.value), g_logit);
  });
  if (g_dst)
    for_each_chunk(row_bounds, [&](int64_t, int64_t b, int64_t e) {
      gat_dst_grads<T, HF>(g, b, e, row_records, g_logit, g_dst);
    });
}

template <int KIND, typename T, int FD, int FV, int HF>
void backward_impl(const Graph<T>& g, const int64_t* colptr, const index_t* csc_row,
                   const index_t* csc_edge, const T* out, const T* stats, const T* gout,
                   const T* galpha, const T* saved, Grads& grads) {
  const int64_t H = g.heads;
  auto opts = grads.value.defined() ? grads.value.options() : at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  at::Tensor row_records = fresh({g.n_dst, 3, H}, opts, false);
  const auto row_bounds = balanced_chunks(g.rowptr, g.n_dst);
  if constexpr (KIND == GAT) {
    if (!galpha) {
      gat_backward<T, FD, FV, HF>(g, row_bounds, colptr, csc_row, csc_edge, out, stats, gout,
                              saved, row_records.data_ptr<T>(), grads);
      return;
    }
  }
  const int64_t chunks = static_cast<int64_t>(row_bounds.size()) - 1;
  T* g_att_total = data_or_null<T>(grads.att);
  at::Tensor att_partial;
  if (g_att_total) att_partial = at::zeros({chunks, grads.att.numel()}, opts);
  T* g_src = data_or_null<T>(grads.src);
  T* g_value = data_or_null<T>(grads.value);
  const bool source_pass = g_src || g_value;
  // Written by the destination pass for every edge the source pass reads.
  at::Tensor edge_terms = source_pass ? fresh({g.num_edges, 2, H}, opts, false) : at::Tensor();
  T* terms = source_pass ? edge_terms.data_ptr<T>() : nullptr;
  for_each_chunk(row_bounds, [&](int64_t c, int64_t b, int64_t e) {
    backward_rows<KIND, T, FD, FV, HF>(g, b, e, out, stats, gout, galpha, saved,
                                   row_records.data_ptr<T>(),
                                   data_or_null<T>(grads.dst), data_or_null<T>(grads.edge_score),
                                   data_or_null<T>(grads.edge_feat), data_or_null<T>(grads.edge_value),
                                   g_att_total ? att_partial.data_ptr<T>() + c * grads.att.numel() : nullptr,
                                   terms);
  });
  if (g_att_total) grads.att.copy_(att_partial.sum(0).view_as(grads.att));
  if (!source_pass) return;
  const auto col_bounds = balanced_chunks(colptr, g.n_src);
  for_each_chunk(col_bounds, [&](int64_t, int64_t b, int64_t e) {
    backward_cols<KIND, T, FD, FV, HF>(g, b, e, colptr, csc_row, csc_edge, row_records.data_ptr<T>(),
                                   terms, gout, galpha, nullptr, g_src, g_value, nullptr);
  });
}
