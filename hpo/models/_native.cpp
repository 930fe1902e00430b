// The first layer's weight gradient on the CPU, as one compiled loop (built on first use by hpo/models/_native.py).
//
// grad_weight[codes[n, j]] += grad_out[n] for every row n and categorical column j: the transposed one-hot matrix
// times the output gradient, without building that matrix. The Python fallbacks compute the same product as a
// sparse CSR matrix, which needs a stable sort of every code at every step, or as one index_add_ per column, which
// reads the whole gradient once per column; this loop does neither.
//
// Every element of grad_weight gets its additions in the order the CSR product makes them (n ascending, then j);
// where each code belongs to one column, as in the input layer, the per-column loop's order is the same, so all
// three agree bit for bit and results do not depend on whether this file could be built. Threads own disjoint
// ranges of output columns: no two threads write one element, each element's order of additions is fixed, and
// the result is the same for any number of threads.

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <atomic>
#include <cstdint>

namespace {

#if defined(__x86_64__) && defined(__GNUC__)
#define HPO_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define HPO_CLONES
#endif

// One thread's share: columns [lo, hi) of every row. Compiled for AVX-512, AVX2 and the baseline, the variant
// chosen once at load time by the CPU it runs on (GCC's target_clones); the row add inlines into each.
template <typename T>
HPO_CLONES bool scatter_columns(const int64_t* __restrict codes, const T* __restrict grad, T* __restrict out,
                                int64_t n, int64_t c, int64_t t, int64_t rows, int64_t lo, int64_t hi) {
  bool ok = true;
  const int64_t w = hi - lo;
  for (int64_t i = 0; i < n; ++i) {
    const T* __restrict g = grad + i * t + lo;
    const int64_t* row_codes = codes + i * c;
    for (int64_t j = 0; j < c; ++j) {
      const int64_t code = row_codes[j];
      if (code < 0 || code >= rows) {
        ok = false;
        continue;
      }
      T* __restrict dst = out + code * t + lo;
      for (int64_t k = 0; k < w; ++k) dst[k] += g[k];
    }
  }
  return ok;
}

// Returns false, having skipped them, if some codes lie outside [0, rows): a bad code must never write elsewhere.
template <typename T>
bool scatter_rows(const int64_t* codes, const T* grad, T* out, int64_t n, int64_t c, int64_t t, int64_t rows) {
  std::atomic<bool> ok{true};
  // at least 64 columns per thread: narrower slices cost more in repeated reads of the codes than they save
  at::parallel_for(0, t, 64, [&](int64_t lo, int64_t hi) {
    if (!scatter_columns<T>(codes, grad, out, n, c, t, rows, lo, hi)) ok.store(false, std::memory_order_relaxed);
  });
  return ok.load();
}

at::Tensor sum_rows_backward(const at::Tensor& codes, const at::Tensor& grad_out, int64_t n_rows) {
  TORCH_CHECK(codes.dim() == 2 && grad_out.dim() == 2, "codes and grad_out must be matrices");
  TORCH_CHECK(codes.size(0) == grad_out.size(0), "codes and grad_out must have one row per example");
  TORCH_CHECK(codes.scalar_type() == at::kLong, "codes must be int64");
  TORCH_CHECK(codes.device().is_cpu() && grad_out.device().is_cpu(), "sum_rows_backward runs on the CPU");
  const at::Tensor cc = codes.contiguous();
  const at::Tensor gg = grad_out.contiguous();
  at::Tensor out = at::zeros({n_rows, gg.size(1)}, gg.options());
  bool ok = true;
  AT_DISPATCH_FLOATING_TYPES(gg.scalar_type(), "sum_rows_backward", [&] {
    ok = scatter_rows<scalar_t>(cc.data_ptr<int64_t>(), gg.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
                                cc.size(0), cc.size(1), gg.size(1), n_rows);
  });
  TORCH_CHECK(ok, "codes must lie in [0, ", n_rows, ")");
  return out;
}

}  // namespace

// The schema, then the CPU kernel under the CPU key: the dispatcher then refuses other devices by itself, and a
// shape-only ("fake") kernel can be registered from Python (_native.py) so that torch.compile can trace the op.
TORCH_LIBRARY(hpo_native, m) {
  m.def("sum_rows_backward(Tensor codes, Tensor grad_out, int n_rows) -> Tensor");
}

TORCH_LIBRARY_IMPL(hpo_native, CPU, m) {
  m.impl("sum_rows_backward", &sum_rows_backward);
}
