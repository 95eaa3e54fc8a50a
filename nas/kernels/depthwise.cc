// Depthwise convolution kernels for XLA:CPU, called through the XLA FFI: the depthwise conv
// and its gradients, and depthwise -> pointwise (1x1) fused, with its gradients.
//
// Layout NHWC, float32, kernel (k, k, C), padding dilation * (k - 1) / 2, any stride and
// dilation. Channels are the innermost loop, in GCC vector types of 16 or 8 floats where the
// channel counts allow (scalar loops otherwise). Optionally the input goes through a ReLU
// first (the ReLU is recomputed, never stored, and the input gradient is masked by it).
//
// Work is split into a fixed number of slices of the batch, independent of which thread
// runs a slice, and the weight-gradient partial sums of the slices are added in slice
// order: results do not depend on thread timing.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr int64_t kMaxSlices = 8;

struct Geometry {
  int64_t b, h, w, c, k, stride, dilation, pad, ho, wo;
};

Geometry MakeGeometry(const ffi::Buffer<ffi::F32>& x, const ffi::Buffer<ffi::F32>& w,
                      int64_t stride, int64_t dilation) {
  auto xd = x.dimensions();
  Geometry g;
  g.b = xd[0];
  g.h = xd[1];
  g.w = xd[2];
  g.c = xd[3];
  g.k = w.dimensions()[0];
  g.stride = stride;
  g.dilation = dilation;
  g.pad = dilation * (g.k - 1) / 2;
  g.ho = (g.h + 2 * g.pad - dilation * (g.k - 1) - 1) / stride + 1;
  g.wo = (g.w + 2 * g.pad - dilation * (g.k - 1) - 1) / stride + 1;
  return g;
}

// The output columns [lo, hi) whose input column ow * stride + off lies inside [0, n).
inline void ValidRange(int64_t off, int64_t stride, int64_t n, int64_t n_out, int64_t* lo,
                       int64_t* hi) {
  *lo = off >= 0 ? 0 : (-off + stride - 1) / stride;
  *hi = (n - 1 - off) < 0 ? 0 : std::min(n_out, (n - 1 - off) / stride + 1);
  if (*hi < *lo) *hi = *lo;
}

// Runs fn(i) for i in [0, n) on the calling thread and on the pool's threads; returns when
// every call has finished. A pool task that starts after all the work is taken returns
// without touching fn, so the caller never waits on a task that has not started.
template <class F>
void ParallelFor(ffi::ThreadPool& pool, int64_t n, const F& fn) {
  if (n <= 0) return;
  struct State {
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> done{0};
  };
  auto state = std::make_shared<State>();
  const F* f = &fn;
  auto work = [state, f, n]() {
    for (;;) {
      int64_t i = state->next.fetch_add(1, std::memory_order_relaxed);
      if (i >= n) return;
      (*f)(i);
      state->done.fetch_add(1, std::memory_order_release);
    }
  };
  int64_t helpers = std::min<int64_t>(pool.num_threads(), n - 1);
  for (int64_t t = 0; t < helpers; ++t) pool.Schedule(decltype(work)(work));
  work();
  while (state->done.load(std::memory_order_acquire) < n) std::this_thread::yield();
}

// out[q] = sum over slices s, in order, of partial[s * stride + offset + q], q < n.
void SumSlices(const std::vector<float>& partial, int64_t slices, int64_t stride, int64_t offset,
               int64_t n, float* out) {
  std::memset(out, 0, sizeof(float) * n);
  for (int64_t s = 0; s < slices; ++s) {
    const float* part = partial.data() + s * stride + offset;
    for (int64_t q = 0; q < n; ++q) out[q] += part[q];
  }
}

inline void SliceRange(int64_t n, int64_t slices, int64_t s, int64_t* lo, int64_t* hi) {
  *lo = n * s / slices;
  *hi = n * (s + 1) / slices;
}

template <bool kRelu>
void ForwardImage(const Geometry& g, const float* __restrict x, const float* __restrict w,
                  float* __restrict y) {
  const int64_t c = g.c;
  for (int64_t oh = 0; oh < g.ho; ++oh) {
    float* __restrict yr = y + oh * g.wo * c;
    std::memset(yr, 0, sizeof(float) * g.wo * c);
    for (int64_t i = 0; i < g.k; ++i) {
      const int64_t ih = oh * g.stride - g.pad + i * g.dilation;
      if (ih < 0 || ih >= g.h) continue;
      const float* __restrict xr = x + ih * g.w * c;
      for (int64_t j = 0; j < g.k; ++j) {
        const float* __restrict wt = w + (i * g.k + j) * c;
        const int64_t off = j * g.dilation - g.pad;
        int64_t lo, hi;
        ValidRange(off, g.stride, g.w, g.wo, &lo, &hi);
        for (int64_t ow = lo; ow < hi; ++ow) {
          const float* __restrict xp = xr + (ow * g.stride + off) * c;
          float* __restrict yp = yr + ow * c;
          for (int64_t ch = 0; ch < c; ++ch) {
            const float v = kRelu ? std::max(xp[ch], 0.0f) : xp[ch];
            yp[ch] += v * wt[ch];
          }
        }
      }
    }
  }
}

template <bool kRelu>
void BackwardImage(const Geometry& g, const float* __restrict x, const float* __restrict w,
                   const float* __restrict dy, float* __restrict dx, float* __restrict dw) {
  const int64_t c = g.c;
  std::memset(dx, 0, sizeof(float) * g.h * g.w * c);
  for (int64_t oh = 0; oh < g.ho; ++oh) {
    const float* __restrict gr = dy + oh * g.wo * c;
    for (int64_t i = 0; i < g.k; ++i) {
      const int64_t ih = oh * g.stride - g.pad + i * g.dilation;
      if (ih < 0 || ih >= g.h) continue;
      const float* __restrict xr = x + ih * g.w * c;
      float* __restrict dxr = dx + ih * g.w * c;
      for (int64_t j = 0; j < g.k; ++j) {
        const float* __restrict wt = w + (i * g.k + j) * c;
        float* __restrict dwt = dw + (i * g.k + j) * c;
        const int64_t off = j * g.dilation - g.pad;
        int64_t lo, hi;
        ValidRange(off, g.stride, g.w, g.wo, &lo, &hi);
        for (int64_t ow = lo; ow < hi; ++ow) {
          const int64_t iw = ow * g.stride + off;
          const float* __restrict gp = gr + ow * c;
          const float* __restrict xp = xr + iw * c;
          float* __restrict dxp = dxr + iw * c;
          for (int64_t ch = 0; ch < c; ++ch) {
            const float v = kRelu ? std::max(xp[ch], 0.0f) : xp[ch];
            dxp[ch] += gp[ch] * wt[ch];
            dwt[ch] += gp[ch] * v;
          }
        }
      }
    }
  }
  if (kRelu) {
    const int64_t n = g.h * g.w * c;
    for (int64_t p = 0; p < n; ++p) dx[p] = x[p] > 0.0f ? dx[p] : 0.0f;
  }
}


// The same passes with 8 channels per vector (when C % 8 == 0) and independent accumulators
// (4 output columns at a time in the forward pass and the weight gradient), so the FMAs do
// not wait on each other.
typedef float v8 __attribute__((vector_size(32)));
typedef float v16 __attribute__((vector_size(64)));

// Floats per vector.
template <class V>
constexpr int64_t kLanes = sizeof(V) / sizeof(float);

// Unaligned loads and stores (memcpy: a vector type passed as a template argument loses its
// reduced alignment attribute).
template <class V>
inline V Load(const float* p) {
  V v;
  __builtin_memcpy(&v, p, sizeof(V));
  return v;
}
template <class V>
inline void Store(float* p, V v) {
  __builtin_memcpy(p, &v, sizeof(V));
}
template <class V, bool kRelu>
inline V In(const float* p) {
  V v = Load<V>(p);
  if (kRelu) {
    const V zero = {};
    v = v > zero ? v : zero;
  }
  return v;
}

// One output row `oh` of the depthwise conv of one image, into yr (wo * c).
template <class V, bool kRelu>
void ForwardRowV(const Geometry& g, const float* __restrict x, const float* __restrict w,
                 int64_t oh, float* __restrict yr) {
  const int64_t c = g.c, s = g.stride;
  for (int64_t cb = 0; cb < c; cb += kLanes<V>) {
    int64_t ow = 0;
    for (; ow + 4 <= g.wo; ow += 4) {
      V a0 = {}, a1 = {}, a2 = {}, a3 = {};
      for (int64_t i = 0; i < g.k; ++i) {
        const int64_t ih = oh * s - g.pad + i * g.dilation;
        if (ih < 0 || ih >= g.h) continue;
        const float* xr = x + ih * g.w * c + cb;
        for (int64_t j = 0; j < g.k; ++j) {
          const V wv = Load<V>(w + (i * g.k + j) * c + cb);
          const int64_t iw = ow * s - g.pad + j * g.dilation;
          if (iw >= 0 && iw + 3 * s < g.w) {
            a0 += In<V, kRelu>(xr + iw * c) * wv;
            a1 += In<V, kRelu>(xr + (iw + s) * c) * wv;
            a2 += In<V, kRelu>(xr + (iw + 2 * s) * c) * wv;
            a3 += In<V, kRelu>(xr + (iw + 3 * s) * c) * wv;
          } else {
            if (iw >= 0 && iw < g.w) a0 += In<V, kRelu>(xr + iw * c) * wv;
            if (iw + s >= 0 && iw + s < g.w) a1 += In<V, kRelu>(xr + (iw + s) * c) * wv;
            if (iw + 2 * s >= 0 && iw + 2 * s < g.w) a2 += In<V, kRelu>(xr + (iw + 2 * s) * c) * wv;
            if (iw + 3 * s >= 0 && iw + 3 * s < g.w) a3 += In<V, kRelu>(xr + (iw + 3 * s) * c) * wv;
          }
        }
      }
      Store(yr + ow * c + cb, a0);
      Store(yr + (ow + 1) * c + cb, a1);
      Store(yr + (ow + 2) * c + cb, a2);
      Store(yr + (ow + 3) * c + cb, a3);
    }
    for (; ow < g.wo; ++ow) {
      V a0 = {};
      for (int64_t i = 0; i < g.k; ++i) {
        const int64_t ih = oh * s - g.pad + i * g.dilation;
        if (ih < 0 || ih >= g.h) continue;
        const float* xr = x + ih * g.w * c + cb;
        for (int64_t j = 0; j < g.k; ++j) {
          const int64_t iw = ow * s - g.pad + j * g.dilation;
          if (iw >= 0 && iw < g.w) a0 += In<V, kRelu>(xr + iw * c) * Load<V>(w + (i * g.k + j) * c + cb);
        }
      }
      Store(yr + ow * c + cb, a0);
    }
  }
}

// The gradients from one output row's gradient gr (wo * c): added into dx (the image, before
// the ReLU mask) and dw.
template <class V, bool kRelu, bool kScatter>
void BackwardRowV(const Geometry& g, const float* __restrict x, const float* __restrict w,
                  int64_t oh, const float* __restrict gr, float* __restrict dx,
                  float* __restrict dw) {
  const int64_t c = g.c, s = g.stride;
  for (int64_t i = 0; i < g.k; ++i) {
    const int64_t ih = oh * s - g.pad + i * g.dilation;
    if (ih < 0 || ih >= g.h) continue;
    const float* xr = x + ih * g.w * c;
    float* dxr = dx + ih * g.w * c;
    for (int64_t j = 0; j < g.k; ++j) {
      const int64_t off = j * g.dilation - g.pad;
      int64_t lo, hi;
      ValidRange(off, s, g.w, g.wo, &lo, &hi);
      for (int64_t cb = 0; cb < c; cb += kLanes<V>) {
        const V wv = Load<V>(w + (i * g.k + j) * c + cb);
        // input gradient: scatter (no two columns of one tap write the same place)
        if (kScatter) {
          for (int64_t ow = lo; ow < hi; ++ow) {
            float* p = dxr + (ow * s + off) * c + cb;
            Store(p, Load<V>(p) + Load<V>(gr + ow * c + cb) * wv);
          }
        }
        // weight gradient: four independent sums
        V a0 = {}, a1 = {}, a2 = {}, a3 = {};
        int64_t ow = lo;
        for (; ow + 4 <= hi; ow += 4) {
          const float* xp = xr + (ow * s + off) * c + cb;
          const float* gp = gr + ow * c + cb;
          a0 += Load<V>(gp) * In<V, kRelu>(xp);
          a1 += Load<V>(gp + c) * In<V, kRelu>(xp + s * c);
          a2 += Load<V>(gp + 2 * c) * In<V, kRelu>(xp + 2 * s * c);
          a3 += Load<V>(gp + 3 * c) * In<V, kRelu>(xp + 3 * s * c);
        }
        for (; ow < hi; ++ow) a0 += Load<V>(gr + ow * c + cb) * In<V, kRelu>(xr + (ow * s + off) * c + cb);
        float* dwp = dw + (i * g.k + j) * c + cb;
        Store(dwp, Load<V>(dwp) + ((a0 + a1) + (a2 + a3)));
      }
    }
  }
}

template <class V, bool kRelu>
void MaskImage(const Geometry& g, const float* __restrict x, float* __restrict dx) {
  if (!kRelu) return;
  const int64_t n = g.h * g.w * g.c;
  for (int64_t p = 0; p < n; ++p) dx[p] = x[p] > 0.0f ? dx[p] : 0.0f;
}

template <class V, bool kRelu>
void ForwardImageV(const Geometry& g, const float* __restrict x, const float* __restrict w,
                   float* __restrict y) {
  for (int64_t oh = 0; oh < g.ho; ++oh) ForwardRowV<V, kRelu>(g, x, w, oh, y + oh * g.wo * g.c);
}

// The input gradient of a stride-1 conv as a gather: the conv of dy (the whole image) with
// the flipped kernel, four output columns at a time -- no read-modify-write per tap.
template <class V>
void GatherInputGrad(const Geometry& g, const float* __restrict wflip, const float* __restrict dy,
                     float* __restrict dx) {
  Geometry t = g;
  t.h = g.ho;
  t.w = g.wo;
  t.ho = g.h;
  t.wo = g.w;
  t.stride = 1;
  for (int64_t ih = 0; ih < g.h; ++ih) ForwardRowV<V, false>(t, dy, wflip, ih, dx + ih * g.w * g.c);
}

std::vector<float> Flipped(const float* w, int64_t k, int64_t c) {
  std::vector<float> f(k * k * c);
  for (int64_t i = 0; i < k; ++i)
    for (int64_t j = 0; j < k; ++j)
      std::memcpy(f.data() + (i * k + j) * c, w + ((k - 1 - i) * k + (k - 1 - j)) * c,
                  sizeof(float) * c);
  return f;
}

// wflip: the flipped kernel (used when the stride is 1).
template <class V, bool kRelu>
void BackwardImageV(const Geometry& g, const float* __restrict x, const float* __restrict w,
                    const float* __restrict wflip, const float* __restrict dy,
                    float* __restrict dx, float* __restrict dw) {
  if (g.stride == 1) {
    for (int64_t oh = 0; oh < g.ho; ++oh)
      BackwardRowV<V, kRelu, false>(g, x, w, oh, dy + oh * g.wo * g.c, dx, dw);
    GatherInputGrad<V>(g, wflip, dy, dx);
  } else {
    std::memset(dx, 0, sizeof(float) * g.h * g.w * g.c);
    for (int64_t oh = 0; oh < g.ho; ++oh)
      BackwardRowV<V, kRelu, true>(g, x, w, oh, dy + oh * g.wo * g.c, dx, dw);
  }
  MaskImage<V, kRelu>(g, x, dx);
}

// y[n, :] = t[n, :] @ pw for n rows: (n, c) x (c, d), d % 8 == 0. Blocks of 4 rows x 16
// columns keep 8 independent sums in registers.
template <class V>
void RowMatmul(const float* __restrict t, const float* __restrict pw, int64_t n, int64_t c,
               int64_t d, float* __restrict y) {
  int64_t db = 0;
  for (; db + 2 * kLanes<V> <= d; db += 2 * kLanes<V>) {
    int64_t r = 0;
    for (; r + 4 <= n; r += 4) {
      V a[4][2] = {};
      for (int64_t ch = 0; ch < c; ++ch) {
        const V p0 = Load<V>(pw + ch * d + db), p1 = Load<V>(pw + ch * d + db + kLanes<V>);
        for (int q = 0; q < 4; ++q) {
          const float tv = t[(r + q) * c + ch];
          a[q][0] += tv * p0;
          a[q][1] += tv * p1;
        }
      }
      for (int q = 0; q < 4; ++q) {
        Store(y + (r + q) * d + db, a[q][0]);
        Store(y + (r + q) * d + db + kLanes<V>, a[q][1]);
      }
    }
    for (; r < n; ++r) {
      V a0 = {}, a1 = {};
      for (int64_t ch = 0; ch < c; ++ch) {
        a0 += t[r * c + ch] * Load<V>(pw + ch * d + db);
        a1 += t[r * c + ch] * Load<V>(pw + ch * d + db + kLanes<V>);
      }
      Store(y + r * d + db, a0);
      Store(y + r * d + db + kLanes<V>, a1);
    }
  }
  for (; db < d; db += kLanes<V>) {
    int64_t r = 0;
    for (; r + 4 <= n; r += 4) {
      V a[4] = {};
      for (int64_t ch = 0; ch < c; ++ch) {
        const V p0 = Load<V>(pw + ch * d + db);
        for (int q = 0; q < 4; ++q) a[q] += t[(r + q) * c + ch] * p0;
      }
      for (int q = 0; q < 4; ++q) Store(y + (r + q) * d + db, a[q]);
    }
    for (; r < n; ++r) {
      V a0 = {};
      for (int64_t ch = 0; ch < c; ++ch) a0 += t[r * c + ch] * Load<V>(pw + ch * d + db);
      Store(y + r * d + db, a0);
    }
  }
}

// dpw[c, d] += sum_r t[r, c] * g[r, d] over n rows: blocks of 4 x 16 (8 independent sums).
template <class V>
void AddOuter(const float* __restrict t, const float* __restrict g, int64_t n, int64_t c,
              int64_t d, float* __restrict dpw) {
  int64_t ch = 0;
  for (; ch + 4 <= c; ch += 4) {
    int64_t db = 0;
    for (; db + 2 * kLanes<V> <= d; db += 2 * kLanes<V>) {
      V a[4][2] = {};
      for (int64_t r = 0; r < n; ++r) {
        const V g0 = Load<V>(g + r * d + db), g1 = Load<V>(g + r * d + db + kLanes<V>);
        for (int q = 0; q < 4; ++q) {
          const float tv = t[r * c + ch + q];
          a[q][0] += tv * g0;
          a[q][1] += tv * g1;
        }
      }
      for (int q = 0; q < 4; ++q) {
        float* p = dpw + (ch + q) * d + db;
        Store(p, Load<V>(p) + a[q][0]);
        Store(p + kLanes<V>, Load<V>(p + kLanes<V>) + a[q][1]);
      }
    }
    for (; db < d; db += kLanes<V>) {
      V a[4] = {};
      for (int64_t r = 0; r < n; ++r) {
        const V g0 = Load<V>(g + r * d + db);
        for (int q = 0; q < 4; ++q) a[q] += t[r * c + ch + q] * g0;
      }
      for (int q = 0; q < 4; ++q) {
        float* p = dpw + (ch + q) * d + db;
        Store(p, Load<V>(p) + a[q]);
      }
    }
  }
  for (; ch < c; ++ch) {
    for (int64_t db = 0; db < d; db += kLanes<V>) {
      V a0 = {};
      for (int64_t r = 0; r < n; ++r) a0 += t[r * c + ch] * Load<V>(g + r * d + db);
      float* p = dpw + ch * d + db;
      Store(p, Load<V>(p) + a0);
    }
  }
}

// Depthwise then pointwise (pw: (c, d)) of one image; the depthwise output goes to the row
// buffer t (wo * c), one row at a time, and is multiplied while in cache.
template <class V, bool kRelu>
void DwPwForwardImage(const Geometry& g, int64_t d, const float* __restrict x,
                      const float* __restrict w, const float* __restrict pw, float* __restrict t,
                      float* __restrict y) {
  for (int64_t oh = 0; oh < g.ho; ++oh) {
    ForwardRowV<V, kRelu>(g, x, w, oh, t);
    RowMatmul<V>(t, pw, g.wo, g.c, d, y + oh * g.wo * d);
  }
}

// Gradients of DwPwForwardImage. The depthwise output is recomputed a row at a time (storing
// it in the forward pass made the DARTS step slower: more memory traffic than arithmetic).
// pwt: pw transposed, (d, c); t: a row buffer (wo * c); dt: an image buffer (ho * wo * c) for
// the gradient of the depthwise output.
template <class V, bool kRelu>
void DwPwBackwardImage(const Geometry& g, int64_t d, const float* __restrict x,
                       const float* __restrict w, const float* __restrict wflip,
                       const float* __restrict pwt, const float* __restrict dy,
                       float* __restrict t, float* __restrict dt, float* __restrict dx,
                       float* __restrict dw, float* __restrict dpw) {
  const int64_t c = g.c;
  for (int64_t oh = 0; oh < g.ho; ++oh) {
    const float* gr = dy + oh * g.wo * d;
    ForwardRowV<V, kRelu>(g, x, w, oh, t);
    RowMatmul<V>(gr, pwt, g.wo, d, c, dt + oh * g.wo * c);
    AddOuter<V>(t, gr, g.wo, c, d, dpw);
  }
  BackwardImageV<V, kRelu>(g, x, w, wflip, dt, dx, dw);
}

// Which image functions run: 16 channels per vector, 8, or the scalar loops.
enum class Lanes { k16, k8, kScalar };

Lanes PickLanes(int64_t c, int64_t d) {
  if (c % 16 == 0 && d % 16 == 0) return Lanes::k16;
  if (c % 8 == 0 && d % 8 == 0) return Lanes::k8;
  return Lanes::kScalar;
}

template <bool kRelu>
void ForwardImageAny(Lanes lanes, const Geometry& g, const float* x, const float* w, float* y) {
  switch (lanes) {
    case Lanes::k16:
      return ForwardImageV<v16, kRelu>(g, x, w, y);
    case Lanes::k8:
      return ForwardImageV<v8, kRelu>(g, x, w, y);
    default:
      return ForwardImage<kRelu>(g, x, w, y);
  }
}

template <bool kRelu>
void BackwardImageAny(Lanes lanes, const Geometry& g, const float* x, const float* w,
                      const float* wflip, const float* dy, float* dx, float* dw) {
  switch (lanes) {
    case Lanes::k16:
      return BackwardImageV<v16, kRelu>(g, x, w, wflip, dy, dx, dw);
    case Lanes::k8:
      return BackwardImageV<v8, kRelu>(g, x, w, wflip, dy, dx, dw);
    default:
      return BackwardImage<kRelu>(g, x, w, dy, dx, dw);
  }
}

ffi::Error Forward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> w,
                   ffi::ResultBuffer<ffi::F32> y, int64_t stride, int64_t dilation,
                   int64_t relu) {
  const Geometry g = MakeGeometry(x, w, stride, dilation);
  const Lanes lanes = PickLanes(g.c, g.c);
  const float* xd = x.typed_data();
  const float* wd = w.typed_data();
  float* yd = y->typed_data();
  const int64_t slices = std::min<int64_t>(g.b, kMaxSlices);
  ParallelFor(pool, slices, [&](int64_t s) {
    int64_t lo, hi;
    SliceRange(g.b, slices, s, &lo, &hi);
    for (int64_t b = lo; b < hi; ++b) {
      const float* xi = xd + b * g.h * g.w * g.c;
      float* yi = yd + b * g.ho * g.wo * g.c;
      relu ? ForwardImageAny<true>(lanes, g, xi, wd, yi)
           : ForwardImageAny<false>(lanes, g, xi, wd, yi);
    }
  });
  return ffi::Error::Success();
}

ffi::Error Backward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> w,
                    ffi::Buffer<ffi::F32> dy, ffi::ResultBuffer<ffi::F32> dx,
                    ffi::ResultBuffer<ffi::F32> dw, int64_t stride, int64_t dilation,
                    int64_t relu) {
  const Geometry g = MakeGeometry(x, w, stride, dilation);
  const Lanes lanes = PickLanes(g.c, g.c);
  const float* xd = x.typed_data();
  const float* wd = w.typed_data();
  const float* gd = dy.typed_data();
  float* dxd = dx->typed_data();
  float* dwd = dw->typed_data();
  const int64_t taps = g.k * g.k * g.c;
  const int64_t slices = std::min<int64_t>(g.b, kMaxSlices);
  std::vector<float> partial(slices * taps, 0.0f);
  const std::vector<float> wflip = Flipped(wd, g.k, g.c);
  ParallelFor(pool, slices, [&](int64_t s) {
    int64_t lo, hi;
    SliceRange(g.b, slices, s, &lo, &hi);
    float* part = partial.data() + s * taps;
    for (int64_t b = lo; b < hi; ++b) {
      const float* xi = xd + b * g.h * g.w * g.c;
      const float* gi = gd + b * g.ho * g.wo * g.c;
      float* dxi = dxd + b * g.h * g.w * g.c;
      relu ? BackwardImageAny<true>(lanes, g, xi, wd, wflip.data(), gi, dxi, part)
           : BackwardImageAny<false>(lanes, g, xi, wd, wflip.data(), gi, dxi, part);
    }
  });
  SumSlices(partial, slices, taps, 0, taps, dwd);
  return ffi::Error::Success();
}

template <class V>
void DwPwForwardSlices(ffi::ThreadPool& pool, const Geometry& g, int64_t d, const float* xd,
                       const float* wd, const float* pd, float* yd, bool relu) {
  const int64_t slices = std::min<int64_t>(g.b, kMaxSlices);
  ParallelFor(pool, slices, [&](int64_t s) {
    std::vector<float> t(g.wo * g.c);
    int64_t lo, hi;
    SliceRange(g.b, slices, s, &lo, &hi);
    for (int64_t b = lo; b < hi; ++b) {
      const float* xi = xd + b * g.h * g.w * g.c;
      float* yi = yd + b * g.ho * g.wo * d;
      relu ? DwPwForwardImage<V, true>(g, d, xi, wd, pd, t.data(), yi)
           : DwPwForwardImage<V, false>(g, d, xi, wd, pd, t.data(), yi);
    }
  });
}

ffi::Error DwPwForward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> w,
                       ffi::Buffer<ffi::F32> pw, ffi::ResultBuffer<ffi::F32> y, int64_t stride,
                       int64_t dilation, int64_t relu) {
  const Geometry g = MakeGeometry(x, w, stride, dilation);
  const int64_t d = pw.dimensions()[1];
  const Lanes lanes = PickLanes(g.c, d);
  if (lanes == Lanes::kScalar) {
    return ffi::Error::InvalidArgument("fused depthwise-pointwise needs channels in multiples of 8");
  }
  auto run = lanes == Lanes::k16 ? DwPwForwardSlices<v16> : DwPwForwardSlices<v8>;
  run(pool, g, d, x.typed_data(), w.typed_data(), pw.typed_data(), y->typed_data(), relu != 0);
  return ffi::Error::Success();
}

// Per slice: the gradients of w and pw (summed in slice order after), dx written directly.
template <class V>
void DwPwBackwardSlices(ffi::ThreadPool& pool, const Geometry& g, int64_t d, const float* xd,
                        const float* wd, const float* wflip, const float* pwt, const float* gd,
                        float* dxd, float* partial, int64_t slices, bool relu) {
  const int64_t c = g.c, per_slice = g.k * g.k * c + c * d;
  ParallelFor(pool, slices, [&](int64_t s) {
    std::vector<float> t(g.wo * c), dt(g.ho * g.wo * c);
    float* part = partial + s * per_slice;
    int64_t lo, hi;
    SliceRange(g.b, slices, s, &lo, &hi);
    for (int64_t b = lo; b < hi; ++b) {
      const float* xi = xd + b * g.h * g.w * c;
      const float* gi = gd + b * g.ho * g.wo * d;
      float* dxi = dxd + b * g.h * g.w * c;
      float* dpw = part + g.k * g.k * c;
      relu ? DwPwBackwardImage<V, true>(g, d, xi, wd, wflip, pwt, gi, t.data(), dt.data(), dxi,
                                        part, dpw)
           : DwPwBackwardImage<V, false>(g, d, xi, wd, wflip, pwt, gi, t.data(), dt.data(), dxi,
                                         part, dpw);
    }
  });
}

ffi::Error DwPwBackward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> w,
                        ffi::Buffer<ffi::F32> pw, ffi::Buffer<ffi::F32> dy,
                        ffi::ResultBuffer<ffi::F32> dx, ffi::ResultBuffer<ffi::F32> dw,
                        ffi::ResultBuffer<ffi::F32> dpw, int64_t stride, int64_t dilation,
                        int64_t relu) {
  const Geometry g = MakeGeometry(x, w, stride, dilation);
  const int64_t c = g.c, d = pw.dimensions()[1];
  const Lanes lanes = PickLanes(c, d);
  if (lanes == Lanes::kScalar) {
    return ffi::Error::InvalidArgument("fused depthwise-pointwise needs channels in multiples of 8");
  }
  const float* pd = pw.typed_data();
  std::vector<float> pwt(d * c);
  for (int64_t ch = 0; ch < c; ++ch)
    for (int64_t o = 0; o < d; ++o) pwt[o * c + ch] = pd[ch * d + o];
  const std::vector<float> wflip = Flipped(w.typed_data(), g.k, c);
  const int64_t taps = g.k * g.k * c, mats = c * d;
  const int64_t slices = std::min<int64_t>(g.b, kMaxSlices);
  std::vector<float> partial(slices * (taps + mats), 0.0f);
  auto run = lanes == Lanes::k16 ? DwPwBackwardSlices<v16> : DwPwBackwardSlices<v8>;
  run(pool, g, d, x.typed_data(), w.typed_data(), wflip.data(), pwt.data(), dy.typed_data(),
      dx->typed_data(), partial.data(), slices, relu != 0);
  SumSlices(partial, slices, taps + mats, 0, taps, dw->typed_data());
  SumSlices(partial, slices, taps + mats, taps, mats, dpw->typed_data());
  return ffi::Error::Success();
}

}  // namespace

// Every handler takes XLA's thread pool, float32 buffers and the conv attributes.
using F32 = ffi::Buffer<ffi::F32>;
#define NAS_CONV_ATTRS .Attr<int64_t>("stride").Attr<int64_t>("dilation").Attr<int64_t>("relu")

XLA_FFI_DEFINE_HANDLER_SYMBOL(NasDepthwiseForward, Forward,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<F32>()  // x
                                  .Arg<F32>()  // w
                                  .Ret<F32>()  // y
                                      NAS_CONV_ATTRS);

XLA_FFI_DEFINE_HANDLER_SYMBOL(NasDepthwiseBackward, Backward,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<F32>()  // x
                                  .Arg<F32>()  // w
                                  .Arg<F32>()  // dy
                                  .Ret<F32>()  // dx
                                  .Ret<F32>()  // dw
                                      NAS_CONV_ATTRS);

XLA_FFI_DEFINE_HANDLER_SYMBOL(NasDwPwForward, DwPwForward,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<F32>()  // x
                                  .Arg<F32>()  // w
                                  .Arg<F32>()  // pw
                                  .Ret<F32>()  // y
                                      NAS_CONV_ATTRS);

XLA_FFI_DEFINE_HANDLER_SYMBOL(NasDwPwBackward, DwPwBackward,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<F32>()  // x
                                  .Arg<F32>()  // w
                                  .Arg<F32>()  // pw
                                  .Arg<F32>()  // dy
                                  .Ret<F32>()  // dx
                                  .Ret<F32>()  // dw
                                  .Ret<F32>()  // dpw
                                      NAS_CONV_ATTRS);
