// Score kind and per-head sizes as compile-time constants, and the forward()/
// backward() entry points on checked arguments.
// Included by fused_attention_kernels.h only (once per instruction set, each time
// in its own namespace; no include guard).

template <int V>
using Fixed = std::integral_constant<int, V>;

// The number of heads compiled as a constant (with fixed per-head sizes): with
// it, each edge's per-head values fit one AVX2 register instead of a loop over
// a heap buffer.  8 is GAT's usual head count (PyG's examples, the papers).
constexpr int64_t kFixedHeads = 8;

// Calls f(Fixed<C>()) for the float channel counts compiled as constants (the
// ones the AVX2 head-dot tree covers) and returns true; false for any other.
template <typename T, typename F>
bool dispatch_fixed_channels(int64_t channels, const F& f) {
  if constexpr (std::is_same<T, float>::value) {
    switch (channels) {
      case 8: f(Fixed<8>()); return true;
      case 16: f(Fixed<16>()); return true;
      case 32: f(Fixed<32>()); return true;
      case 64: f(Fixed<64>()); return true;
      default: break;
    }
  }
  return false;
}

// Calls f(kind, FD, FV, HF) with the per-head sizes and, for kFixedHeads heads
// (or a single head of any width), the head count as compile-time constants
// (0 = known only at run time) in the common float cases (GAT's per-node scores
// have FD = 1, the other kinds FD = FV): fixed sizes let the compiler unroll and
// vectorise the per-head loops, which dominate at small C.
template <int KIND, typename T, typename F>
void dispatch_fixed_dims(const F& f, int64_t fd, int64_t fv, int64_t heads) {
  auto kind = std::integral_constant<int, KIND>();
  if constexpr (std::is_same<T, float>::value && KIND != EDGE) {
    constexpr int kFd = KIND == GAT ? 1 : 0;  // 0: FD = FV
    const bool fixed = fd == (kFd ? kFd : fv) && dispatch_fixed_channels<T>(fv, [&](auto c) {
      constexpr int C = decltype(c)::value;
      if (heads == kFixedHeads)
        f(kind, Fixed<kFd ? kFd : C>(), c, Fixed<kFixedHeads>());
      else
        f(kind, Fixed<kFd ? kFd : C>(), c, Fixed<0>());
    });
    if (fixed) return;
    // One head over widths known only at run time (GAT's usual output layer: one
    // head over the classes): the per-edge loops over heads vanish.
    if (heads == 1) {
      f(kind, Fixed<0>(), Fixed<0>(), Fixed<1>());
      return;
    }
  }
  f(kind, Fixed<0>(), Fixed<0>(), Fixed<0>());
}

template <typename T, typename F>
void dispatch_kind(int64_t kind, const Graph<T>& g, const F& f) {
  switch (kind) {
    case DOT: dispatch_fixed_dims<DOT, T>(f, g.dim, g.dim_v, g.heads); break;
    case GAT: dispatch_fixed_dims<GAT, T>(f, g.dim, g.dim_v, g.heads); break;
    case GATV2: dispatch_fixed_dims<GATV2, T>(f, g.dim, g.dim_v, g.heads); break;
    case EDGE: dispatch_fixed_dims<EDGE, T>(f, g.dim, g.dim_v, g.heads); break;
    default: TORCH_CHECK(false, "unknown score kind ", kind);
  }
}

// The forward on checked arguments: (out, row statistics, alpha or empty).
std::vector<at::Tensor> forward(const FusedInputs& in, bool need_alpha) {
  const at::Tensor& value = in.value;
  const int64_t n_dst = in.rowptr.size(0) - 1, H = value.size(1), Cv = value.size(2);
  at::Tensor out = fresh({n_dst, H, Cv}, value.options(), false);
  at::Tensor lse = fresh({n_dst, H, 2}, value.options(), false);
  at::Tensor alpha = fresh({need_alpha ? in.col.size(0) : 0, H}, value.options(), false);
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "pyg_attn_fused_forward", [&] {
    const auto g = make_graph<scalar_t>(in);
    dispatch_kind(in.kind, g, [&](auto k, auto fd, auto fv, auto hf) {
      forward_impl<decltype(k)::value, scalar_t, decltype(fd)::value, decltype(fv)::value,
                   decltype(hf)::value>(g, out.data_ptr<scalar_t>(), lse.data_ptr<scalar_t>(),
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
std::vector<at::Tensor> backward(const FusedInputs& in, const BackwardExtra& b) {
  const std::vector<bool>& needs = b.needs;
  const at::Tensor& value = in.value;
  Grads grads;
  // Node gradients are stored whole, once per node, by the two passes: no zeroing.
  grads.dst = grad_buffer(needs[0], in.dst, false);
  grads.src = grad_buffer(needs[1], in.src, in.kind == EDGE);
  grads.value = grad_buffer(needs[2], value, false);
  grads.att = grad_buffer(needs[3] && in.att.has_value(), in.att.has_value() ? *in.att : value, true);
  // Per-edge gradients are written for every edge (masked edges get zeros).
  grads.edge_score = grad_buffer(needs[4] && in.edge_score.has_value(), in.edge_score.has_value() ? *in.edge_score : value, true);
  grads.edge_feat = grad_buffer(needs[5] && in.edge_feat.has_value(), in.edge_feat.has_value() ? *in.edge_feat : value, true);
  grads.edge_value = grad_buffer(needs[6] && in.edge_value.has_value(), in.edge_value.has_value() ? *in.edge_value : value, true);
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "pyg_attn_fused_backward", [&] {
    const auto g = make_graph<scalar_t>(in);
    const scalar_t* galpha = ptr_or_null<scalar_t>(b.grad_alpha);
    const scalar_t* saved = ptr_or_null<scalar_t>(b.alpha);
    dispatch_kind(in.kind, g, [&](auto k, auto fd, auto fv, auto hf) {
      backward_impl<decltype(k)::value, scalar_t, decltype(fd)::value, decltype(fv)::value,
                    decltype(hf)::value>(
          g, in.colptr.data_ptr<int64_t>(), in.csc_row.data_ptr<index_t>(), in.csc_edge.data_ptr<index_t>(),
          b.out.data_ptr<scalar_t>(), b.lse.data_ptr<scalar_t>(), b.grad_out.data_ptr<scalar_t>(), galpha,
          saved, grads);
    });
  });
  return {grads.dst, grads.src, grads.value, grads.att, grads.edge_score, grads.edge_feat, grads.edge_value};
}
