// GAT's per-head input dropout on sparse features (pyg_attn.nn.conv.head_dropout)
// without an [nnz, H, C] buffer.  With the non-zeros of x [N, F] in CSR form
// (rowptr [N + 1], col [nnz], val [nnz], row-major as x.nonzero() lists them), a
// keep mask [nnz, H] (bool: non-zero p kept by head k) and the weight transposed
// to wt [F, H, C]:
//   out[n, k, :]  = scale * sum_{p in row n, keep[p, k]} val[p] * wt[col[p], k, :]
//   gwt[f, k, :]  = scale * sum_{p : col[p] = f, keep[p, k]} val[p] * grad[row(p), k, :]
// Both are O(nnz * H * C); nothing of that size is stored.  Rows are summed in
// CSR order, as the torch fallback's index_add_ sums them.
// Included once, by fused_attention.cpp.

namespace headwise {

// A non-zero's factor in one head, (value * keep) * scale as the fallback forms it:
// a dropped entry contributes 0 * w (NaN for an infinite feature, as dropout of a
// dense input gives), not nothing.
template <typename T>
inline T kept_value(T value, bool keep, T scale) {
  return (value * static_cast<T>(keep)) * scale;
}

// acc[k, :] += kept_value(value, keep[k], scale) * row[k, :] for the H heads of one
// non-zero (acc and row [H, C], never the same memory).
template <typename T>
inline void add_kept_heads(T* acc, const T* row, T value, const bool* keep, T scale,
                           int64_t heads, int64_t channels) {
  for (int64_t k = 0; k < heads; ++k) {
    const T v = kept_value(value, keep[k], scale);
    T* a = acc + k * channels;
    const T* b = row + k * channels;
    PYG_ATTN_SIMD
    for (int64_t c = 0; c < channels; ++c) a[c] += v * b[c];
  }
}

// Rows per block of nonzeros(): each block lists its non-zeros in one pass into
// its own buffers, which are then copied to their place in the CSR arrays.
constexpr int64_t kNonzeroBlockRows = 128;
// Columns tested at once (bit j of nonzero_mask: entry j is non-zero).
constexpr int64_t kMaskColumns = 16;

// Bit j set where run[j] != 0 (NaN included), j < kMaskColumns.  A bag-of-words
// row is mostly zeros: four vector compares pass over sixteen of them.
template <typename T>
inline uint32_t nonzero_mask(const T* run) {
  uint32_t mask = 0;
  for (int64_t j = 0; j < kMaskColumns; ++j) mask |= static_cast<uint32_t>(run[j] != T(0)) << j;
  return mask;
}

#if defined(__SSE2__)
template <>
inline uint32_t nonzero_mask<float>(const float* run) {
  const __m128 zero = _mm_setzero_ps();
  uint32_t mask = 0;
  for (int q = 0; q < 4; ++q)  // cmpneq is unordered: NaN != 0
    mask |= static_cast<uint32_t>(_mm_movemask_ps(_mm_cmpneq_ps(_mm_loadu_ps(run + 4 * q), zero)))
            << (4 * q);
  return mask;
}
#endif

// Appends c and row[c] for the non-zero entries of row [0, f); returns how many.
template <typename T>
int64_t append_nonzeros(const T* row, int64_t f, std::vector<int64_t>& cols,
                        std::vector<T>& vals) {
  const size_t before = cols.size();
  int64_t c = 0;
  for (; c + kMaskColumns <= f; c += kMaskColumns) {
    for (uint32_t mask = nonzero_mask(row + c); mask != 0; mask &= mask - 1) {
      const int64_t j = c + __builtin_ctz(mask);
      cols.push_back(j);
      vals.push_back(row[j]);
    }
  }
  for (; c < f; ++c) {
    if (row[c] != T(0)) {
      cols.push_back(c);
      vals.push_back(row[c]);
    }
  }
  return static_cast<int64_t>(cols.size() - before);
}

// (rowptr [N + 1] int64, col [nnz] int64, val [nnz]) of the non-zeros of x
// [N, F] (rows at any stride, columns contiguous); NaN counts as non-zero.  x is
// read once: each block of rows lists its non-zeros in its own buffers (O(nnz)
// extra memory), which are then copied into place.
std::vector<at::Tensor> nonzeros(const at::Tensor& x) {
  TORCH_CHECK(x.device().is_cpu() && x.dim() == 2 && x.is_floating_point(),
              "headwise_nonzeros: 'x' must be a 2-D floating CPU tensor, got ", x.sizes(), " ",
              x.scalar_type());
  TORCH_CHECK(x.size(1) <= 1 || x.stride(1) == 1,
              "headwise_nonzeros: 'x' must have contiguous columns");
  const int64_t n = x.size(0), f = x.size(1), row_stride = x.stride(0);
  const int64_t blocks = (n + kNonzeroBlockRows - 1) / kNonzeroBlockRows;
  at::Tensor rowptr = at::empty({n + 1}, at::TensorOptions().dtype(at::kLong));
  int64_t* ptr = rowptr.data_ptr<int64_t>();
  ptr[0] = 0;
  at::Tensor col, val;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "headwise_nonzeros", [&] {
    const scalar_t* data = x.data_ptr<scalar_t>();
    std::vector<std::vector<int64_t>> block_cols(blocks);
    std::vector<std::vector<scalar_t>> block_vals(blocks);
    at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        const int64_t last = std::min(n, (b + 1) * kNonzeroBlockRows);
        for (int64_t r = b * kNonzeroBlockRows; r < last; ++r)
          ptr[r + 1] = append_nonzeros(data + r * row_stride, f, block_cols[b], block_vals[b]);
      }
    });
    std::partial_sum(ptr, ptr + n + 1, ptr);  // counts -> row pointers, in place
    col = at::empty({ptr[n]}, at::TensorOptions().dtype(at::kLong));
    val = at::empty({ptr[n]}, x.options());
    int64_t* cols = col.data_ptr<int64_t>();
    scalar_t* vals = val.data_ptr<scalar_t>();
    at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        const int64_t first = ptr[b * kNonzeroBlockRows];
        std::copy(block_cols[b].begin(), block_cols[b].end(), cols + first);
        std::copy(block_vals[b].begin(), block_vals[b].end(), vals + first);
      }
    });
  });
  return {rowptr, col, val};
}

// The non-zeros and mask of forward/weight_grad: CSR row pointers [N + 1], column
// indices and values [nnz], keep [nnz, H].
template <typename T>
struct Nonzeros {
  const int64_t* ptr;
  const int64_t* cols;
  const T* vals;
  const bool* kept;
};

// The CSR and mask arguments, checked (rowptr [N + 1] monotone 0 .. nnz, col [nnz]
// in [0, F), val [nnz] of dtype T, keep [nnz, H]), as pointers.
template <typename T>
Nonzeros<T> checked_nonzeros(const at::Tensor& rowptr, const at::Tensor& col,
                             const at::Tensor& val, const at::Tensor& keep, int64_t num_rows,
                             int64_t features, int64_t heads) {
  check_tensor(col, "col", at::kLong, 1);
  check_tensor(val, "val", c10::CppTypeToScalarType<T>::value, 1);
  check_tensor(keep, "keep", at::kBool, 2);
  const int64_t nnz = col.size(0);
  check_pointer(rowptr, "rowptr", num_rows, nnz);
  check_shape(val, "val", {nnz});
  check_shape(keep, "keep", {nnz, heads});
  const int64_t* c = col.data_ptr<int64_t>();
  bool in_range = true;
  for (int64_t p = 0; p < nnz; ++p) in_range &= c[p] >= 0 && c[p] < features;
  TORCH_CHECK(in_range, "headwise: 'col' must hold indices in [0, ", features, ")");
  return {rowptr.data_ptr<int64_t>(), c, val.data_ptr<T>(), keep.data_ptr<bool>()};
}

at::Tensor forward(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& val,
                   const at::Tensor& keep, const at::Tensor& wt, double scale) {
  check_tensor(wt, "wt", val.scalar_type(), 3);
  const int64_t features = wt.size(0), heads = wt.size(1), channels = wt.size(2);
  const int64_t num_rows = rowptr.size(0) - 1;
  TORCH_CHECK(num_rows >= 0, "headwise: 'rowptr' must not be empty");
  at::Tensor out = at::empty({num_rows, heads, channels}, wt.options());
  AT_DISPATCH_FLOATING_TYPES(wt.scalar_type(), "headwise_forward", [&] {
    const auto nz = checked_nonzeros<scalar_t>(rowptr, col, val, keep, num_rows, features, heads);
    const scalar_t* w = wt.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    const int64_t row_size = heads * channels;
    const scalar_t s = static_cast<scalar_t>(scale);
    at::parallel_for(0, num_rows, 16, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        scalar_t* acc = o + r * row_size;
        std::fill(acc, acc + row_size, scalar_t(0));
        for (int64_t p = nz.ptr[r]; p < nz.ptr[r + 1]; ++p)
          add_kept_heads(acc, w + nz.cols[p] * row_size, nz.vals[p], nz.kept + p * heads, s,
                         heads, channels);
      }
    });
  });
  return out;
}

// gwt [F, H, C]; serial (a gradient row is shared by every row holding that
// feature): O(nnz * H * C), about a millisecond for a Planetoid batch.
at::Tensor weight_grad(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& val,
                       const at::Tensor& keep, const at::Tensor& grad, double scale,
                       int64_t features) {
  check_tensor(grad, "grad", val.scalar_type(), 3);
  const int64_t num_rows = grad.size(0), heads = grad.size(1), channels = grad.size(2);
  TORCH_CHECK(features >= 0, "headwise: 'features' must be non-negative, got ", features);
  at::Tensor gwt = at::zeros({features, heads, channels}, grad.options());
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "headwise_weight_grad", [&] {
    const auto nz = checked_nonzeros<scalar_t>(rowptr, col, val, keep, num_rows, features, heads);
    const scalar_t* g = grad.data_ptr<scalar_t>();
    scalar_t* gw = gwt.data_ptr<scalar_t>();
    const int64_t row_size = heads * channels;
    const scalar_t s = static_cast<scalar_t>(scale);
    for (int64_t r = 0; r < num_rows; ++r) {
      const scalar_t* grow = g + r * row_size;
      for (int64_t p = nz.ptr[r]; p < nz.ptr[r + 1]; ++p)
        add_kept_heads(gw + nz.cols[p] * row_size, grow, nz.vals[p], nz.kept + p * heads, s,
                       heads, channels);
    }
  });
  return gwt;
}

}  // namespace headwise
