// The CSR and CSC of a new edge list in O(E + N) (pyg_attn.ops.graph_build),
// with GAT's self-loop handling folded in.
//
// The edge list is the input's edges j -> i (src[k] = j, dst[k] = i), without its
// self-loops when `drop_loops`, followed by `num_loops` loops t -> t
// (t = 0 .. num_loops - 1); edge ids are positions in that list.  Two stable
// counting sorts give what the torch.sort path of build_graph gives, array for
// array:
//   CSR  rowptr [N_dst + 1] (int64), perm [E'] (edge id of each CSR position,
//        stable by destination), col [E'] (its source);
//   CSC  colptr [N_src + 1] (int64); csc_edge [E'] (edge id of each slot) and
//        csc_row [E'] (its destination): the slots are the edges in their own
//        order when the sources are non-decreasing, else the CSR positions
//        stably sorted by source;
//   kept [K] (int64): input position of each kept edge (empty unless drop_loops).
// Edge-level arrays are int32 (the caller uses this only when the graph has
// fewer than 2^31 edges and nodes).  An index outside [0, num_src) x [0, num_dst)
// returns no arrays at all (an empty list), so the caller can raise its own
// error naming the bad index; no memory is written out of bounds.
// Included once, by fused_attention.cpp.

namespace graph {

template <typename I>
std::vector<at::Tensor> build_typed(const at::Tensor& src_t, const at::Tensor& dst_t,
                                    int64_t num_src, int64_t num_dst, bool drop_loops,
                                    int64_t num_loops) {
  const int64_t n_in = src_t.size(0);
  const I* src = src_t.data_ptr<I>();
  const I* dst = dst_t.data_ptr<I>();
  const int64_t s_src = src_t.stride(0), s_dst = dst_t.stride(0);
  const auto long_opts = at::TensorOptions().dtype(at::kLong);
  const auto int_opts = at::TensorOptions().dtype(at::kInt);

  // Pass 1: range check, kept count, degrees, whether the sources are grouped.
  at::Tensor rowptr = at::zeros({num_dst + 1}, long_opts);
  at::Tensor colptr = at::zeros({num_src + 1}, long_opts);
  int64_t* in_deg = rowptr.data_ptr<int64_t>() + 1;  // counts first, scanned below
  int64_t* out_deg = colptr.data_ptr<int64_t>() + 1;
  int64_t kept_count = 0;
  bool in_range = true, src_sorted = true;
  int64_t last_src = std::numeric_limits<int64_t>::min();
  for (int64_t k = 0; k < n_in; ++k) {
    const int64_t j = static_cast<int64_t>(src[k * s_src]);
    const int64_t i = static_cast<int64_t>(dst[k * s_dst]);
    if (j < 0 || j >= num_src || i < 0 || i >= num_dst) {
      in_range = false;
      break;
    }
    if (drop_loops && i == j) continue;
    ++in_deg[i];
    ++out_deg[j];
    src_sorted &= j >= last_src;
    last_src = j;
    ++kept_count;
  }
  if (!in_range) return {};
  for (int64_t t = 0; t < num_loops; ++t) {
    ++in_deg[t];
    ++out_deg[t];
    src_sorted &= t >= last_src;
    last_src = t;
  }
  const int64_t num_edges = kept_count + num_loops;

  // Row and column pointers: ptr = [0, counts...], so its running sum in place
  // is ptr[k] = sum of the counts before k.
  std::partial_sum(rowptr.data_ptr<int64_t>(), rowptr.data_ptr<int64_t>() + num_dst + 1,
                   rowptr.data_ptr<int64_t>());
  std::partial_sum(colptr.data_ptr<int64_t>(), colptr.data_ptr<int64_t>() + num_src + 1,
                   colptr.data_ptr<int64_t>());

  // Pass 2: every edge to its CSR position (stable: edge id order within a row).
  at::Tensor perm = at::empty({num_edges}, int_opts);
  at::Tensor col = at::empty({num_edges}, int_opts);
  at::Tensor kept = at::empty({drop_loops ? kept_count : 0}, long_opts);
  at::Tensor edge_dst = at::empty({num_edges}, int_opts);  // destination by edge id
  int32_t* perm_p = perm.data_ptr<int32_t>();
  int32_t* col_p = col.data_ptr<int32_t>();
  int32_t* edge_dst_p = edge_dst.data_ptr<int32_t>();
  int64_t* kept_p = kept.data_ptr<int64_t>();
  std::vector<int64_t> next(rowptr.data_ptr<int64_t>(), rowptr.data_ptr<int64_t>() + num_dst);
  auto place = [&](int64_t e, int64_t j, int64_t i) {
    const int64_t p = next[i]++;
    perm_p[p] = static_cast<int32_t>(e);
    col_p[p] = static_cast<int32_t>(j);
    edge_dst_p[e] = static_cast<int32_t>(i);
  };
  int64_t e = 0;
  for (int64_t k = 0; k < n_in; ++k) {
    const int64_t j = static_cast<int64_t>(src[k * s_src]);
    const int64_t i = static_cast<int64_t>(dst[k * s_dst]);
    if (drop_loops && i == j) continue;
    if (drop_loops) kept_p[e] = k;
    place(e++, j, i);
  }
  for (int64_t t = 0; t < num_loops; ++t) place(e++, t, t);

  // Pass 3: the CSC.
  at::Tensor csc_edge = at::empty({num_edges}, int_opts);
  at::Tensor csc_row;
  int32_t* csc_edge_p = csc_edge.data_ptr<int32_t>();
  if (src_sorted) {  // slot k is edge k
    for (int64_t k = 0; k < num_edges; ++k) csc_edge_p[k] = static_cast<int32_t>(k);
    csc_row = edge_dst;
  } else {  // CSR positions, stably by source
    csc_row = at::empty({num_edges}, int_opts);
    int32_t* csc_row_p = csc_row.data_ptr<int32_t>();
    next.assign(colptr.data_ptr<int64_t>(), colptr.data_ptr<int64_t>() + num_src);
    for (int64_t p = 0; p < num_edges; ++p) {
      const int64_t q = next[col_p[p]]++;
      csc_edge_p[q] = perm_p[p];
      csc_row_p[q] = edge_dst_p[perm_p[p]];
    }
  }
  return {rowptr, col, perm, colptr, csc_row, csc_edge, kept};
}

std::vector<at::Tensor> build(const at::Tensor& src, const at::Tensor& dst, int64_t num_src,
                              int64_t num_dst, bool drop_loops, int64_t num_loops) {
  TORCH_CHECK(src.device().is_cpu() && dst.device().is_cpu(),
              "build_graph: 'src' and 'dst' must be on the CPU");
  TORCH_CHECK(src.dim() == 1 && dst.dim() == 1 && src.size(0) == dst.size(0),
              "build_graph: 'src' and 'dst' must be 1-D and of one length");
  TORCH_CHECK(src.scalar_type() == dst.scalar_type() &&
                  (src.scalar_type() == at::kLong || src.scalar_type() == at::kInt),
              "build_graph: 'src' and 'dst' must both be int32 or both int64");
  TORCH_CHECK(num_src >= 0 && num_dst >= 0 && num_loops >= 0 &&
                  num_loops <= std::min(num_src, num_dst),
              "build_graph: need 0 <= num_loops <= min(num_src, num_dst)");
  const int64_t bound = std::numeric_limits<int32_t>::max();
  TORCH_CHECK(src.size(0) + num_loops <= bound && num_src <= bound && num_dst <= bound,
              "build_graph: the graph needs int64 edge indices");
  return src.scalar_type() == at::kLong
             ? build_typed<int64_t>(src, dst, num_src, num_dst, drop_loops, num_loops)
             : build_typed<int32_t>(src, dst, num_src, num_dst, drop_loops, num_loops);
}

}  // namespace graph
