// Fused edge attention on the CPU, over a destination-sorted CSR graph.
//
// For every edge j -> i (CSR position p, caller's edge id e = perm[p]) and head h
// a score s is computed by one of four kinds:
//   DOT   s = scale * <q_i, k_j + edge_feat_e> + edge_score_e
//   GAT   s = leaky_relu(src_j + dst_i + edge_score_e)           (per-node scalars)
//   GATV2 s = <att_h, leaky_relu(src_j + dst_i + edge_feat_e)>
//   EDGE  s = edge_score_e                                        (plain edge softmax)
// a_ij = softmax over the incoming edges of i, out_i = sum_j dropout(a_ij)
// (v_j + edge_value_e).  The forward takes two passes per row over a row-local
// score buffer (scores and their maximum; then exp, sum and weighted values) and
// keeps the row statistics (max_j s_ij, log sum_j exp(s_ij - max)).  Nothing of
// size E x H x C is ever allocated.  The backward reads a_ij from the forward's
// [E, H] attention when the caller kept it (the layers do in training: its exp
// is a fifth of the backward), else recomputes it from the row statistics,
// FlashAttention-style.  A destination pass (CSR) gives the
// destination-side and per-edge gradients and delta_i = sum_j a_ij dL/da_ij, and
// a source pass (CSC) the source-side and value gradients, each summed locally
// and stored once per node, without atomics.  The destination pass hands each
// edge's dropped attention and score gradient ([E, 2, H]) to the source pass;
// GAT without an attention gradient takes three passes instead, with [E, H]
// logit gradients (its destination pass needs no edge; see gat_backward).
// Work is split into a fixed number of edge-balanced node chunks, so results do
// not depend on the thread count.
#include <torch/extension.h>
#include <ATen/Parallel.h>

// The kernels (fused_attention_kernels.h) are compiled twice where the build
// does not already target AVX2 (GCC on x86): for AVX2/FMA and for
// the baseline target, and each call runs the AVX2 copy when the CPU has it (and
// PYG_ATTN_NO_AVX2 is not set), so the default build runs on any x86-64 CPU.
// `-march=native` (PYG_ATTN_NATIVE=1) compiles one copy for the building CPU.
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && !defined(__clang__) && \
    !(defined(__AVX2__) && defined(__FMA__))
#define PYG_ATTN_AVX2_COPY 1
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <numeric>
#include <type_traits>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif


namespace {

#include "score_kinds.h"  // ScoreKind (generated from pyg_attn/ops/score_kinds.py)
#include "fused_args.h"   // FusedInputs, BackwardExtra (generated from pyg_attn/ops/spec.py)

// Edge-level indices (col, perm and the CSC arrays) are int32: half the memory
// traffic and footprint of int64 (prepare() stores them so whenever the graph has
// fewer than 2^31 edges and nodes).  Row pointers stay int64.  Products of an
// index with a size are computed in int64 (every size below is int64_t).
using index_t = int32_t;

// PYG_ATTN_SIMD marks an elementwise loop whose output never aliases its inputs
// (a gradient or output row vs feature rows), so it is vectorised without
// run-time overlap checks.  PYG_ATTN_SIMD_SUM lets the compiler vectorise a short
// float sum (reassociating it in a fixed way, so results stay identical run to
// run and across thread counts).
#if defined(_OPENMP)
#define PYG_ATTN_PRAGMA(x) _Pragma(#x)
#define PYG_ATTN_SIMD_SUM(var) PYG_ATTN_PRAGMA(omp simd reduction(+ : var))
#define PYG_ATTN_SIMD PYG_ATTN_PRAGMA(omp simd)
#else
#define PYG_ATTN_SIMD_SUM(var)
#define PYG_ATTN_SIMD
#endif

}  // namespace

// PYG_ATTN_KERNELS_AVX2 marks a copy that may use AVX2/FMA intrinsics: GCC's
// target pragma enables them but does not define __AVX2__ (an #if on that
// macro would silently compile the portable code into the AVX2 copy).
#if defined(PYG_ATTN_AVX2_COPY)
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define PYG_ATTN_KERNELS_AVX2 1
namespace {
namespace avx2 {
#include "fused_attention_kernels.h"
}  // namespace avx2
}  // namespace
#undef PYG_ATTN_KERNELS_AVX2
#pragma GCC pop_options
#endif

#if defined(__AVX2__) && defined(__FMA__)  // the whole build targets AVX2 (-march=native)
#define PYG_ATTN_KERNELS_AVX2 1
#endif
namespace {
namespace portable {
#include "fused_attention_kernels.h"
}  // namespace portable
}  // namespace
#undef PYG_ATTN_KERNELS_AVX2

namespace {

// Whether to run the AVX2 copy of the kernels: the CPU has AVX2 and FMA
// and PYG_ATTN_NO_AVX2 is unset or 0 (asked once).
bool use_avx2() {
#if defined(PYG_ATTN_AVX2_COPY)
  static const bool use = [] {
    const char* off = std::getenv("PYG_ATTN_NO_AVX2");
    if (off != nullptr && *off != '\0' && std::strcmp(off, "0") != 0) return false;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return use;
#else
  return false;
#endif
}

#if defined(PYG_ATTN_AVX2_COPY)
#define PYG_ATTN_RUN(function, ...) \
  (use_avx2() ? avx2::function(__VA_ARGS__) : portable::function(__VA_ARGS__))
#else
#define PYG_ATTN_RUN(function, ...) portable::function(__VA_ARGS__)
#endif

// ------------------------------------------------------------------ input checks
// Every structural precondition of the kernels is checked here, before any
// pointer is read: shapes, dtypes, contiguity, the kind, and the graph arrays'
// lengths, pointer monotonicity and index ranges (O(N + E) integer passes, cheap
// next to the kernels).  A failed check raises RuntimeError naming the argument.

// Defined, on the CPU, of `dtype`, with `dims` dimensions (any layout).
void check_kind(const at::Tensor& t, const char* name, at::ScalarType dtype, int64_t dims) {
  TORCH_CHECK(t.defined(), "fused_attention: '", name, "' is undefined");
  TORCH_CHECK(t.device().is_cpu(), "fused_attention: '", name, "' must be on the CPU, got ",
              t.device());
  TORCH_CHECK(t.scalar_type() == dtype, "fused_attention: '", name, "' must have dtype ", dtype,
              ", got ", t.scalar_type());
  TORCH_CHECK(t.dim() == dims, "fused_attention: '", name, "' must have ", dims,
              " dimensions, got shape ", t.sizes());
}

void check_tensor(const at::Tensor& t, const char* name, at::ScalarType dtype, int64_t dims) {
  check_kind(t, name, dtype, dims);
  TORCH_CHECK(t.is_contiguous(), "fused_attention: '", name, "' must be contiguous");
}

// A node-feature tensor [N, H, D] read row by row: each row's [H, D] block
// contiguous, the rows any non-negative stride apart (views of a wider buffer).
void check_rows(const at::Tensor& t, const char* name, at::ScalarType dtype) {
  check_kind(t, name, dtype, 3);
  const bool rows = (t.size(2) <= 1 || t.stride(2) == 1) &&
                    (t.size(1) <= 1 || t.stride(1) == t.size(2)) && t.stride(0) >= 0;
  TORCH_CHECK(rows, "fused_attention: each row of '", name, "' must be contiguous, got strides ",
              t.strides(), " for shape ", t.sizes());
}

void check_shape(const at::Tensor& t, const char* name, at::IntArrayRef expected) {
  TORCH_CHECK(t.sizes() == expected, "fused_attention: '", name, "' must have shape ",
              expected, ", got ", t.sizes());
}

void check_optional(const c10::optional<at::Tensor>& t, const char* name, at::ScalarType dtype,
                    at::IntArrayRef expected) {
  if (!t.has_value() || !t->defined()) return;
  check_tensor(*t, name, dtype, static_cast<int64_t>(expected.size()));
  check_shape(*t, name, expected);
}

// A pointer array `ptr` [n + 1] (int64) of a CSR with `num_edges` entries:
// ptr[0] = 0, non-decreasing, ptr[n] = num_edges (E is rowptr[-1]).
void check_pointer(const at::Tensor& ptr, const char* name, int64_t n, int64_t num_edges) {
  check_tensor(ptr, name, at::kLong, 1);
  TORCH_CHECK(ptr.size(0) == n + 1, "fused_attention: '", name, "' must have ", n + 1,
              " elements (one more than its nodes), got ", ptr.size(0));
  const int64_t* p = ptr.data_ptr<int64_t>();
  TORCH_CHECK(p[0] == 0, "fused_attention: '", name, "' must start at 0, got ", p[0]);
  TORCH_CHECK(p[n] == num_edges, "fused_attention: '", name, "' must end at the number of edges (",
              num_edges, "), got ", p[n]);
  bool descends = false;  // serial on purpose: a parallel region per check costs more
  for (int64_t i = 0; i < n; ++i) descends |= p[i + 1] < p[i];
  TORCH_CHECK(!descends, "fused_attention: '", name, "' must be non-decreasing");
}

// Raises, naming `op` and the argument `name`, unless every entry of p[0, n) is in
// [0, bound) (bound >= 0).  One unsigned compare per entry, branch-free so it
// vectorises: negatives wrap to at least 2^(bits - 1) >= limit.
template <typename I>
void check_range(const I* p, int64_t n, int64_t bound, const char* op, const char* name) {
  using U = std::make_unsigned_t<I>;
  const U limit = static_cast<U>(std::min<uint64_t>(
      static_cast<uint64_t>(bound), static_cast<uint64_t>(std::numeric_limits<I>::max()) + 1));
  bool bad = false;
  for (int64_t k = 0; k < n; ++k) bad |= static_cast<U>(p[k]) >= limit;
  if (!bad) return;
  int64_t k = 0;
  while (p[k] >= 0 && p[k] < bound) ++k;
  TORCH_CHECK(false, op, ": '", name, "' holds ", p[k], " at position ", k, ", outside [0, ",
              bound, ")");
}

// An int32 index array [num_edges] with every entry in [0, bound).
void check_index(const at::Tensor& index, const char* name, int64_t num_edges, int64_t bound) {
  check_tensor(index, name, at::kInt, 1);
  TORCH_CHECK(index.size(0) == num_edges, "fused_attention: '", name, "' must have ", num_edges,
              " elements (rowptr[-1]), got ", index.size(0));
  check_range(index.data_ptr<index_t>(), num_edges, bound, "fused_attention", name);
}

// Sizes shared by the forward and the backward, read off checked tensors.
struct Sizes {
  int64_t n_dst, n_src, num_edges, heads, dim, dim_v;
};

// The checks of the forward's arguments (the backward's are a superset).
Sizes check_forward_inputs(const FusedInputs& a) {
  TORCH_CHECK(a.kind >= 0 && a.kind < kNumScoreKinds, "fused_attention: 'kind' must be in [0, ",
              kNumScoreKinds, "), got ", a.kind);
  TORCH_CHECK(a.dropout >= 0.0 && a.dropout <= 1.0,
              "fused_attention: 'dropout' must be in [0, 1], got ", a.dropout);
  check_tensor(a.rowptr, "rowptr", at::kLong, 1);
  TORCH_CHECK(a.rowptr.size(0) >= 1, "fused_attention: 'rowptr' must have at least one element");
  TORCH_CHECK_VALUE(a.col.scalar_type() == at::kInt && a.perm.scalar_type() == at::kInt,
                    "the fused CPU kernel needs int32 edge indices (graphs with fewer than "
                    "2^31 edges and nodes); use backend='reference' for larger graphs");
  const auto dtype = a.value.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble,
              "fused_attention: 'value' must be float32 or float64, got ", dtype);
  check_rows(a.value, "value", dtype);
  check_rows(a.src, "src", dtype);
  check_rows(a.dst, "dst", dtype);
  Sizes s;
  s.n_dst = a.rowptr.size(0) - 1;
  s.n_src = a.value.size(0);
  s.num_edges = a.rowptr.data_ptr<int64_t>()[s.n_dst];
  s.heads = a.value.size(1);
  s.dim = a.src.size(2);
  s.dim_v = a.value.size(2);
  check_shape(a.src, "src", {s.n_src, s.heads, s.dim});
  check_shape(a.dst, "dst", {s.n_dst, s.heads, s.dim});
  TORCH_CHECK(a.kind != GAT || s.dim == 1, "fused_attention: 'src' and 'dst' of kind gat must "
              "have shape [N, H, 1], got ", a.src.sizes());
  check_pointer(a.rowptr, "rowptr", s.n_dst, s.num_edges);
  check_index(a.col, "col", s.num_edges, s.n_src);
  check_index(a.perm, "perm", s.num_edges, s.num_edges);
  check_optional(a.att, "att", dtype, {s.heads, s.dim});
  check_optional(a.edge_score, "edge_score", dtype, {s.num_edges, s.heads});
  check_optional(a.edge_feat, "edge_feat", dtype, {s.num_edges, s.heads, s.dim});
  check_optional(a.edge_value, "edge_value", dtype, {s.num_edges, s.heads, s.dim_v});
  check_optional(a.edge_mask, "edge_mask", at::kBool, {s.num_edges});
  check_optional(a.seed, "seed", at::kLong, {});
  TORCH_CHECK(a.dropout == 0.0 || (a.seed.has_value() && a.seed->defined()),
              "fused_attention: 'seed' is needed for a dropout above 0");
  return s;
}

// The backward's own arguments: the CSC and the forward's results and gradients.
void check_backward_inputs(const Sizes& s, const FusedInputs& a, const BackwardExtra& b) {
  TORCH_CHECK(b.needs.size() == kNumFeatures, "fused_attention: 'needs' must have ",
              kNumFeatures, " flags, got ", b.needs.size());
  const auto dtype = a.value.scalar_type();
  check_pointer(a.colptr, "colptr", s.n_src, s.num_edges);
  check_index(a.csc_row, "csc_row", s.num_edges, s.n_dst);
  check_index(a.csc_edge, "csc_edge", s.num_edges, s.num_edges);
  check_tensor(b.out, "out", dtype, 3);
  check_shape(b.out, "out", {s.n_dst, s.heads, s.dim_v});
  check_tensor(b.lse, "lse", dtype, 3);
  check_shape(b.lse, "lse", {s.n_dst, s.heads, 2});
  check_tensor(b.grad_out, "grad_out", dtype, 3);
  check_shape(b.grad_out, "grad_out", {s.n_dst, s.heads, s.dim_v});
  check_optional(b.grad_alpha, "grad_alpha", dtype, {s.num_edges, s.heads});
  check_optional(b.alpha, "alpha", dtype, {s.num_edges, s.heads});
}

// The entry points take pyg_attn::fused_attention's schema (pyg_attn/ops/spec.py).
std::vector<at::Tensor> fused_forward(PYG_ATTN_FORWARD_PARAMS) {
  const FusedInputs inputs = PYG_ATTN_INPUTS;
  check_forward_inputs(inputs);
  return PYG_ATTN_RUN(forward, inputs, need_alpha);
}

std::vector<at::Tensor> fused_backward(PYG_ATTN_BACKWARD_PARAMS) {
  const FusedInputs inputs = PYG_ATTN_INPUTS;
  const BackwardExtra extra = PYG_ATTN_BACKWARD_EXTRA;
  check_backward_inputs(check_forward_inputs(inputs), inputs, extra);
  return PYG_ATTN_RUN(backward, inputs, extra);
}

// GAT's per-node logits (kernel_node_logits.h): x [N, H, C] (rows contiguous,
// any stride apart), the attention vectors a and b (optional) of H * C elements
// with [H, C] as their last dimensions, contiguous, all of one float dtype.
void check_node_logit_inputs(const at::Tensor& x, const at::Tensor& a,
                             const c10::optional<at::Tensor>& b) {
  const auto dtype = x.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble,
              "node_logits: 'x' must be float32 or float64, got ", dtype);
  check_rows(x, "x", dtype);
  for (const at::Tensor* att : {&a, b.has_value() && b->defined() ? &*b : nullptr}) {
    if (att == nullptr) continue;
    const char* name = att == &a ? "att_src" : "att_dst";
    TORCH_CHECK(att->dim() >= 2, "node_logits: '", name, "' must have [H, C] as its last "
                "dimensions, got shape ", att->sizes());
    check_kind(*att, name, dtype, att->dim());
    TORCH_CHECK(att->is_contiguous() && att->size(-2) == x.size(1) && att->size(-1) == x.size(2) &&
                    att->numel() == x.size(1) * x.size(2),
                "node_logits: '", name, "' must be a contiguous [H, C] = [", x.size(1), ", ",
                x.size(2), "] block, got shape ", att->sizes());
  }
}

std::vector<at::Tensor> node_logits_forward(const at::Tensor& x, const at::Tensor& att_src,
                                            const c10::optional<at::Tensor>& att_dst) {
  check_node_logit_inputs(x, att_src, att_dst);
  return PYG_ATTN_RUN(node_logits_forward, x, att_src, att_dst);
}

std::vector<at::Tensor> node_logits_backward(const at::Tensor& grad_src,
                                             const c10::optional<at::Tensor>& grad_dst,
                                             const at::Tensor& x, const at::Tensor& att_src,
                                             const c10::optional<at::Tensor>& att_dst,
                                             const std::vector<bool>& needs) {
  check_node_logit_inputs(x, att_src, att_dst);
  TORCH_CHECK(needs.size() == 3, "node_logits: 'needs' must have 3 flags, got ", needs.size());
  const bool two = att_dst.has_value() && att_dst->defined();
  TORCH_CHECK(two == (grad_dst.has_value() && grad_dst->defined()),
              "node_logits: 'grad_dst' must be given exactly when 'att_dst' is");
  for (const at::Tensor* g : {&grad_src, two ? &*grad_dst : nullptr}) {
    if (g == nullptr) continue;
    const char* name = g == &grad_src ? "grad_src" : "grad_dst";
    check_tensor(*g, name, x.scalar_type(), 2);
    check_shape(*g, name, {x.size(0), x.size(1)});
  }
  return PYG_ATTN_RUN(node_logits_backward, grad_src, grad_dst, x, att_src, att_dst, needs);
}

#include "segment_softmax.h"
#include "graph_build.h"
#include "headwise_projection.h"

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("fused_forward", &fused_forward, "fused edge attention forward (CPU)");
  m.def("fused_backward", &fused_backward, "fused edge attention backward (CPU)");
  m.def("node_logits_forward", &node_logits_forward, "GAT's per-node attention logits (CPU)");
  m.def("node_logits_backward", &node_logits_backward,
        "gradients of GAT's per-node attention logits (CPU)");
  m.def("segment_softmax_forward", &segment::forward, "segment softmax forward (CPU)");
  m.def("segment_softmax_backward", &segment::backward, "segment softmax backward (CPU)");
  m.def("build_graph", &graph::build, "CSR and CSC of an edge list by counting sorts (CPU)");
  m.def("headwise_nonzeros", &headwise::nonzeros, "CSR of a dense matrix's non-zeros (CPU)");
  m.def("headwise_forward", &headwise::forward, "per-head dropout projection (CPU)");
  m.def("headwise_weight_grad", &headwise::weight_grad,
        "weight gradient of the per-head dropout projection (CPU)");
}
