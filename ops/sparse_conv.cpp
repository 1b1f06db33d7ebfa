// Kernel-map sparse convolution on CPU: forward and backward, OpenMP, float32/float64.
//
// A kernel map lists, for each kernel offset k, the (in_row, out_row) pairs that offset
// connects: rows offset_ptr[k]:offset_ptr[k+1] of in_rows/out_rows. Within one offset every
// in row and every out row appears at most once. The pure-PyTorch twin that defines the
// result is pcseg/sparse/conv_torch.py.
//
// Scheme (output-stationary, one parallel region per product): the destination rows are cut
// into chunks, and each chunk is one task that computes its rows completely — the identity
// offset of a submanifold conv as one GEMM straight into the chunk's rows, then for every
// other offset: gather that offset's source rows whose destination lies in the chunk, one
// single-threaded GEMM, scatter-add. No two tasks write the same row, so there are no atomics
// and no barrier per offset; dynamic scheduling keeps both cores busy when the machine is
// shared. grad_feats is the same product over the transposed map; grad_weight accumulates
// per-thread partial sums over blocks of pairs and reduces them once.
// The per-offset scheme (gather -> at::mm over all threads -> scatter per offset) measured
// slower, and much slower under CPU contention (bench/README.md has the numbers).
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

// BLAS (Fortran interface, 32-bit ints) as exported by libtorch_cpu (MKL on x86 wheels).
// Called from inside our own parallel region, where MKL runs single-threaded per task.
extern "C" {
void sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
            const float* alpha, const float* a, const int* lda, const float* b, const int* ldb,
            const float* beta, float* c, const int* ldc);
void dgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
            const double* alpha, const double* a, const int* lda, const double* b,
            const int* ldb, const double* beta, double* c, const int* ldc);
}

namespace {

// Column-major C[m, n] = alpha op(A)[m, k] op(B)[k, n] + beta C.
void blas_gemm(char ta, char tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
               int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  const int mi = m, ni = n, ki = k, la = lda, lb = ldb, lc = ldc;
  sgemm_(&ta, &tb, &mi, &ni, &ki, &alpha, a, &la, b, &lb, &beta, c, &lc);
}
void blas_gemm(char ta, char tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a,
               int64_t lda, const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  const int mi = m, ni = n, ki = k, la = lda, lb = ldb, lc = ldc;
  dgemm_(&ta, &tb, &mi, &ni, &ki, &alpha, a, &la, b, &lb, &beta, c, &lc);
}

// Tasks per thread: enough to rebalance when a core is taken by another process.
constexpr int64_t kTasksPerThread = 8;
// Wanted pairs per (chunk, offset) GEMM: shorter GEMMs waste time on call overhead. Given up
// before having fewer chunks than threads (deep, small layers would run on one core).
constexpr int64_t kMinGemmRows = 64;
// Pairs per grad_weight task.
constexpr int64_t kWeightBlock = 4096;

// Row-major out[m, n] = a[m, k] @ b[k, n] + beta * out, single-threaded inside a task.
template <typename T>
void gemm_rows(const T* a, int64_t m, int64_t k, const T* b, int64_t n, T beta, T* out) {
  if (m == 0) return;
  // BLAS is column-major: out^T[n, m] = b^T[n, k] @ a^T[k, m].
  blas_gemm('N', 'N', n, m, k, T(1), b, n, a, k, beta, out, n);
}

// Row-major out[k_a, n] += a[m, k_a]^T @ b[m, n].
template <typename T>
void gemm_at_b(const T* a, int64_t m, int64_t k_a, const T* b, int64_t n, T* out) {
  if (m == 0) return;
  // Column-major: out^T[n, k_a] = b^T[n, m] @ a[m, k_a] where a (row-major) reads as a^T.
  blas_gemm('N', 'T', n, k_a, m, T(1), b, n, a, k_a, T(1), out, n);
}

template <typename T>
std::unique_ptr<T[]> scratch(int64_t n) {
  return std::unique_ptr<T[]>(new T[std::max<int64_t>(n, 1)]);
}

struct MapView {
  const int64_t* in_rows;
  const int64_t* out_rows;
  std::vector<int64_t> ptr;  // K + 1 entries
  int64_t identity;          // -1 when absent
};

// Non-identity pairs regrouped by destination chunk: pairs of offset k whose destination lies
// in chunk c are src[seg[k][c]:seg[k][c+1]] -> dst[...] (seg is [K][chunks + 1], flattened).
struct Buckets {
  int64_t chunks = 0, chunk_rows = 0, max_segment = 0;
  std::vector<int64_t> seg, src, dst;
};

Buckets bucket_by_destination(const MapView& m, const int64_t* src_rows, const int64_t* dst_rows,
                              int64_t num_dst) {
  Buckets b;
  const int64_t k = static_cast<int64_t>(m.ptr.size()) - 1;
  const int64_t threads = at::get_num_threads();
  const auto ceil_div = [](int64_t a, int64_t d) { return (a + d - 1) / d; };
  int64_t pairs = 0, offsets = 0;
  for (int64_t i = 0; i < k; ++i) {
    if (i == m.identity || m.ptr[i + 1] == m.ptr[i]) continue;
    pairs += m.ptr[i + 1] - m.ptr[i];
    ++offsets;
  }
  // Rows giving kMinGemmRows pairs per offset on average (pairs per row per offset = pairs /
  // (num_dst * offsets)).
  const int64_t gemm_rows = pairs == 0 ? num_dst : ceil_div(kMinGemmRows * num_dst * offsets, pairs);
  b.chunk_rows = std::max({ceil_div(num_dst, threads * kTasksPerThread),
                           std::min(gemm_rows, ceil_div(num_dst, threads)), int64_t(1)});
  b.chunks = std::max<int64_t>(1, ceil_div(num_dst, b.chunk_rows));
  const int64_t stride = b.chunks + 1;
  b.seg.assign(k * stride, 0);
  b.src.resize(m.ptr[k]);
  b.dst.resize(m.ptr[k]);
  std::vector<int64_t> longest(k, 0);
  // Offsets are independent: each one is a stable counting sort of its pairs by chunk.
  at::parallel_for(0, k, 1, [&](int64_t first, int64_t last) {
    std::vector<int64_t> fill(b.chunks);
    for (int64_t i = first; i < last; ++i) {
      int64_t* seg = b.seg.data() + i * stride;
      const int64_t begin = m.ptr[i], end = i == m.identity ? begin : m.ptr[i + 1];
      for (int64_t p = begin; p < end; ++p) ++seg[dst_rows[p] / b.chunk_rows + 1];
      seg[0] = begin;
      for (int64_t c = 0; c < b.chunks; ++c) {
        longest[i] = std::max(longest[i], seg[c + 1]);
        seg[c + 1] += seg[c];
        fill[c] = seg[c];
      }
      for (int64_t p = begin; p < end; ++p) {
        const int64_t at = fill[dst_rows[p] / b.chunk_rows]++;
        b.src[at] = src_rows[p];
        b.dst[at] = dst_rows[p];
      }
    }
  });
  b.max_segment = *std::max_element(longest.begin(), longest.end());
  return b;
}

// dst[num_dst, c_out] = sum over pairs (s -> d) of offset k of src[s] @ weight[k]; weight is
// [K, c_in, c_out]. With an identity offset, dst rows map to the same src rows.
template <typename T>
void accumulate(const T* src, int64_t c_in, const T* weight, int64_t c_out, const MapView& m,
                const Buckets& b, int64_t num_dst, T* dst) {
  const int64_t k = static_cast<int64_t>(m.ptr.size()) - 1;
  const int64_t stride = b.chunks + 1;
#pragma omp parallel num_threads(at::get_num_threads())
  {
    auto gathered = scratch<T>(b.max_segment * c_in);
    auto product = scratch<T>(b.max_segment * c_out);
#pragma omp for schedule(dynamic, 1)
    for (int64_t c = 0; c < b.chunks; ++c) {
      const int64_t lo = c * b.chunk_rows, rows = std::min(num_dst, lo + b.chunk_rows) - lo;
      T* out = dst + lo * c_out;
      if (m.identity >= 0) {
        gemm_rows(src + lo * c_in, rows, c_in, weight + m.identity * c_in * c_out, c_out, T(0), out);
      } else {
        std::memset(out, 0, sizeof(T) * rows * c_out);
      }
      for (int64_t i = 0; i < k; ++i) {
        const int64_t begin = b.seg[i * stride + c], n = b.seg[i * stride + c + 1] - begin;
        if (n == 0) continue;
        const int64_t* s_rows = b.src.data() + begin;
        const int64_t* d_rows = b.dst.data() + begin;
        for (int64_t p = 0; p < n; ++p) {
          std::memcpy(gathered.get() + p * c_in, src + s_rows[p] * c_in, sizeof(T) * c_in);
        }
        gemm_rows(gathered.get(), n, c_in, weight + i * c_in * c_out, c_out, T(0), product.get());
        for (int64_t p = 0; p < n; ++p) {
          const T* from = product.get() + p * c_out;
          T* to = dst + d_rows[p] * c_out;
#pragma omp simd
          for (int64_t j = 0; j < c_out; ++j) to[j] += from[j];
        }
      }
    }
  }
}

// grad_weight[k] = sum over pairs (i -> o) of offset k of feats[i]^T grad_out[o].
template <typename T>
void weight_gradient(const T* feats, int64_t c_in, const T* grad_out, int64_t c_out,
                     const MapView& m, int64_t num_rows, T* grad_weight) {
  const int64_t k = static_cast<int64_t>(m.ptr.size()) - 1;
  const int64_t slot = c_in * c_out;
  struct Task { int64_t offset, begin, end; };
  std::vector<Task> tasks;
  for (int64_t i = 0; i < k; ++i) {
    // The identity offset's blocks are row ranges (pairs (r, r) for every row r).
    const int64_t begin = i == m.identity ? 0 : m.ptr[i];
    const int64_t end = i == m.identity ? num_rows : m.ptr[i + 1];
    for (int64_t b = begin; b < end; b += kWeightBlock) tasks.push_back({i, b, std::min(end, b + kWeightBlock)});
  }
  std::memset(grad_weight, 0, sizeof(T) * k * slot);
  const int64_t num_tasks = static_cast<int64_t>(tasks.size());
#pragma omp parallel num_threads(at::get_num_threads())
  {
    auto g_in = scratch<T>(kWeightBlock * c_in);
    auto g_out = scratch<T>(kWeightBlock * c_out);
    std::vector<T> partial(k * slot, T(0));
    std::vector<char> touched(k, 0);
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < num_tasks; ++t) {
      const Task& task = tasks[t];
      const int64_t n = task.end - task.begin;
      T* acc = partial.data() + task.offset * slot;
      touched[task.offset] = 1;
      if (task.offset == m.identity) {
        gemm_at_b(feats + task.begin * c_in, n, c_in, grad_out + task.begin * c_out, c_out, acc);
        continue;
      }
      for (int64_t p = 0; p < n; ++p) {
        std::memcpy(g_in.get() + p * c_in, feats + m.in_rows[task.begin + p] * c_in, sizeof(T) * c_in);
        std::memcpy(g_out.get() + p * c_out, grad_out + m.out_rows[task.begin + p] * c_out,
                    sizeof(T) * c_out);
      }
      gemm_at_b(g_in.get(), n, c_in, g_out.get(), c_out, acc);
    }
#pragma omp critical(pcseg_weight_gradient)
    for (int64_t i = 0; i < k; ++i) {
      if (!touched[i]) continue;
      const T* from = partial.data() + i * slot;
      T* to = grad_weight + i * slot;
      for (int64_t j = 0; j < slot; ++j) to[j] += from[j];
    }
  }
}

MapView check_map(const torch::Tensor& feats, const torch::Tensor& weight,
                  const torch::Tensor& in_rows, const torch::Tensor& out_rows,
                  const torch::Tensor& offset_ptr, int64_t num_out, int64_t identity_offset) {
  TORCH_CHECK(feats.device().is_cpu() && weight.device().is_cpu(),
              "native sparse conv: feats and weight must be CPU tensors");
  TORCH_CHECK(feats.dim() == 2, "native sparse conv: feats must be [N_in, C_in], got ",
              feats.sizes());
  TORCH_CHECK(weight.dim() == 3 && weight.size(1) == feats.size(1),
              "native sparse conv: weight must be [K, C_in=", feats.size(1), ", C_out], got ",
              weight.sizes());
  TORCH_CHECK(feats.scalar_type() == weight.scalar_type(),
              "native sparse conv: feats and weight dtypes differ");
  for (const auto* t : {&in_rows, &out_rows, &offset_ptr}) {
    TORCH_CHECK(t->device().is_cpu() && t->scalar_type() == torch::kInt64 && t->dim() == 1 &&
                    t->is_contiguous(),
                "native sparse conv: kernel map index tensors must be contiguous CPU int64 [P]");
  }
  const int64_t k = weight.size(0);
  TORCH_CHECK(offset_ptr.numel() == k + 1, "native sparse conv: offset_ptr has ",
              offset_ptr.numel(), " entries, expected K + 1 = ", k + 1);
  TORCH_CHECK(in_rows.numel() == out_rows.numel(),
              "native sparse conv: in_rows and out_rows lengths differ");
  MapView m;
  m.in_rows = in_rows.data_ptr<int64_t>();
  m.out_rows = out_rows.data_ptr<int64_t>();
  const int64_t* ptr = offset_ptr.data_ptr<int64_t>();
  m.ptr.assign(ptr, ptr + k + 1);
  TORCH_CHECK(m.ptr[0] == 0 && m.ptr[k] == in_rows.numel(),
              "native sparse conv: offset_ptr must run from 0 to P");
  for (int64_t i = 0; i < k; ++i) {
    TORCH_CHECK(m.ptr[i + 1] >= m.ptr[i], "native sparse conv: offset_ptr must be non-decreasing");
  }
  m.identity = identity_offset;
  if (identity_offset >= 0) {
    TORCH_CHECK(identity_offset < k, "native sparse conv: identity_offset ", identity_offset,
                " out of range for K = ", k);
    const int64_t n = m.ptr[identity_offset + 1] - m.ptr[identity_offset];
    TORCH_CHECK(n == feats.size(0) && n == num_out,
                "native sparse conv: identity offset must pair every row with itself (",
                n, " pairs, N_in = ", feats.size(0), ", num_out = ", num_out, ")");
    // Unique rows per offset + in == out on each pair + N pairs => a permutation of (i, i).
    const int64_t* a = m.in_rows + m.ptr[identity_offset];
    const int64_t* b = m.out_rows + m.ptr[identity_offset];
    bool same = true;
    for (int64_t p = 0; p < n; ++p) same &= (a[p] == b[p]);
    TORCH_CHECK(same, "native sparse conv: identity offset has a pair with in_row != out_row");
  }
  // Rows index the feature matrices directly: one bad index would read or write out of bounds.
  const int64_t n_in = feats.size(0);
  bool in_range = true;
  for (int64_t p = 0; p < m.ptr[k]; ++p) {
    in_range &= (m.in_rows[p] >= 0) & (m.in_rows[p] < n_in) & (m.out_rows[p] >= 0) &
                (m.out_rows[p] < num_out);
  }
  TORCH_CHECK(in_range, "native sparse conv: kernel map rows out of range (N_in = ", n_in,
              ", num_out = ", num_out, ")");
  return m;
}

}  // namespace

// feats [N_in, C_in], weight [K, C_in, C_out] -> out [num_out, C_out].
torch::Tensor conv_forward(torch::Tensor feats, torch::Tensor weight, torch::Tensor in_rows,
                           torch::Tensor out_rows, torch::Tensor offset_ptr, int64_t num_out,
                           int64_t identity_offset) {
  // A kernel, not an autograd op: conv_backward supplies the gradients.
  at::NoGradGuard no_grad;
  feats = feats.contiguous();
  weight = weight.contiguous();
  const MapView m =
      check_map(feats, weight, in_rows, out_rows, offset_ptr, num_out, identity_offset);
  const Buckets b = bucket_by_destination(m, m.in_rows, m.out_rows, num_out);
  torch::Tensor out = at::empty({num_out, weight.size(2)}, feats.options());
  AT_DISPATCH_FLOATING_TYPES(feats.scalar_type(), "pcseg_conv_forward", [&] {
    accumulate(feats.data_ptr<scalar_t>(), feats.size(1), weight.data_ptr<scalar_t>(),
               weight.size(2), m, b, num_out, out.data_ptr<scalar_t>());
  });
  return out;
}

// grad_out [num_out, C_out] -> (grad_feats [N_in, C_in], grad_weight [K, C_in, C_out]).
std::vector<torch::Tensor> conv_backward(torch::Tensor grad_out, torch::Tensor feats,
                                         torch::Tensor weight, torch::Tensor in_rows,
                                         torch::Tensor out_rows, torch::Tensor offset_ptr,
                                         int64_t num_out, int64_t identity_offset) {
  at::NoGradGuard no_grad;
  grad_out = grad_out.contiguous();
  feats = feats.contiguous();
  const MapView m =
      check_map(feats, weight, in_rows, out_rows, offset_ptr, num_out, identity_offset);
  TORCH_CHECK(grad_out.dim() == 2 && grad_out.size(0) == num_out &&
                  grad_out.size(1) == weight.size(2),
              "native sparse conv: grad_out must be [num_out=", num_out, ", C_out=",
              weight.size(2), "], got ", grad_out.sizes());
  TORCH_CHECK(grad_out.scalar_type() == feats.scalar_type(),
              "native sparse conv: grad_out and feats dtypes differ");
  const int64_t n_in = feats.size(0), c_in = feats.size(1), c_out = weight.size(2);
  // grad_feats is the forward product over the transposed map with weight[k]^T.
  const torch::Tensor weight_t = weight.transpose(1, 2).contiguous();
  const Buckets b = bucket_by_destination(m, m.out_rows, m.in_rows, n_in);
  torch::Tensor grad_feats = at::empty({n_in, c_in}, feats.options());
  torch::Tensor grad_weight = at::empty(weight.sizes(), feats.options());
  AT_DISPATCH_FLOATING_TYPES(feats.scalar_type(), "pcseg_conv_backward", [&] {
    accumulate(grad_out.data_ptr<scalar_t>(), c_out, weight_t.data_ptr<scalar_t>(), c_in, m, b,
               n_in, grad_feats.data_ptr<scalar_t>());
    weight_gradient(feats.data_ptr<scalar_t>(), c_in, grad_out.data_ptr<scalar_t>(), c_out, m,
                    n_in, grad_weight.data_ptr<scalar_t>());
  });
  return {grad_feats, grad_weight};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.def("conv_forward", &conv_forward,
             "Kernel-map sparse conv forward: (feats, weight, in_rows, out_rows, offset_ptr, "
             "num_out, identity_offset or -1) -> out");
  module.def("conv_backward", &conv_backward,
             "Kernel-map sparse conv backward: (grad_out, feats, weight, in_rows, out_rows, "
             "offset_ptr, num_out, identity_offset or -1) -> [grad_feats, grad_weight]");
}
