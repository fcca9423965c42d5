// Fused temporal convolution ("same" padding) + ReLU + mask + non-overlapping max pooling over time,
// for MindSpore "aot" Custom ops (CPU), forward and backward. Matches model.layers.TemporalConv
// followed by relu, * mask and masked_max_pool (the oldest T % pool steps are dropped).
//   x (B, T, F), mask (B, T), w (C, K*F) [nn.Dense weight over im2col columns j*F + f], bias (C)
//   ptok (P,): only its length matters, it carries the pool size P
// ConvPoolFwd(x, mask, w, bias, ptok) -> y (B, Tp, C) with Tp = T / P, arg (B, Tp, C) [argmax offset, as float]
// ConvPoolBwd(dy, x, mask, w, y, arg, ptok) -> dx (B, T, F), dw (C, K*F), dbias (C)
#include <cstdint>
#include <cstring>

#include "common.h"



namespace {
struct CDims {
  int64_t B, T, F, C, K, KF, Tp, P, Tu, off, left;
};

bool cdims(int64_t **shapes, int x_idx, int w_idx, int p_idx, CDims *d) {
  d->B = shapes[x_idx][0]; d->T = shapes[x_idx][1]; d->F = shapes[x_idx][2];
  d->C = shapes[w_idx][0]; d->KF = shapes[w_idx][1];
  d->P = shapes[p_idx][0];
  if (d->F <= 0 || d->KF % d->F != 0 || d->P <= 0 || d->P > d->T) return false;
  d->K = d->KF / d->F;
  d->Tp = d->T / d->P;
  d->Tu = d->Tp * d->P;
  d->off = d->T - d->Tu;
  d->left = (d->K - 1) / 2;
  return true;
}

// rows (b - b0, u) for b in [b0, b1) and used steps t = off + u; columns j*F + f hold
// x[b, t + j - left, f] * mask (0 outside the window)
void im2col(const CDims &d, int64_t b0, int64_t b1, const float *x, const float *mask, float *cols) {
  for (int64_t b = b0; b < b1; b++)
    for (int64_t u = 0; u < d.Tu; u++) {
      float *row = cols + ((b - b0) * d.Tu + u) * d.KF;
      const int64_t t = d.off + u;
      for (int64_t j = 0; j < d.K; j++) {
        const int64_t ts = t + j - d.left;
        float *dst = row + j * d.F;
        if (ts < 0 || ts >= d.T || mask[b * d.T + ts] <= 0.5f) {
          std::memset(dst, 0, sizeof(float) * d.F);
        } else {
          std::memcpy(dst, x + (b * d.T + ts) * d.F, sizeof(float) * d.F);
        }
      }
    }
}

// forward for batch rows [b0, b1): conv GEMM, then masked max pooling with argmax offsets
void fwd_rows(const CDims &d, int64_t b0, int64_t b1, const float *x, const float *mask, const float *w,
              const float *bias, float *y, float *arg, Carver ws) {
  if (b1 <= b0) return;
  const int64_t rows = (b1 - b0) * d.Tu, C = d.C;
  float *cols = ws.take(rows * d.KF), *z = ws.take(rows * C);
  im2col(d, b0, b1, x, mask, cols);
  for (int64_t r = 0; r < rows; r++) std::memcpy(z + r * C, bias, sizeof(float) * C);
  sgemm('N', 'T', rows, C, d.KF, 1.0f, cols, d.KF, w, d.KF, 1.0f, z, C);
  for (int64_t b = b0; b < b1; b++)
    for (int64_t q = 0; q < d.Tp; q++) {
      float *yq = y + (b * d.Tp + q) * C, *aq = arg + (b * d.Tp + q) * C;
      for (int64_t c = 0; c < C; c++) { yq[c] = 0.0f; aq[c] = 0.0f; }
      for (int64_t i = 0; i < d.P; i++) {
        const int64_t u = q * d.P + i;
        if (mask[b * d.T + d.off + u] <= 0.5f) continue;  // padded step: output 0 (never above relu >= 0)
        const float *zr = z + ((b - b0) * d.Tu + u) * C;
        const float fi = static_cast<float>(i);
#pragma GCC ivdep
        for (int64_t c = 0; c < C; c++) {
          const bool gt = zr[c] > yq[c];
          yq[c] = gt ? zr[c] : yq[c];
          aq[c] = gt ? fi : aq[c];
        }
      }
    }
}

// backward for batch rows [b0, b1): writes dx rows, and this range's partial dw / db
void bwd_rows(const CDims &d, int64_t b0, int64_t b1, const float *dy, const float *x, const float *mask,
              const float *w, const float *y, const float *arg, float *dx, float *dw, float *db, Carver ws) {
  if (b1 <= b0) {  // empty range: zero partial sums
    std::memset(dw, 0, sizeof(float) * d.C * d.KF);
    std::memset(db, 0, sizeof(float) * d.C);
    return;
  }
  const int64_t rows = (b1 - b0) * d.Tu, C = d.C;
  float *dz = ws.take(rows * C), *cols = ws.take(rows * d.KF), *dcols = ws.take(rows * d.KF);
  std::memset(dz, 0, sizeof(float) * rows * C);
  for (int64_t b = b0; b < b1; b++)
    for (int64_t q = 0; q < d.Tp; q++) {
      const int64_t o = (b * d.Tp + q) * C;
      for (int64_t c = 0; c < C; c++)
        if (y[o + c] > 0.0f)
          dz[((b - b0) * d.Tu + q * d.P + static_cast<int64_t>(arg[o + c])) * C + c] = dy[o + c];
    }
  std::memset(db, 0, sizeof(float) * C);
  for (int64_t r = 0; r < rows; r++) {
    const float *dr = dz + r * C;
    for (int64_t c = 0; c < C; c++) db[c] += dr[c];
  }
  im2col(d, b0, b1, x, mask, cols);
  sgemm('T', 'N', C, d.KF, rows, 1.0f, dz, C, cols, d.KF, 0.0f, dw, d.KF);  // dz^T @ cols
  sgemm('N', 'N', rows, d.KF, C, 1.0f, dz, C, w, d.KF, 0.0f, dcols, d.KF);  // dz @ w
  std::memset(dx + b0 * d.T * d.F, 0, sizeof(float) * (b1 - b0) * d.T * d.F);
  for (int64_t b = b0; b < b1; b++)
    for (int64_t u = 0; u < d.Tu; u++) {
      const float *row = dcols + ((b - b0) * d.Tu + u) * d.KF;
      for (int64_t j = 0; j < d.K; j++) {
        const int64_t ts = d.off + u + j - d.left;
        if (ts < 0 || ts >= d.T || mask[b * d.T + ts] <= 0.5f) continue;
        float *dst = dx + (b * d.T + ts) * d.F;
        const float *src = row + j * d.F;
        for (int64_t f = 0; f < d.F; f++) dst[f] += src[f];
      }
    }
}

inline bool big(const CDims &d) { return d.B * d.T * d.C >= 65536; }
}  // namespace

extern "C" int ConvPoolFwd(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                           void *stream, void *extra) {
  StatTimer timer(2);
  CDims d;
  if (nparam != 7 || ndims[0] != 3 || ndims[2] != 2 || ndims[4] != 1 || !cdims(shapes, 0, 2, 4, &d)) return 1;
  const float *x = static_cast<const float *>(params[0]), *mask = static_cast<const float *>(params[1]),
              *w = static_cast<const float *>(params[2]), *bias = static_cast<const float *>(params[3]);
  float *y = static_cast<float *>(params[5]), *arg = static_cast<float *>(params[6]);
  const int64_t mid = d.B / 2;
  const size_t half_rows = static_cast<size_t>(d.B - mid) * d.Tu;  // the larger half
  const size_t per_half = rounded(half_rows * d.KF) + rounded(half_rows * d.C);
  float *ws = scratch(2 * per_half);
  run_halves(big(d), [&](int half) {
    fwd_rows(d, half ? mid : 0, half ? d.B : mid, x, mask, w, bias, y, arg, Carver{ws + half * per_half});
  });
  return 0;
}

extern "C" int ConvPoolBwd(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                           void *stream, void *extra) {
  StatTimer timer(3);
  CDims d;
  if (nparam != 10 || ndims[1] != 3 || ndims[3] != 2 || ndims[6] != 1 || !cdims(shapes, 1, 3, 6, &d)) return 1;
  const float *dy = static_cast<const float *>(params[0]), *x = static_cast<const float *>(params[1]),
              *mask = static_cast<const float *>(params[2]), *w = static_cast<const float *>(params[3]),
              *y = static_cast<const float *>(params[4]), *arg = static_cast<const float *>(params[5]);
  float *dx = static_cast<float *>(params[7]), *dw = static_cast<float *>(params[8]),
        *db = static_cast<float *>(params[9]);
  const int64_t mid = d.B / 2, nw = d.C * d.KF;
  const size_t half_rows = static_cast<size_t>(d.B - mid) * d.Tu;  // the larger half
  const size_t per_half = rounded(half_rows * d.C) + 2 * rounded(half_rows * d.KF);
  Carver ws{scratch(rounded(nw) + rounded(d.C) + 2 * per_half)};
  float *dw1 = ws.take(nw), *db1 = ws.take(d.C);  // second half's partial sums
  float *half_ws = ws.p;
  run_halves(big(d), [&](int half) {
    bwd_rows(d, half ? mid : 0, half ? d.B : mid, dy, x, mask, w, y, arg, dx, half ? dw1 : dw,
             half ? db1 : db, Carver{half_ws + half * per_half});
  });
  for (int64_t i = 0; i < nw; i++) dw[i] += dw1[i];
  for (int64_t c = 0; c < d.C; c++) db[c] += db1[c];
  return 0;
}
