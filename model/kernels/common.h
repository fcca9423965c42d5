// Shared by the flowhawk CPU kernels: oneDNN GEMM on the calling thread, and call/time counters.
#pragma once
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <thread>
#include <vector>

// oneDNN's threadpool-interop GEMM with a null threadpool runs on the calling thread only, whatever
// threadpool MindSpore has activated on it. Row-major, like dnnl_sgemm.
extern "C" int dnnl_threadpool_interop_sgemm(char transa, char transb, int64_t M, int64_t N, int64_t K,
                                             float alpha, const float *A, int64_t lda, const float *B,
                                             int64_t ldb, float beta, float *C, int64_t ldc, void *threadpool);
static inline void sgemm(char ta, char tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                         int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
  dnnl_threadpool_interop_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, nullptr);
}

// {calls, nanoseconds} for kernel k: 0 lstm fwd, 1 lstm bwd, 2 conv fwd, 3 conv bwd (flowhawk_kernel_stats)
extern std::atomic<int64_t> g_flowhawk_stats[8];
struct StatTimer {
  int k;
  std::chrono::steady_clock::time_point t0;
  explicit StatTimer(int kernel) : k(kernel), t0(std::chrono::steady_clock::now()) {}
  ~StatTimer() {
    g_flowhawk_stats[2 * k].fetch_add(1, std::memory_order_relaxed);
    g_flowhawk_stats[2 * k + 1].fetch_add(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count(),
        std::memory_order_relaxed);
  }
};

// Thread budget (flowhawk_set_threads). run_halves(big, f) calls f(0) and f(1), on two threads when
// the budget allows and the work is big enough to repay a thread start (~0.1 ms).
extern int g_flowhawk_threads;
template <typename F>
static void run_halves(bool big, F f) {
  if (g_flowhawk_threads >= 2 && big) {
    std::thread t1([&] { f(1); });
    f(0);
    t1.join();
  } else {
    f(0);
    f(1);
  }
}

// Grow-only scratch memory kept by the calling thread (MindSpore's kernel thread): big per-call
// buffers would otherwise be unmapped and page-faulted back from the OS on every call (measured: the
// BiLSTM backward took 33 ms inside MindSpore vs 20 ms standalone). Carve it with Carver.take.
inline size_t rounded(size_t n) { return (n + 15) & ~static_cast<size_t>(15); }
inline float *scratch(size_t n) {
  static thread_local std::vector<float> buf;
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}
struct Carver {
  float *p;
  float *take(size_t n) {
    float *r = p;
    p += rounded(n);
    return r;
  }
};
