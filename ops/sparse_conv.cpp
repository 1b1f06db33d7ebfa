// Kernel-map sparse convolution on CPU: forward and backward, OpenMP, float32/float64.
//
// A kernel map lists, for each kernel offset k, the (in_row, out_row) pairs that offset
// connects: rows offset_ptr[k]:offset_ptr[k+1] of in_rows/out_rows. Within one offset every
// in row and every out row appears at most once. The pure-PyTorch twin that defines the
// result is pcseg/sparse/conv_torch.py.
//
// Scheme (output-stationary, one parallel region per call): the destination rows are cut
// into chunks, and each chunk is one task that computes its rows completely — the identity
// offset of a submanifold conv first (its rows are contiguous), then every other offset's
// pairs whose destination lies in the chunk. No two tasks write the same row, so there are
// no atomics and no barrier per offset; dynamic scheduling keeps both cores busy when the
// machine is shared. The backward pass is one such loop over chunks of input rows: each
// segment of pairs yields its grad_feats rows and, from the same grad_out rows, its share of
// grad_weight, summed into per-thread partials that are reduced once at the end.
//
// A segment's products run on one of two kernel sets with one contract (BlasOps, SimdOps):
// - float32 on CPUs with AVX-512F (SimdOps): register-tiled micro-kernels that read the pairs'
//   rows in place through row pointers and add each tile straight into its destination rows:
//   no gather copy, no BLAS packing of gathered rows, no product buffer;
// - otherwise (BlasOps: float64, other CPUs): gather the rows, single-threaded BLAS GEMM,
//   scatter-add.
// Outputs are advised onto transparent huge pages before their first write. bench/README.md
// has the measurements behind each choice.
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <omp.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#include <algorithm>
#include <array>
#include <cstring>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define PCSEG_HAVE_AVX512 1
#define PCSEG_AVX512 __attribute__((target("avx512f")))
#else
#define PCSEG_HAVE_AVX512 0
#endif

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
// Wanted pairs per (chunk, offset) segment, given up before having fewer chunks than threads
// (deep, small layers would run on one core). Forward: shorter BLAS GEMMs waste time on call
// overhead. Backward: every segment also reads and writes its offset's C_in x C_out slot of
// grad_weight partials once, which dominates short segments (stride 16 of MinkUNet34C, 1828
// rows x 256 channels: backward 45 -> 40 ms with 256 instead of 64).
constexpr int64_t kMinForwardSegment = 64;
constexpr int64_t kMinBackwardSegment = 256;

// Row-major out[m, n] = a[m, k] @ b[k, n] + beta * out.
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

// First writes to fresh anonymous memory fault in one 4 KiB page at a time, each zeroed by
// the kernel: 18 ms of CPU for a 41 MiB output here (a VM; ~11% of a C=128 forward), 5 ms on
// transparent huge pages, which large outputs therefore ask for before their first write.
void advise_huge_pages(void* data, int64_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t(2) << 20;
  const uintptr_t start = reinterpret_cast<uintptr_t>(data);
  const uintptr_t begin = (start + kHuge - 1) & ~(kHuge - 1), end = (start + bytes) & ~(kHuge - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#endif
}

// A new tensor whose pages are not touched yet.
torch::Tensor fresh(at::IntArrayRef sizes, const at::TensorOptions& options) {
  torch::Tensor t = at::empty(sizes, options);
  advise_huge_pages(t.data_ptr(), t.nbytes());
  return t;
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
  std::vector<int64_t> seg;
  // Left uninitialised: the parallel counting sort writes every entry that is read (and takes the
  // pages' first-touch faults on all threads rather than in one serial zeroing pass).
  std::unique_ptr<int64_t[]> src, dst;
};

Buckets bucket_by_destination(const MapView& m, const int64_t* src_rows, const int64_t* dst_rows,
                              int64_t num_dst, int64_t min_segment) {
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
  // Rows giving min_segment pairs per offset on average (pairs per row per offset = pairs /
  // (num_dst * offsets)).
  const int64_t wanted = pairs == 0 ? num_dst : ceil_div(min_segment * num_dst * offsets, pairs);
  b.chunk_rows = std::max({ceil_div(num_dst, threads * kTasksPerThread),
                           std::min(wanted, ceil_div(num_dst, threads)), int64_t(1)});
  b.chunks = std::max<int64_t>(1, ceil_div(num_dst, b.chunk_rows));
  const int64_t stride = b.chunks + 1;
  b.seg.assign(k * stride, 0);
  b.src.reset(new int64_t[std::max<int64_t>(m.ptr[k], 1)]);
  b.dst.reset(new int64_t[std::max<int64_t>(m.ptr[k], 1)]);
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

// The rows of one segment: row p is idx[p], or first + p when idx is null (identity offset).
struct Rows {
  const int64_t* idx;
  int64_t first;
  int64_t operator[](int64_t p) const { return idx ? idx[p] : first + p; }
};

// Segment products, BLAS flavour (any dtype): gather into per-thread scratch, one GEMM,
// scatter-add. Contiguous rows (the identity offset) skip the copies.
template <typename T>
class BlasOps {
 public:
  // max_rows: longest segment; width: widest row involved (max of C_in, C_out).
  BlasOps(int64_t max_rows, int64_t width)
      : a_(scratch<T>(max_rows * width)), b_(scratch<T>(max_rows * width)),
        product_(scratch<T>(max_rows * width)) {}

  // y[dst[p]] (= or +=) x[src[p]] @ w for p < n; w is row-major [k, c].
  void product(const T* x, int64_t k, Rows src, const T* w, int64_t c, Rows dst, int64_t n,
               bool add, T* y) {
    const T* xs = rows(x, k, src, n, a_.get());
    if (!dst.idx) {
      gemm_rows(xs, n, k, w, c, add ? T(1) : T(0), y + dst.first * c);
      return;
    }
    gemm_rows(xs, n, k, w, c, T(0), product_.get());
    for (int64_t p = 0; p < n; ++p) {
      const T* from = product_.get() + p * c;
      T* to = y + dst[p] * c;
      if (add) {
#pragma omp simd
        for (int64_t j = 0; j < c; ++j) to[j] += from[j];
      } else {
        std::memcpy(to, from, sizeof(T) * c);
      }
    }
  }

  // acc[ka, c] += sum over p < n of a[ra[p]]^T b[rb[p]] (a rows ka wide, b rows c wide).
  void outer(const T* a, int64_t ka, Rows ra, const T* b, int64_t c, Rows rb, int64_t n, T* acc) {
    gemm_at_b(rows(a, ka, ra, n, a_.get()), n, ka, rows(b, c, rb, n, b_.get()), c, acc);
  }

 private:
  // The n rows of x (width k) as one contiguous block: in place, or gathered into buf.
  static const T* rows(const T* x, int64_t k, Rows r, int64_t n, T* buf) {
    if (!r.idx) return x + r.first * k;
    for (int64_t p = 0; p < n; ++p) std::memcpy(buf + p * k, x + r.idx[p] * k, sizeof(T) * k);
    return buf;
  }

  std::unique_ptr<T[]> a_, b_, product_;
};

#if PCSEG_HAVE_AVX512
// Register tiles: kTileRows rows x kTileVecs 16-float vectors = 24 accumulators of the 32 zmm
// registers (12 x 2 and 8 x 3 measured slower).
constexpr int kTileRows = 6;
constexpr int kTileVecs = 4;
// Pairs per block of the outer product: the block's rows stay in L2 while every tile of
// grad_weight sweeps them (64, 128 and 256 measured the same).
constexpr int64_t kOuterBlock = 128;

PCSEG_AVX512 inline __m512 load(const float* p, __mmask16 mask, bool full) {
  return full ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(mask, p);
}

// y[i][0:16V] (= or +=) sum over q < depth of x[i][q] w[q][0:16V] for i < R; w's rows are ldw
// apart; the last vector covers the lanes in `mask`.
template <int R, int V, bool ADD>
PCSEG_AVX512 void product_tile(const float* const* x, int64_t depth, const float* w, int64_t ldw,
                               float* const* y, __mmask16 mask) {
  __m512 acc[R][V];
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) acc[i][v] = _mm512_setzero_ps();
  for (int64_t q = 0; q < depth; ++q) {
    const float* wq = w + q * ldw;
    __m512 wv[V];
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) wv[v] = load(wq + 16 * v, mask, v + 1 < V);
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      const __m512 xi = _mm512_set1_ps(x[i][q]);
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) acc[i][v] = _mm512_fmadd_ps(xi, wv[v], acc[i][v]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) {
      const __mmask16 lanes = v + 1 < V ? __mmask16(0xFFFF) : mask;
      __m512 out = acc[i][v];
      if (ADD) out = _mm512_add_ps(_mm512_maskz_loadu_ps(lanes, y[i] + 16 * v), out);
      _mm512_mask_storeu_ps(y[i] + 16 * v, lanes, out);
    }
}

// acc[i][0:16V] += sum over p < n of a[p][a_col + i] b[p][b_col:b_col + 16V] for i < R: one
// R x 16V tile of a^T b, acc rows ld apart; the last vector covers the lanes in `mask`.
template <int R, int V>
PCSEG_AVX512 void outer_tile(const float* const* a, int64_t a_col, const float* const* b,
                             int64_t b_col, int64_t n, float* acc, int64_t ld, __mmask16 mask) {
  __m512 sum[R][V];
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) sum[i][v] = _mm512_setzero_ps();
  for (int64_t p = 0; p < n; ++p) {
    __m512 bv[V];
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) bv[v] = load(b[p] + b_col + 16 * v, mask, v + 1 < V);
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      const __m512 ai = _mm512_set1_ps(a[p][a_col + i]);
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) sum[i][v] = _mm512_fmadd_ps(ai, bv[v], sum[i][v]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) {
      const __mmask16 lanes = v + 1 < V ? __mmask16(0xFFFF) : mask;
      float* out = acc + i * ld + 16 * v;
      _mm512_mask_storeu_ps(out, lanes, _mm512_add_ps(_mm512_maskz_loadu_ps(lanes, out), sum[i][v]));
    }
}

using ProductTile = void (*)(const float* const*, int64_t, const float*, int64_t, float* const*,
                             __mmask16);
using OuterTile = void (*)(const float* const*, int64_t, const float* const*, int64_t, int64_t,
                           float*, int64_t, __mmask16);

// Tile kernels by [rows - 1][vectors - 1], for the ragged edges of a segment.
template <int R, bool ADD>
constexpr std::array<ProductTile, kTileVecs> product_tiles_of() {
  return {&product_tile<R, 1, ADD>, &product_tile<R, 2, ADD>, &product_tile<R, 3, ADD>,
          &product_tile<R, 4, ADD>};
}
template <bool ADD>
constexpr std::array<std::array<ProductTile, kTileVecs>, kTileRows> kProductTiles = {
    product_tiles_of<1, ADD>(), product_tiles_of<2, ADD>(), product_tiles_of<3, ADD>(),
    product_tiles_of<4, ADD>(), product_tiles_of<5, ADD>(), product_tiles_of<6, ADD>()};
template <int R>
constexpr std::array<OuterTile, kTileVecs> outer_tiles_of() {
  return {&outer_tile<R, 1>, &outer_tile<R, 2>, &outer_tile<R, 3>, &outer_tile<R, 4>};
}
constexpr std::array<std::array<OuterTile, kTileVecs>, kTileRows> kOuterTiles = {
    outer_tiles_of<1>(), outer_tiles_of<2>(), outer_tiles_of<3>(),
    outer_tiles_of<4>(), outer_tiles_of<5>(), outer_tiles_of<6>()};

// Columns j0 .. j0 + 16 * vectors of a row c wide: (vectors, lanes of the last vector).
inline std::pair<int, __mmask16> column_tile(int64_t c, int64_t j0) {
  const int64_t left = c - j0;
  const int vectors = static_cast<int>(std::min<int64_t>(kTileVecs, (left + 15) / 16));
  const int64_t last = left - 16 * (vectors - 1);
  return {vectors, static_cast<__mmask16>((1u << last) - 1)};
}

// Segment products, AVX-512 flavour (float32): same contract as BlasOps.
class SimdOps {
 public:
  SimdOps(int64_t /*max_rows*/, int64_t /*width*/) {}  // needs no scratch

  PCSEG_AVX512 void product(const float* x, int64_t k, Rows src, const float* w, int64_t c,
                            Rows dst, int64_t n, bool add, float* y) {
    const auto& tiles = add ? kProductTiles<true> : kProductTiles<false>;
    const float* xr[kTileRows];
    float* yr[kTileRows];
    for (int64_t p0 = 0; p0 < n; p0 += kTileRows) {
      const int rows = static_cast<int>(std::min<int64_t>(kTileRows, n - p0));
      // The next tile's rows are scattered: fetch them now, they are needed ~1000 cycles later
      // (3-5% faster than leaving it to the hardware prefetchers).
      for (int64_t p = p0 + kTileRows; p < std::min(n, p0 + 2 * kTileRows); ++p) {
        const char* xp = reinterpret_cast<const char*>(x + src[p] * k);
        for (int64_t line = 0; line < k * 4; line += 64) _mm_prefetch(xp + line, _MM_HINT_T0);
        if (add) {
          const char* yp = reinterpret_cast<const char*>(y + dst[p] * c);
          for (int64_t line = 0; line < c * 4; line += 64) _mm_prefetch(yp + line, _MM_HINT_T0);
        }
      }
      for (int64_t j0 = 0; j0 < c; j0 += 16 * kTileVecs) {
        for (int i = 0; i < rows; ++i) {
          xr[i] = x + src[p0 + i] * k;
          yr[i] = y + dst[p0 + i] * c + j0;
        }
        const auto [vectors, mask] = column_tile(c, j0);
        tiles[rows - 1][vectors - 1](xr, k, w + j0, c, yr, mask);
      }
    }
  }

  PCSEG_AVX512 void outer(const float* a, int64_t ka, Rows ra, const float* b, int64_t c,
                          Rows rb, int64_t n, float* acc) {
    for (int64_t p0 = 0; p0 < n; p0 += kOuterBlock) {
      const int64_t m = std::min(kOuterBlock, n - p0);
      for (int64_t p = 0; p < m; ++p) {
        a_rows_[p] = a + ra[p0 + p] * ka;
        b_rows_[p] = b + rb[p0 + p] * c;
      }
      // Panel by panel: every row tile of a panel re-reads the same columns of the block's b rows.
      for (int64_t j0 = 0; j0 < c; j0 += 16 * kTileVecs) {
        const auto [vectors, mask] = column_tile(c, j0);
        for (int64_t i0 = 0; i0 < ka; i0 += kTileRows) {
          const int rows = static_cast<int>(std::min<int64_t>(kTileRows, ka - i0));
          kOuterTiles[rows - 1][vectors - 1](a_rows_, i0, b_rows_, j0, m, acc + i0 * c + j0, c, mask);
        }
      }
    }
  }

 private:
  const float* a_rows_[kOuterBlock];
  const float* b_rows_[kOuterBlock];
};

bool cpu_has_avx512() {
  __builtin_cpu_init();  // g_simd below is initialised before constructors may have run
  return __builtin_cpu_supports("avx512f");
}
#else
bool cpu_has_avx512() { return false; }
#endif

// Whether float32 uses the AVX-512 kernels (switchable so tests cover both flavours).
bool g_simd = cpu_has_avx512();

// dst[num_dst, c_out] = sum over pairs (s -> d) of offset k of src[s] @ weight[k]; weight is
// [K, c_in, c_out]. With an identity offset, dst rows map to the same src rows.
template <typename Ops, typename T>
void forward_pass(const T* src, int64_t c_in, const T* weight, int64_t c_out, const MapView& m,
                  const Buckets& b, int64_t num_dst, T* dst) {
  const int64_t k = static_cast<int64_t>(m.ptr.size()) - 1;
  const int64_t stride = b.chunks + 1, slot = c_in * c_out;
#pragma omp parallel num_threads(at::get_num_threads())
  {
    Ops ops(b.max_segment, std::max(c_in, c_out));
#pragma omp for schedule(dynamic, 1)
    for (int64_t c = 0; c < b.chunks; ++c) {
      const int64_t lo = c * b.chunk_rows, rows = std::min(num_dst, lo + b.chunk_rows) - lo;
      if (m.identity >= 0) {
        ops.product(src, c_in, Rows{nullptr, lo}, weight + m.identity * slot, c_out,
                    Rows{nullptr, lo}, rows, false, dst);
      } else {
        std::memset(dst + lo * c_out, 0, sizeof(T) * rows * c_out);
      }
      for (int64_t i = 0; i < k; ++i) {
        const int64_t begin = b.seg[i * stride + c], n = b.seg[i * stride + c + 1] - begin;
        if (n == 0) continue;
        ops.product(src, c_in, Rows{b.src.get() + begin, 0}, weight + i * slot, c_out,
                    Rows{b.dst.get() + begin, 0}, n, true, dst);
      }
    }
  }
}

// Both gradients in one loop over chunks of input rows (b buckets pairs by input row). For
// every pair (i -> o) of offset k: grad_feats[i] += grad_out[o] @ weight[k]^T (weight_t[k] =
// weight[k]^T, [K, c_out, c_in]) and grad_weight[k] += feats[i]^T grad_out[o].
template <typename Ops, typename T>
void backward_pass(const T* grad_out, int64_t c_out, const T* feats, int64_t c_in,
                   const T* weight_t, const MapView& m, const Buckets& b, int64_t n_in,
                   T* grad_feats, T* grad_weight) {
  const int64_t k = static_cast<int64_t>(m.ptr.size()) - 1;
  const int64_t stride = b.chunks + 1, slot = c_in * c_out;
  std::vector<T*> partials;
#pragma omp parallel num_threads(at::get_num_threads())
  {
#pragma omp single
    partials.assign(omp_get_num_threads(), nullptr);
    std::vector<T> mine(k * slot, T(0));
    partials[omp_get_thread_num()] = mine.data();
    Ops ops(b.max_segment, std::max(c_in, c_out));
#pragma omp for schedule(dynamic, 1)
    for (int64_t c = 0; c < b.chunks; ++c) {
      const int64_t lo = c * b.chunk_rows, rows = std::min(n_in, lo + b.chunk_rows) - lo;
      if (m.identity >= 0) {
        // Row r pairs with itself: contiguous operands.
        const Rows own{nullptr, lo};
        ops.product(grad_out, c_out, own, weight_t + m.identity * slot, c_in, own, rows, false,
                    grad_feats);
        ops.outer(feats, c_in, own, grad_out, c_out, own, rows, mine.data() + m.identity * slot);
      } else {
        std::memset(grad_feats + lo * c_in, 0, sizeof(T) * rows * c_in);
      }
      for (int64_t i = 0; i < k; ++i) {
        const int64_t begin = b.seg[i * stride + c], n = b.seg[i * stride + c + 1] - begin;
        if (n == 0) continue;
        const Rows outs{b.src.get() + begin, 0}, ins{b.dst.get() + begin, 0};
        ops.product(grad_out, c_out, outs, weight_t + i * slot, c_in, ins, n, true, grad_feats);
        ops.outer(feats, c_in, ins, grad_out, c_out, outs, n, mine.data() + i * slot);
      }
    }
    // The loop's barrier has passed: every partial is complete.
    const int64_t parts = static_cast<int64_t>(partials.size());
#pragma omp for schedule(static)
    for (int64_t j = 0; j < k * slot; ++j) {
      T sum = partials[0][j];
      for (int64_t t = 1; t < parts; ++t) sum += partials[t][j];
      grad_weight[j] = sum;
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

template <typename Ops>
struct OpsTag {
  using type = Ops;
};

// Calls body(OpsTag<kernel set for scalar_t>{}).
template <typename scalar_t, typename Body>
void with_ops(Body&& body) {
#if PCSEG_HAVE_AVX512
  if constexpr (std::is_same<scalar_t, float>::value) {
    if (g_simd) return body(OpsTag<SimdOps>{});
  }
#endif
  body(OpsTag<BlasOps<scalar_t>>{});
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
  const Buckets b = bucket_by_destination(m, m.in_rows, m.out_rows, num_out, kMinForwardSegment);
  torch::Tensor out = fresh({num_out, weight.size(2)}, feats.options());
  AT_DISPATCH_FLOATING_TYPES(feats.scalar_type(), "pcseg_conv_forward", [&] {
    with_ops<scalar_t>([&](auto ops) {
      forward_pass<typename decltype(ops)::type>(feats.data_ptr<scalar_t>(), feats.size(1), weight.data_ptr<scalar_t>(),
                        weight.size(2), m, b, num_out, out.data_ptr<scalar_t>());
    });
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
  const torch::Tensor weight_t = weight.transpose(1, 2).contiguous();
  const Buckets b = bucket_by_destination(m, m.out_rows, m.in_rows, n_in, kMinBackwardSegment);
  torch::Tensor grad_feats = fresh({n_in, c_in}, feats.options());
  torch::Tensor grad_weight = at::empty(weight.sizes(), feats.options());
  AT_DISPATCH_FLOATING_TYPES(feats.scalar_type(), "pcseg_conv_backward", [&] {
    with_ops<scalar_t>([&](auto ops) {
      backward_pass<typename decltype(ops)::type>(grad_out.data_ptr<scalar_t>(), c_out, feats.data_ptr<scalar_t>(), c_in,
                         weight_t.data_ptr<scalar_t>(), m, b, n_in,
                         grad_feats.data_ptr<scalar_t>(), grad_weight.data_ptr<scalar_t>());
    });
  });
  return {grad_feats, grad_weight};
}

// Selects the float32 kernel set: true = AVX-512 (ignored where the CPU lacks it), false =
// BLAS. Returns the previous setting.
bool set_simd(bool enabled) {
  const bool previous = g_simd;
  g_simd = enabled && cpu_has_avx512();
  return previous;
}

// ops/kernel_map.cpp
std::vector<torch::Tensor> kernel_map(torch::Tensor in_keys, torch::Tensor out_keys, torch::Tensor shifts);

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.def("conv_forward", &conv_forward,
             "Kernel-map sparse conv forward: (feats, weight, in_rows, out_rows, offset_ptr, "
             "num_out, identity_offset or -1) -> out");
  module.def("conv_backward", &conv_backward,
             "Kernel-map sparse conv backward: (grad_out, feats, weight, in_rows, out_rows, "
             "offset_ptr, num_out, identity_offset or -1) -> [grad_feats, grad_weight]");
  module.def("kernel_map", &kernel_map,
             "Kernel map from packed keys: (in_keys, out_keys, shifts) -> [in_rows, out_rows, "
             "offset_ptr], pairs sorted by (offset, out row)");
  module.def("set_simd", &set_simd,
             "Use the AVX-512 float32 kernels (true, the default where the CPU has AVX-512F) "
             "or the BLAS ones (false); returns the previous setting");
}
