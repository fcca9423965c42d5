// Fused bidirectional LSTM layer for MindSpore "aot" Custom ops (CPU): forward and backward.
//
// Batch-first, PyTorch/MindSpore parameter layout (one set per direction d = f, b), gate order i, f, g, o,
// G = 4H:  x (B, T, I), mask (B, T) [1 real, 0 padding], w_ih_d (G, I), w_hh_d (G, H), b_ih_d (G), b_hh_d (G)
// BiLstmFwd(x, mask, w_ih_f, w_hh_f, b_ih_f, b_hh_f, w_ih_b, w_hh_b, b_ih_b, b_hh_b)
//   -> out (B, T, 2H) [forward | backward hidden states], final (B, 2H) [forward state after the last
//      step | backward state after the first], cs (B, T, 2H) cell states, acts (2, B, T, G) gates
// BiLstmBwd(dout, dfinal, x, mask, w_ih_f, w_hh_f, w_ih_b, w_hh_b, out, cs, acts)
//   -> dx (B, T, I), dw_ih_f, dw_hh_f, dbias_f (G), dw_ih_b, dw_hh_b, dbias_b (G)   [dbias = db_ih = db_hh]
// At padded steps the state is carried over unchanged (so left padding is invisible). GEMMs go to
// oneDNN's dnnl_sgemm (row-major) from the libdnnl.so.3 inside MindSpore; the gate loops are written
// so GCC vectorises them. The two directions run on two threads after flowhawk_set_threads(>= 2).
#include <cstdint>
#include <cstring>

#include "common.h"

std::atomic<int64_t> g_flowhawk_stats[8] = {};
extern "C" int64_t flowhawk_kernel_stats(int i) { return i >= 0 && i < 8 ? g_flowhawk_stats[i].load() : -1; }

int g_flowhawk_threads = 1;
extern "C" int flowhawk_set_threads(int n) {
  g_flowhawk_threads = n < 1 ? 1 : n;
  return g_flowhawk_threads;
}

// Rational tanh approximation (the form Eigen uses for float): pure arithmetic, so the gate loops
// vectorise with AVX2; max abs error ~1e-7 on the clamped range.
static inline float ftanh(float x) {
  const float c = 7.90531110763549805f;
  x = x > c ? c : (x < -c ? -c : x);
  const float x2 = x * x;
  float p = x2 * -2.76076847742355e-16f + 2.00018790482477e-13f;
  p = x2 * p + -8.60467152213735e-11f;
  p = x2 * p + 5.12229709037114e-08f;
  p = x2 * p + 1.48572235717979e-05f;
  p = x2 * p + 6.37261928875436e-04f;
  p = x2 * p + 4.89352455891786e-03f;
  p = x * p;
  float q = x2 * 1.19825839466702e-06f + 1.18534705686654e-04f;
  q = x2 * q + 2.26843463243900e-03f;
  q = x2 * q + 4.89352518554385e-03f;
  return p / q;
}
static inline float sigm(float x) { return 0.5f + 0.5f * ftanh(0.5f * x); }

struct Dims {
  int64_t B, T, I, H, G;
};

static bool read_dims(int nparam, int want, int *ndims, int64_t **shapes, const char **dtypes, int x_idx,
                      int whh_idx, Dims *d) {
  if (nparam != want) return false;
  for (int i = 0; i < nparam; i++)
    if (std::strcmp(dtypes[i], "float32") != 0 && std::strcmp(dtypes[i], "float") != 0) return false;
  if (ndims[x_idx] != 3 || ndims[whh_idx] != 2) return false;
  d->B = shapes[x_idx][0]; d->T = shapes[x_idx][1]; d->I = shapes[x_idx][2];
  d->G = shapes[whh_idx][0]; d->H = shapes[whh_idx][1];
  return d->G == 4 * d->H;
}

// step index s -> time t for direction dir (direction 1 runs backwards in time)
static inline int64_t time_of(int dir, int64_t s, int64_t T) { return dir ? T - 1 - s : s; }

static void fwd_dir(int dir, const Dims &d, const float *x, const float *mask, const float *wi,
                    const float *wh, const float *b_ih, const float *b_hh, float *out, float *final_,
                    float *cs, float *acts, Carver ws) {
  const int64_t B = d.B, T = d.T, I = d.I, H = d.H, G = d.G, H2 = 2 * H;
  float *a = acts + dir * B * T * G;  // (B, T, G): row b*T + t
  float *bd = ws.take(G), *zeros = ws.take(B * H2);
  for (int64_t j = 0; j < G; j++) bd[j] = b_ih[j] + b_hh[j];
  for (int64_t r = 0; r < B * T; r++) std::memcpy(a + r * G, bd, sizeof(float) * G);
  std::memset(zeros, 0, sizeof(float) * B * H2);
  sgemm('N', 'T', B * T, G, I, 1.0f, x, I, wi, I, 1.0f, a, G);  // x @ w_ih^T + bias
  for (int64_t s = 0; s < T; s++) {
    const int64_t t = time_of(dir, s, T), tp = time_of(dir, s - 1, T);
    // previous state rows: out[b, tp, dir*H:], stride T*2H between batch rows
    const float *hp = s ? out + tp * H2 + dir * H : zeros;
    const float *cp = s ? cs + tp * H2 + dir * H : zeros;
    const int64_t ldp = s ? T * H2 : H2;
    float *at = a + t * G;  // rows stride T*G
    if (s) sgemm('N', 'T', B, G, H, 1.0f, hp, ldp, wh, H, 1.0f, at, T * G);
    for (int64_t b = 0; b < B; b++) {
      float *ab = at + b * T * G;
      const float *hpb = hp + b * ldp, *cpb = cp + b * ldp;
      float *hb = out + (b * T + t) * H2 + dir * H, *cb = cs + (b * T + t) * H2 + dir * H;
      const float kb = mask[b * T + t] > 0.5f ? 1.0f : 0.0f, kc = 1.0f - kb;
#pragma GCC ivdep
      for (int64_t j = 0; j < H; j++) {
        const float ig = sigm(ab[j]), fg = sigm(ab[H + j]), gg = ftanh(ab[2 * H + j]), og = sigm(ab[3 * H + j]);
        ab[j] = ig; ab[H + j] = fg; ab[2 * H + j] = gg; ab[3 * H + j] = og;
        const float cn = fg * cpb[j] + ig * gg;
        const float hn = og * ftanh(cn);
        cb[j] = kb * cn + kc * cpb[j];  // exact select: kb is 0 or 1
        hb[j] = kb * hn + kc * hpb[j];
      }
    }
  }
  const int64_t tl = time_of(dir, T - 1, T);  // the final state
  for (int64_t b = 0; b < B; b++)
    std::memcpy(final_ + b * H2 + dir * H, out + (b * T + tl) * H2 + dir * H, sizeof(float) * H);
}

static void bwd_dir(int dir, const Dims &d, const float *dout, const float *dfinal, const float *mask,
                    const float *wh, const float *out, const float *cs, const float *acts, float *dp, int64_t ld,
                    float *dwh, float *db, Carver ws) {
  // dp: this direction's gate gradients, row (b*T + t) at dp + (b*T + t) * ld
  const int64_t B = d.B, T = d.T, H = d.H, G = d.G, H2 = 2 * H;
  const float *a = acts + dir * B * T * G;
  float *zeros = ws.take(B * H2), *dh = ws.take(B * H), *dc = ws.take(B * H), *hprev = ws.take(B * T * H);
  std::memset(zeros, 0, sizeof(float) * B * H2);
  std::memset(dc, 0, sizeof(float) * B * H);
  for (int64_t b = 0; b < B; b++) std::memcpy(dh + b * H, dfinal + b * H2 + dir * H, sizeof(float) * H);
  for (int64_t s = T - 1; s >= 0; s--) {
    const int64_t t = time_of(dir, s, T), tp = time_of(dir, s - 1, T);
    const float *cp = s ? cs + tp * H2 + dir * H : zeros;
    const int64_t ldp = s ? T * H2 : H2;
    float *dpt = dp + t * ld;  // rows stride T*ld
    for (int64_t b = 0; b < B; b++) {
      const float *ab = a + (b * T + t) * G, *cb = cs + (b * T + t) * H2 + dir * H, *cpb = cp + b * ldp;
      const float *dob = dout + (b * T + t) * H2 + dir * H;
      float *dpb = dpt + b * T * ld, *dhb = dh + b * H, *dcb = dc + b * H;
      if (mask[b * T + t] <= 0.5f) {  // carried state: the gradient passes straight to step s-1
        std::memset(dpb, 0, sizeof(float) * G);
        for (int64_t j = 0; j < H; j++) dhb[j] += dob[j];
        continue;
      }
#pragma GCC ivdep
      for (int64_t j = 0; j < H; j++) {
        const float dht = dhb[j] + dob[j];
        const float ig = ab[j], fg = ab[H + j], gg = ab[2 * H + j], og = ab[3 * H + j];
        const float tc = ftanh(cb[j]);
        const float dcn = dcb[j] + dht * og * (1.0f - tc * tc);
        dpb[j] = dcn * gg * ig * (1.0f - ig);
        dpb[H + j] = dcn * cpb[j] * fg * (1.0f - fg);
        dpb[2 * H + j] = dcn * ig * (1.0f - gg * gg);
        dpb[3 * H + j] = dht * tc * og * (1.0f - og);
        dcb[j] = dcn * fg;
        dhb[j] = 0.0f;
      }
    }
    if (s == 0) break;
    sgemm('N', 'N', B, H, G, 1.0f, dpt, T * ld, wh, H, 1.0f, dh, H);  // dh_prev += dpre @ w_hh
  }
  // dw_hh = sum_s dpre_s^T @ h_prev_s as one GEMM over all (b, t) rows: h_prev rows shifted by one step
  for (int64_t b = 0; b < B; b++)
    for (int64_t s = 0; s < T; s++) {
      float *dst = hprev + (b * T + time_of(dir, s, T)) * H;
      if (s == 0) std::memset(dst, 0, sizeof(float) * H);
      else std::memcpy(dst, out + (b * T + time_of(dir, s - 1, T)) * H2 + dir * H, sizeof(float) * H);
    }
  sgemm('T', 'N', G, H, B * T, 1.0f, dp, ld, hprev, H, 0.0f, dwh, H);
  std::memset(db, 0, sizeof(float) * G);
  for (int64_t r = 0; r < B * T; r++) {
    const float *row = dp + r * ld;
#pragma GCC ivdep
    for (int64_t j = 0; j < G; j++) db[j] += row[j];
  }
}

// Two threads only pay off on big batches (latency matters at batch 1).
static inline bool big(const Dims &d) { return d.B * d.T * d.H >= 65536; }

extern "C" int BiLstmFwd(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                         void *stream, void *extra) {
  StatTimer timer(0);
  Dims d;
  if (!read_dims(nparam, 14, ndims, shapes, dtypes, 0, 3, &d)) return 1;
  const float *in[10];
  for (int i = 0; i < 10; i++) in[i] = static_cast<const float *>(params[i]);
  float *out = static_cast<float *>(params[10]), *final_ = static_cast<float *>(params[11]),
        *cs = static_cast<float *>(params[12]), *acts = static_cast<float *>(params[13]);
  const size_t per_dir = rounded(d.G) + rounded(2 * d.B * d.H);
  float *ws = scratch(2 * per_dir);
  run_halves(big(d), [&](int dir) {
    const float *const *p = in + 2 + 4 * dir;  // w_ih, w_hh, b_ih, b_hh of this direction
    fwd_dir(dir, d, in[0], in[1], p[0], p[1], p[2], p[3], out, final_, cs, acts, Carver{ws + dir * per_dir});
  });
  return 0;
}

extern "C" int BiLstmBwd(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                         void *stream, void *extra) {
  StatTimer timer(1);
  Dims d;
  if (!read_dims(nparam, 18, ndims, shapes, dtypes, 2, 5, &d)) return 1;
  const float *in[11];
  for (int i = 0; i < 11; i++) in[i] = static_cast<const float *>(params[i]);
  const float *dout = in[0], *dfinal = in[1], *x = in[2], *mask = in[3], *out = in[8], *cs = in[9], *acts = in[10];
  float *dx = static_cast<float *>(params[11]);
  const int64_t BT = d.B * d.T, G = d.G, I = d.I;
  const int64_t G2 = 2 * G;
  const size_t per_dir = rounded(2 * d.B * d.H) + 2 * rounded(d.B * d.H) + rounded(BT * d.H);
  Carver ws{scratch(rounded(BT * G2) + rounded(G2 * I) + 2 * per_dir)};
  float *dp = ws.take(BT * G2), *w_cat = ws.take(G2 * I);  // dp rows: [dpre_f | dpre_b]; w_cat: [w_ih_f; w_ih_b]
  float *dir_ws = ws.p;
  std::memcpy(w_cat, in[4], sizeof(float) * G * I);
  std::memcpy(w_cat + G * I, in[6], sizeof(float) * G * I);
  run_halves(big(d), [&](int dir) {
    const float *w_hh = in[5 + 2 * dir];
    float *dw_ih = static_cast<float *>(params[12 + 3 * dir]), *dw_hh = static_cast<float *>(params[13 + 3 * dir]),
          *db = static_cast<float *>(params[14 + 3 * dir]);
    float *dpd = dp + dir * G;
    bwd_dir(dir, d, dout, dfinal, mask, w_hh, out, cs, acts, dpd, G2, dw_hh, db, Carver{dir_ws + dir * per_dir});
    sgemm('T', 'N', G, I, BT, 1.0f, dpd, G2, x, I, 0.0f, dw_ih, I);  // dpre^T @ x
  });
  // dx = [dpre_f | dpre_b] @ [w_ih_f; w_ih_b], rows split over the two threads
  run_halves(big(d), [&](int half) {
    const int64_t r0 = half ? BT / 2 : 0, r1 = half ? BT : BT / 2;
    if (r1 > r0) sgemm('N', 'N', r1 - r0, I, G2, 1.0f, dp + r0 * G2, G2, w_cat, I, 0.0f, dx + r0 * I, I);
  });
  return 0;
}
