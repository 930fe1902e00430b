// Compiled CPU kernels for the two hottest parts of a fused MTL step (built on first use by hpo/models/_native.py).
//
// 1. sum_rows_backward: the first layer's weight gradient.
//    grad_weight[codes[n, j]] += grad_out[n] for every row n and categorical column j: the transposed one-hot matrix
//    times the output gradient, without building that matrix. The Python fallbacks compute the same product as a
//    sparse CSR matrix, which needs a stable sort of every code at every step, or as one index_add_ per column,
//    which reads the whole gradient once per column; this loop does neither.
//
//    Every element of grad_weight gets its additions in the order the CSR product makes them (n ascending, then j);
//    where each code belongs to one column, as in the input layer, the per-column loop's order is the same, so all
//    three agree bit for bit and results do not depend on whether this file could be built. Work is split so that
//    no two threads write one element and each element's order of additions is fixed, so the result is the same
//    for any number of threads: by replica when the rows are R replicas' blocks (each replica's codes index its own
//    block of the weight, as the vectorised models lay them out), else by ranges of output columns.
//
// 2. moe_mix / moe_mix_backward: the gate softmax and gate-weighted sum of one-layer experts (MMoE, OMoE), read
//    straight from the fused first layer's output z = [experts (E x h, pre-activation) | gate logits (G x E)]:
//    out[r, g, b, :] = sum_e softmax(z_gates[g])_e * relu(z_experts[e]). In PyTorch this is a dozen elementwise
//    operations whose (R, B, E, h) intermediates leave the caches once replicas are stacked; here each row is read
//    once and its gradient written once. Rows are independent, so any split over threads gives the same result.
//
// Compiled with -fopenmp: at::parallel_for is inlined into this file, and without OpenMP it runs on one thread.

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <vector>

namespace {

#if defined(__x86_64__) && defined(__GNUC__)
#define HPO_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define HPO_CLONES
#endif
// helpers called from the cloned loops are inlined into each clone: a vector argument passed between code
// compiled for different instruction sets would not agree on how it is passed
#define HPO_INLINE __attribute__((always_inline)) inline

// ---------------------------------------------------------------------------------------------------------------
// 1. The first layer's weight gradient

// One thread's share: columns [lo, hi) of rows [0, n), whose codes must lie in [base, base + rows). Compiled for
// AVX-512, AVX2 and the baseline, the variant chosen once at load time by the CPU it runs on (GCC's
// target_clones); the row add inlines into each.
template <typename T>
HPO_CLONES bool scatter_columns(const int64_t* __restrict codes, const T* __restrict grad, T* __restrict out,
                                int64_t n, int64_t c, int64_t t, int64_t base, int64_t rows, int64_t lo,
                                int64_t hi) {
  bool ok = true;
  const int64_t w = hi - lo;
  for (int64_t i = 0; i < n; ++i) {
    const T* __restrict g = grad + i * t + lo;
    const int64_t* row_codes = codes + i * c;
    for (int64_t j = 0; j < c; ++j) {
      const int64_t code = row_codes[j] - base;
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

// Columns per thread when the work is split by columns (one replica). On the 2-core CPU of bench/PROFILE.md
// (seventh pass) a split never paid: 144 columns 3.7 -> 5.1 ms at 16 replicas, and for one replica 1.44 vs
// 1.47 ms at 1024 columns, 3.02 vs 3.33 ms at 2064 (one thread vs two, medians of 15 interleaved rounds): each
// thread re-reads every code for part of the row, and the loop is bound by memory, not arithmetic. So a lone
// model's layer runs on one thread up to well past the budget's widest (2048 units plus gate logits).
constexpr int64_t COLUMN_GRAIN = 4096;

at::Tensor sum_rows_backward(const at::Tensor& codes, const at::Tensor& grad_out, int64_t n_rows, int64_t replicas) {
  TORCH_CHECK(codes.dim() == 2 && grad_out.dim() == 2, "codes and grad_out must be matrices");
  TORCH_CHECK(codes.size(0) == grad_out.size(0), "codes and grad_out must have one row per example");
  TORCH_CHECK(codes.scalar_type() == at::kLong, "codes must be int64");
  TORCH_CHECK(codes.device().is_cpu() && grad_out.device().is_cpu(), "sum_rows_backward runs on the CPU");
  TORCH_CHECK(replicas >= 1 && codes.size(0) % replicas == 0 && n_rows % replicas == 0,
              "replicas must divide both the rows of codes and n_rows");
  const at::Tensor cc = codes.contiguous();
  const at::Tensor gg = grad_out.contiguous();
  const int64_t n = cc.size(0), c = cc.size(1), t = gg.size(1);
  at::Tensor out = at::zeros({n_rows, t}, gg.options());
  std::atomic<bool> ok{true};
  AT_DISPATCH_FLOATING_TYPES(gg.scalar_type(), "sum_rows_backward", [&] {
    const int64_t* cp = cc.data_ptr<int64_t>();
    const scalar_t* gp = gg.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    if (replicas > 1) {
      // replica r's rows [r * nr, (r + 1) * nr) write only its block [r * vr, (r + 1) * vr) of the weight
      const int64_t nr = n / replicas, vr = n_rows / replicas;
      at::parallel_for(0, replicas, 1, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r)
          if (!scatter_columns<scalar_t>(cp + r * nr * c, gp + r * nr * t, op + r * vr * t, nr, c, t, r * vr, vr, 0, t))
            ok.store(false, std::memory_order_relaxed);
      });
    } else {
      at::parallel_for(0, t, COLUMN_GRAIN, [&](int64_t lo, int64_t hi) {
        if (!scatter_columns<scalar_t>(cp, gp, op, n, c, t, 0, n_rows, lo, hi))
          ok.store(false, std::memory_order_relaxed);
      });
    }
  });
  // a bad code is skipped, never written elsewhere, and the call fails
  if (replicas > 1) TORCH_CHECK(ok.load(), "codes of each replica must lie in its own block of ", n_rows / replicas, " rows");
  TORCH_CHECK(ok.load(), "codes must lie in [0, ", n_rows, ")");
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// 2. Gate softmax and mix of one-layer experts

// 32-byte vectors (8 floats, 4 doubles) through GCC's vector extensions: every clone computes the same lanes in the
// same order, so the AVX-512, AVX2 and baseline builds give the same bits.
template <typename T>
struct Vec {
  static constexpr int64_t L = 32 / sizeof(T);
  typedef T type __attribute__((vector_size(32)));
  HPO_INLINE static type load(const T* p) {
    type v;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
  HPO_INLINE static void store(T* p, type v) { std::memcpy(p, &v, sizeof v); }
  HPO_INLINE static type splat(T x) { return type{} + x; }
  HPO_INLINE static type relu(type x) { return x > type{} ? x : type{}; }
  HPO_INLINE static T sum(type v) {  // a fixed tree, so the order never depends on the instruction set
    T s[L];
    std::memcpy(s, &v, sizeof v);
    for (int64_t w = L / 2; w >= 1; w /= 2)
      for (int64_t i = 0; i < w; ++i) s[i] += s[i + w];
    return s[0];
  }
};

// exp(x) for x <= 0, as the softmax needs after subtracting the row's maximum. Cephes' single-precision
// polynomial (relative error about 1e-7, like the float exp it replaces), written without branches or library
// calls so that the loop over a row's logits vectorises; below -87 the result is about 1e-38 instead of smaller.
HPO_INLINE float exp_nonpositive(float x) {
  x = x < -87.0f ? -87.0f : x;
  const float t = x * 1.44269504088896341f + 12582912.0f;  // adding 1.5 * 2^23 rounds to the nearest integer
  const float k = t - 12582912.0f;
  const int32_t ki = std::bit_cast<int32_t>(t) - 0x4B400000;
  x = x - k * 0.693359375f + k * 2.12194440e-4f;  // x - k ln 2, ln 2 split in two for accuracy
  float p = 1.9875691500e-4f;
  p = p * x + 1.3981999507e-3f;
  p = p * x + 8.3334519073e-3f;
  p = p * x + 4.1665795894e-2f;
  p = p * x + 1.6666665459e-1f;
  p = p * x + 5.0000001201e-1f;
  return (p * x * x + x + 1.0f) * std::bit_cast<float>((ki + 127) << 23);
}
HPO_INLINE double exp_nonpositive(double x) { return std::exp(x); }

// w[g, :] = softmax(logits[g, :]) for each of the G gates of one row
template <typename T>
HPO_INLINE void softmax_row(const T* __restrict logits, T* __restrict w, int64_t G, int64_t E) {
  for (int64_t g = 0; g < G; ++g) {
    T mx = logits[g * E];
    for (int64_t e = 1; e < E; ++e) mx = std::max(mx, logits[g * E + e]);
    for (int64_t e = 0; e < E; ++e) w[g * E + e] = logits[g * E + e] - mx;
  }
  for (int64_t i = 0; i < G * E; ++i) w[i] = exp_nonpositive(w[i]);
  for (int64_t g = 0; g < G; ++g) {
    T s = w[g * E];
    for (int64_t e = 1; e < E; ++e) s += w[g * E + e];
    for (int64_t e = 0; e < E; ++e) w[g * E + e] /= s;
  }
}

template <typename T>
HPO_CLONES void mix_forward_rows(const T* __restrict z, T* __restrict out, T* __restrict weights, int64_t lo,
                                 int64_t hi, int64_t B, int64_t E, int64_t h, int64_t G) {
  using V = Vec<T>;
  using v_t = typename V::type;
  const int64_t tz = E * h + G * E, hv = h - h % V::L;
  for (int64_t n = lo; n < hi; ++n) {
    const int64_t r = n / B, b = n % B;
    const T* __restrict x = z + n * tz;
    T* __restrict w = weights + n * G * E;
    softmax_row(x + E * h, w, G, E);
    for (int64_t g = 0; g < G; ++g) {
      T* __restrict o = out + ((r * G + g) * B + b) * h;
      const T* wg = w + g * E;
      for (int64_t k = 0; k < hv; k += V::L) {
        v_t acc = V::splat(wg[0]) * V::relu(V::load(x + k));
        for (int64_t e = 1; e < E; ++e) acc += V::splat(wg[e]) * V::relu(V::load(x + e * h + k));
        V::store(o + k, acc);
      }
      for (int64_t k = hv; k < h; ++k) {
        T acc = wg[0] * std::max(x[k], T(0));
        for (int64_t e = 1; e < E; ++e) acc += wg[e] * std::max(x[e * h + k], T(0));
        o[k] = acc;
      }
    }
  }
}

// GC > 0: the number of gates fixed at compile time (1 for OMoE, 2 for two-task MMoE), so that each gate's
// accumulator stays in a register; GC = 0: any number, accumulators in memory. The same operations either way.
template <typename T, int64_t GC>
HPO_CLONES void mix_backward_rows(const T* __restrict z, const T* __restrict weights, const T* __restrict grad_out,
                                  T* __restrict grad_z, int64_t lo, int64_t hi, int64_t B, int64_t E, int64_t h,
                                  int64_t G_) {
  using V = Vec<T>;
  using v_t = typename V::type;
  const int64_t G = GC > 0 ? GC : G_;
  const int64_t tz = E * h + G * E, hv = h - h % V::L;
  std::vector<const T*> go(G);
  std::vector<T> gw(G * E), acc(G * V::L);
  for (int64_t n = lo; n < hi; ++n) {
    const int64_t r = n / B, b = n % B;
    const T* __restrict x = z + n * tz;
    const T* __restrict w = weights + n * G * E;
    T* __restrict gz = grad_z + n * tz;
    for (int64_t g = 0; g < G; ++g) go[g] = grad_out + ((r * G + g) * B + b) * h;
    for (int64_t e = 0; e < E; ++e) {
      const T* __restrict xe = x + e * h;
      T* __restrict gx = gz + e * h;
      if constexpr (GC > 0) {
        v_t a[GC];
        for (int64_t g = 0; g < GC; ++g) a[g] = v_t{};
        for (int64_t k = 0; k < hv; k += V::L) {
          const v_t xv = V::load(xe + k), xr = V::relu(xv);
          v_t s = v_t{};
          for (int64_t g = 0; g < GC; ++g) {
            const v_t gv = V::load(go[g] + k);
            s += V::splat(w[g * E + e]) * gv;
            a[g] += xr * gv;
          }
          V::store(gx + k, xv > v_t{} ? s : v_t{});
        }
        for (int64_t g = 0; g < GC; ++g) gw[g * E + e] = V::sum(a[g]);
      } else {
        for (int64_t g = 0; g < G; ++g) V::store(acc.data() + g * V::L, v_t{});
        for (int64_t k = 0; k < hv; k += V::L) {
          const v_t xv = V::load(xe + k), xr = V::relu(xv);
          v_t s = v_t{};
          for (int64_t g = 0; g < G; ++g) {
            const v_t gv = V::load(go[g] + k);
            s += V::splat(w[g * E + e]) * gv;  // d out / d expert: the gate weights
            V::store(acc.data() + g * V::L, V::load(acc.data() + g * V::L) + xr * gv);  // d out / d weight
          }
          V::store(gx + k, xv > v_t{} ? s : v_t{});  // through the ReLU
        }
        for (int64_t g = 0; g < G; ++g) gw[g * E + e] = V::sum(V::load(acc.data() + g * V::L));
      }
      for (int64_t k = hv; k < h; ++k) {
        const T xr = std::max(xe[k], T(0));
        T s = 0;
        for (int64_t g = 0; g < G; ++g) {
          s += w[g * E + e] * go[g][k];
          gw[g * E + e] += xr * go[g][k];
        }
        gx[k] = xe[k] > T(0) ? s : T(0);
      }
    }
    // through the softmax: d logit_e = w_e (d w_e - sum_e' w_e' d w_e')
    for (int64_t g = 0; g < G; ++g) {
      const T* wg = w + g * E;
      const T* gwg = gw.data() + g * E;
      T dot = gwg[0] * wg[0];
      for (int64_t e = 1; e < E; ++e) dot += gwg[e] * wg[e];
      T* gl = gz + E * h + g * E;
      for (int64_t e = 0; e < E; ++e) gl[e] = wg[e] * (gwg[e] - dot);
    }
  }
}

// Rows per task of the thread pool: a paper-size row is about 150 floats of work, so 64 rows amortise the split
constexpr int64_t ROW_GRAIN = 64;

void check_mix(const at::Tensor& z, int64_t E, int64_t h, int64_t G) {
  TORCH_CHECK(z.dim() == 3, "z must be (replicas, batch, experts * units + gates * experts)");
  TORCH_CHECK(E >= 1 && h >= 1 && G >= 1, "experts, units and gates must be positive");
  TORCH_CHECK(z.size(2) == E * h + G * E, "z has ", z.size(2), " columns; experts * units + gates * experts = ",
              E * h + G * E);
  TORCH_CHECK(z.device().is_cpu(), "moe_mix runs on the CPU");
}

std::tuple<at::Tensor, at::Tensor> moe_mix(const at::Tensor& z, int64_t E, int64_t h, int64_t G) {
  check_mix(z, E, h, G);
  const at::Tensor zz = z.contiguous();
  const int64_t R = zz.size(0), B = zz.size(1);
  at::Tensor out = at::empty({R, G, B, h}, zz.options());
  at::Tensor w = at::empty({R, B, G, E}, zz.options());
  AT_DISPATCH_FLOATING_TYPES(zz.scalar_type(), "moe_mix", [&] {
    const scalar_t* zp = zz.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    scalar_t* wp = w.data_ptr<scalar_t>();
    at::parallel_for(0, R * B, ROW_GRAIN, [&](int64_t lo, int64_t hi) {
      mix_forward_rows<scalar_t>(zp, op, wp, lo, hi, B, E, h, G);
    });
  });
  return {out, w};
}

at::Tensor moe_mix_backward(const at::Tensor& z, const at::Tensor& weights, const at::Tensor& grad_out, int64_t E,
                            int64_t h, int64_t G) {
  check_mix(z, E, h, G);
  const at::Tensor zz = z.contiguous(), ww = weights.contiguous(), go = grad_out.contiguous();
  const int64_t R = zz.size(0), B = zz.size(1);
  TORCH_CHECK(ww.numel() == R * B * G * E && go.numel() == R * G * B * h, "weights or grad_out of the wrong size");
  at::Tensor gz = at::empty(zz.sizes(), zz.options());
  AT_DISPATCH_FLOATING_TYPES(zz.scalar_type(), "moe_mix_backward", [&] {
    const scalar_t* zp = zz.data_ptr<scalar_t>();
    const scalar_t* wp = ww.data_ptr<scalar_t>();
    const scalar_t* gp = go.data_ptr<scalar_t>();
    scalar_t* op = gz.data_ptr<scalar_t>();
    at::parallel_for(0, R * B, ROW_GRAIN, [&](int64_t lo, int64_t hi) {
      if (G == 1)
        mix_backward_rows<scalar_t, 1>(zp, wp, gp, op, lo, hi, B, E, h, G);
      else if (G == 2)
        mix_backward_rows<scalar_t, 2>(zp, wp, gp, op, lo, hi, B, E, h, G);
      else
        mix_backward_rows<scalar_t, 0>(zp, wp, gp, op, lo, hi, B, E, h, G);
    });
  });
  return gz;
}

}  // namespace

// The schemas, then the CPU kernels under the CPU key: the dispatcher then refuses other devices by itself, and
// shape-only ("fake") kernels are registered from Python (_native.py) so that torch.compile can trace the ops.
TORCH_LIBRARY(hpo_native, m) {
  m.def("sum_rows_backward(Tensor codes, Tensor grad_out, int n_rows, int replicas=1) -> Tensor");
  m.def("moe_mix(Tensor z, int experts, int units, int gates) -> (Tensor, Tensor)");
  m.def("moe_mix_backward(Tensor z, Tensor weights, Tensor grad_out, int experts, int units, int gates) -> Tensor");
}

TORCH_LIBRARY_IMPL(hpo_native, CPU, m) {
  m.impl("sum_rows_backward", &sum_rows_backward);
  m.impl("moe_mix", &moe_mix);
  m.impl("moe_mix_backward", &moe_mix_backward);
}
