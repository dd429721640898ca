// GAT's per-node attention logits and their gradients, for node features
// x [N, H, C] (each row's [H, C] block contiguous, rows `rs` elements apart) and
// one or two attention vectors a, b [H, C]:
//   la[n, h] = <x[n, h, :], a[h, :]>          (lb likewise with b)
//   dL/dx[n, h, :] = ga[n, h] a[h, :] + gb[n, h] b[h, :]
//   dL/da[h, :] = sum_n ga[n, h] x[n, h, :]   (dL/db likewise with gb)
// No [N, H, C] product is formed.  The attention-vector gradients are summed in
// kLogitChunks fixed node ranges and then in range order, so they do not depend
// on the thread count.
// Included by fused_attention_kernels.h only (once per instruction set, each time
// in its own namespace; no include guard).

constexpr int64_t kLogitChunks = 64;
constexpr int64_t kLogitGrain = 256;  // nodes per parallel task of the node passes

// la (and lb when b is not null) for every node.
template <int C, typename T>
void node_logits_impl(const T* x, int64_t rs, int64_t n, int64_t heads, int64_t channels,
                      const T* a, const T* b, T* la, T* lb) {
  at::parallel_for(0, n, kLogitGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      heads_dot<C, T>(a, x + i * rs, nullptr, heads, channels, la + i * heads);
      if (b) heads_dot<C, T>(b, x + i * rs, nullptr, heads, channels, lb + i * heads);
    }
  });
}

// dL/dx [N, H, C] (contiguous) of the logits for their gradients ga (and gb when
// b is not null).
template <int C, typename T>
void node_logits_input_grad(int64_t n, int64_t heads, int64_t channels, const T* a, const T* b,
                            const T* ga, const T* gb, T* gx) {
  const int64_t D = C > 0 ? C : channels, row = heads * D;
  at::parallel_for(0, n, kLogitGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      T* out = gx + i * row;
      for (int64_t h = 0; h < heads; ++h) {
        const T sa = ga[i * heads + h];
        const T* ah = a + h * D;
        T* oh = out + h * D;
        if (b) {
          const T sb = gb[i * heads + h];
          const T* bh = b + h * D;
          PYG_ATTN_SIMD
          for (int64_t d = 0; d < D; ++d) oh[d] = sa * ah[d] + sb * bh[d];
        } else {
          PYG_ATTN_SIMD
          for (int64_t d = 0; d < D; ++d) oh[d] = sa * ah[d];
        }
      }
    }
  });
}

// dL/da [H, C] (and dL/db when gb is not null) of the logits.
template <int C, typename T>
void node_logits_att_grad(const T* x, int64_t rs, int64_t n, int64_t heads, int64_t channels,
                          const T* ga, const T* gb, T* gatt_a, T* gatt_b) {
  const int64_t D = C > 0 ? C : channels, row = heads * D;
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(n, kLogitChunks));
  const int64_t sums = gb ? 2 : 1;
  std::vector<T> partial(static_cast<size_t>(chunks * sums * row), T(0));
  at::parallel_for(0, chunks, 1, [&](int64_t first, int64_t last) {
    for (int64_t c = first; c < last; ++c) {
      T* pa = partial.data() + c * sums * row;
      T* pb = pa + row;
      for (int64_t i = n * c / chunks, end = n * (c + 1) / chunks; i < end; ++i) {
        const T* xi = x + i * rs;
        for (int64_t h = 0; h < heads; ++h) {
          const T sa = ga[i * heads + h];
          const T* xh = xi + h * D;
          T* ph = pa + h * D;
          PYG_ATTN_SIMD
          for (int64_t d = 0; d < D; ++d) ph[d] += sa * xh[d];
          if (!gb) continue;
          const T sb = gb[i * heads + h];
          T* qh = pb + h * D;
          PYG_ATTN_SIMD
          for (int64_t d = 0; d < D; ++d) qh[d] += sb * xh[d];
        }
      }
    }
  });
  std::fill(gatt_a, gatt_a + row, T(0));
  if (gb) std::fill(gatt_b, gatt_b + row, T(0));
  for (int64_t c = 0; c < chunks; ++c) {
    const T* pa = partial.data() + c * sums * row;
    for (int64_t k = 0; k < row; ++k) gatt_a[k] += pa[k];
    if (gb)
      for (int64_t k = 0; k < row; ++k) gatt_b[k] += pa[row + k];
  }
}

// The logits of checked arguments: (la [N, H], lb [N, H] or empty).
std::vector<at::Tensor> node_logits_forward(const at::Tensor& x, const at::Tensor& a,
                                            const c10::optional<at::Tensor>& b) {
  const int64_t n = x.size(0), heads = x.size(1), channels = x.size(2);
  const bool two = b.has_value() && b->defined();
  at::Tensor la = at::empty({n, heads}, x.options());
  at::Tensor lb = at::empty({two ? n : 0, heads}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "pyg_attn_node_logits", [&] {
    const auto run = [&](auto c) {
      node_logits_impl<decltype(c)::value, scalar_t>(
          x.data_ptr<scalar_t>(), x.stride(0), n, heads, channels, a.data_ptr<scalar_t>(),
          two ? b->data_ptr<scalar_t>() : nullptr, la.data_ptr<scalar_t>(),
          two ? lb.data_ptr<scalar_t>() : nullptr);
    };
    if (!dispatch_fixed_channels<scalar_t>(channels, run)) run(Fixed<0>());
  });
  return {la, lb};
}

// The gradients of checked arguments, (dL/dx, dL/da, dL/db), each empty where
// its flag in `needs` = [x, a, b] is false.
std::vector<at::Tensor> node_logits_backward(const at::Tensor& ga,
                                             const c10::optional<at::Tensor>& gb,
                                             const at::Tensor& x, const at::Tensor& a,
                                             const c10::optional<at::Tensor>& b,
                                             const std::vector<bool>& needs) {
  const int64_t n = x.size(0), heads = x.size(1), channels = x.size(2);
  const bool two = b.has_value() && b->defined();
  const auto opts = x.options();
  at::Tensor gx = at::empty({needs[0] ? n : 0, needs[0] ? heads : 0, needs[0] ? channels : 0}, opts);
  at::Tensor gatt_a = needs[1] ? at::empty(a.sizes(), opts) : at::empty({0}, opts);
  at::Tensor gatt_b = (two && needs[2]) ? at::empty(b->sizes(), opts) : at::empty({0}, opts);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "pyg_attn_node_logits_backward", [&] {
    const scalar_t* pa = a.data_ptr<scalar_t>();
    const scalar_t* pb = two ? b->data_ptr<scalar_t>() : nullptr;
    const scalar_t* pga = ga.data_ptr<scalar_t>();
    const scalar_t* pgb = two ? gb->data_ptr<scalar_t>() : nullptr;
    const auto run = [&](auto c) {
      constexpr int C = decltype(c)::value;
      if (needs[0])
        node_logits_input_grad<C, scalar_t>(n, heads, channels, pa, pb, pga, pgb,
                                            gx.data_ptr<scalar_t>());
      if (needs[1] || (two && needs[2])) {
        // Both sums share one pass over x; an unneeded one goes to scratch.
        std::vector<scalar_t> scratch(static_cast<size_t>(heads * channels));
        scalar_t* out_a = needs[1] ? gatt_a.data_ptr<scalar_t>() : scratch.data();
        scalar_t* out_b = !two ? nullptr : (needs[2] ? gatt_b.data_ptr<scalar_t>() : scratch.data());
        node_logits_att_grad<C, scalar_t>(x.data_ptr<scalar_t>(), x.stride(0), n, heads, channels,
                                          pga, pgb, out_a, out_b);
      }
    };
    if (!dispatch_fixed_channels<scalar_t>(channels, run)) run(Fixed<0>());
  });
  return {gx, gatt_a, gatt_b};
}
