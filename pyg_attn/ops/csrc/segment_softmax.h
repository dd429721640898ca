// Segment softmax on the CPU (pyg_attn.ops.edge_softmax): the softmax of edge
// scores src [E, H] over the edges that share a group g = index[e] in [0, N),
//   out[e, h] = exp(src[e, h] - m[g, h]) / sum_{e' : index[e'] = g} exp(src[e', h] - m[g, h]),
// with m[g, h] the group's maximum; a group whose maximum is -inf gets weight 0
// everywhere.  The gradient is
//   grad_src[e, h] = out[e, h] (grad[e, h] - sum_{e' : index[e'] = g} out[e', h] grad[e', h]).
// No CSR is built, so a new batch costs a few O(E) passes through per-group
// scratch of size N x H, with the exponentials vectorised (exp_lanes of the
// kernels, AVX2 copy where the CPU has it).  When `index` is non-decreasing (a
// PyG batch vector, destination-sorted edges) the edges are cut into ranges at
// group boundaries and the ranges run in parallel (a group is never split, so
// results do not depend on the thread count); otherwise one thread runs them.
// Included once, by fused_attention.cpp, after the kernels.

namespace segment {

constexpr int64_t kGrain = 16384;  // edges x heads per parallel task on sorted input

// Checks the arguments and says whether `index` is non-decreasing.
bool check_arguments(const at::Tensor& src, const at::Tensor& index, int64_t num_groups) {
  TORCH_CHECK(src.device().is_cpu() && index.device().is_cpu(),
              "segment_softmax: 'src' and 'index' must be on the CPU");
  TORCH_CHECK(src.scalar_type() == at::kFloat || src.scalar_type() == at::kDouble,
              "segment_softmax: 'src' must be float32 or float64, got ", src.scalar_type());
  TORCH_CHECK(src.dim() == 2 && src.is_contiguous(),
              "segment_softmax: 'src' must be a contiguous [E, H] tensor, got shape ", src.sizes());
  TORCH_CHECK(index.scalar_type() == at::kLong && index.dim() == 1 && index.is_contiguous(),
              "segment_softmax: 'index' must be a contiguous 1-D int64 tensor");
  TORCH_CHECK(index.size(0) == src.size(0), "segment_softmax: 'index' must have ", src.size(0),
              " elements (as 'src' rows), got ", index.size(0));
  TORCH_CHECK(num_groups >= 0, "segment_softmax: 'num_groups' must be >= 0, got ", num_groups);
  const int64_t* p = index.data_ptr<int64_t>();
  const int64_t n = index.size(0);
  check_range(p, n, num_groups, "segment_softmax", "index");
  bool sorted = true;  // branch-free, so it vectorises
  for (int64_t k = 1; k < n; ++k) sorted &= p[k] >= p[k - 1];
  return sorted;
}

// Calls body(begin, end) on edge ranges that together cover [0, n) and share no
// group: in parallel, cut at group boundaries, when the index is sorted; else
// once, over everything.
template <typename Body>
void for_each_range(const int64_t* index, int64_t n, int64_t heads, bool sorted,
                    const Body& body) {
  if (!sorted) {
    body(int64_t(0), n);
    return;
  }
  const int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(heads, 1));
  at::parallel_for(0, n, grain, [&](int64_t begin, int64_t end) {
    while (begin > 0 && begin < n && index[begin] == index[begin - 1]) ++begin;
    while (end < n && index[end] == index[end - 1]) ++end;
    if (begin < end) body(begin, end);
  });
}

// y = exp(x) over n values, vectorised (see exp_lanes).
template <typename T>
void exp_all(T* x, int64_t n) { PYG_ATTN_RUN(exp_lanes, x, x, n); }

template <typename T>
void forward_range(const T* x, const int64_t* index, int64_t H, int64_t b, int64_t e, T* mx,
                   T* sum, T* out) {
  constexpr T kNegInf = -std::numeric_limits<T>::infinity();
  for (int64_t k = b; k < e; ++k)
    for (int64_t h = 0; h < H; ++h) mx[index[k] * H + h] = kNegInf, sum[index[k] * H + h] = T(0);
  for (int64_t k = b; k < e; ++k)
    for (int64_t h = 0; h < H; ++h) {
      T& m = mx[index[k] * H + h];
      m = std::max(m, x[k * H + h]);
    }
  // exp(-inf) = 0 for every score of a group whose maximum is -inf.
  for (int64_t k = b; k < e; ++k)
    for (int64_t h = 0; h < H; ++h) {
      const T m = mx[index[k] * H + h];
      out[k * H + h] = m == kNegInf ? kNegInf : x[k * H + h] - m;
    }
  exp_all(out + b * H, (e - b) * H);
  for (int64_t k = b; k < e; ++k)
    for (int64_t h = 0; h < H; ++h) sum[index[k] * H + h] += out[k * H + h];
  for (int64_t k = b; k < e; ++k)
    for (int64_t h = 0; h < H; ++h) {
      const T s = sum[index[k] * H + h];
      out[k * H + h] = s > T(0) ? out[k * H + h] / s : T(0);
    }
}

template <typename T>
void backward_range(const T* out, const T* grad, const int64_t* index, int64_t H, int64_t b,
                    int64_t e, T* dot, T* grad_src) {
  for (int64_t k = b; k < e; ++k)
    for (int64_t h = 0; h < H; ++h) dot[index[k] * H + h] = T(0);
  for (int64_t k = b; k < e; ++k)
    for (int64_t h = 0; h < H; ++h) dot[index[k] * H + h] += out[k * H + h] * grad[k * H + h];
  for (int64_t k = b; k < e; ++k)
    for (int64_t h = 0; h < H; ++h)
      grad_src[k * H + h] = out[k * H + h] * (grad[k * H + h] - dot[index[k] * H + h]);
}

at::Tensor forward(const at::Tensor& src, const at::Tensor& index, int64_t num_groups) {
  const bool sorted = check_arguments(src, index, num_groups);
  const int64_t n = src.size(0), H = src.size(1);
  at::Tensor out = at::empty_like(src);
  at::Tensor scratch = at::empty({2, num_groups * H}, src.options());
  AT_DISPATCH_FLOATING_TYPES(src.scalar_type(), "segment_softmax_forward", [&] {
    const int64_t* idx = index.data_ptr<int64_t>();
    scalar_t* mx = scratch.data_ptr<scalar_t>();
    for_each_range(idx, n, H, sorted, [&](int64_t b, int64_t e) {
      forward_range(src.data_ptr<scalar_t>(), idx, H, b, e, mx, mx + num_groups * H,
                    out.data_ptr<scalar_t>());
    });
  });
  return out;
}

at::Tensor backward(const at::Tensor& out, const at::Tensor& grad, const at::Tensor& index,
                    int64_t num_groups) {
  const bool sorted = check_arguments(out, index, num_groups);
  TORCH_CHECK(grad.scalar_type() == out.scalar_type() && grad.sizes() == out.sizes() &&
                  grad.is_contiguous(),
              "segment_softmax: 'grad' must be a contiguous tensor like 'out' (", out.sizes(), ", ",
              out.scalar_type(), "), got ", grad.sizes(), ", ", grad.scalar_type());
  const int64_t n = out.size(0), H = out.size(1);
  at::Tensor grad_src = at::empty_like(out);
  at::Tensor dot = at::empty({num_groups * H}, out.options());
  AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "segment_softmax_backward", [&] {
    const int64_t* idx = index.data_ptr<int64_t>();
    for_each_range(idx, n, H, sorted, [&](int64_t b, int64_t e) {
      backward_range(out.data_ptr<scalar_t>(), grad.data_ptr<scalar_t>(), idx, H, b, e,
                     dot.data_ptr<scalar_t>(), grad_src.data_ptr<scalar_t>());
    });
  });
  return grad_src;
}

}  // namespace segment
